"""Stochastic prompt construction: K editor instructions per sample from the parts of its back.

Each part is one sentence (`mllm.part_sentence`: `"Handle: a curved black handle."` from Qwen2.5-VL, `"a round
handle."` from a CSV caption). Variant 0 names every part in order — what `generate` sends after `mllm.expand`
describes a photo; each further variant is, with probability `p_empty`, `P_view` alone, and otherwise a random
non-empty subset of the parts (size uniform in 1..n) in random order. The instruction is built by
`mllm.build_back_prompt`, the function generation uses, so training sees the exact prompts inference writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mllm import build_back_prompt, part_sentence


@dataclass(frozen=True)
class PromptVariant:
    parts: tuple[str, ...]  # the part sentences it names, in order (empty: P_view alone)
    instruction: str  # the exact editor prompt (P_view, then the parts)


def part_sentences(parts: tuple[tuple[str, str], ...] | tuple[str, ...]) -> tuple[str, ...]:
    """Back parts as sentences: (part, description) pairs from the MLLM, or plain strings from a caption."""
    return tuple(part_sentence(*p) if isinstance(p, tuple) else part_sentence(p) for p in parts)


def variant(parts: tuple[str, ...]) -> PromptVariant:
    """The instruction naming `parts` (sentences) in this order."""
    return PromptVariant(tuple(parts), build_back_prompt(" ".join(parts)).instruction)


def prompt_variants(parts: tuple[str, ...], count: int, p_empty: float, rng: np.random.Generator) -> list[PromptVariant]:
    """`count` variants (module docstring); with no parts every variant is P_view alone."""
    variants = [variant(parts)]
    for _ in range(count - 1):
        if not parts or rng.random() < p_empty:
            variants.append(variant(()))
            continue
        size = int(rng.integers(1, len(parts) + 1))
        order = rng.permutation(len(parts))[:size]
        variants.append(variant(tuple(parts[i] for i in order)))
    return variants[:count]


__all__ = ["PromptVariant", "part_sentences", "prompt_variants", "variant"]
