"""Stochastic prompt construction: variant 0 names every part, the others random subsets (or P_view alone)."""

from __future__ import annotations

import numpy as np

from know3d_cli.data.prompts import part_sentences, prompt_variants
from know3d_cli.mllm import P_VIEW, build_back_prompt

PARTS = part_sentences(("a round handle", "a zipper pocket", ("Straps", "two padded straps")))


def test_parts_become_sentences_as_the_mllm_expansion_writes_them():
    assert PARTS == ("a round handle.", "a zipper pocket.", "Straps: two padded straps.")


def test_variants_are_exact_editor_prompts():
    variants = prompt_variants(PARTS, 50, 0.2, np.random.default_rng(0))
    assert len(variants) == 50
    assert variants[0].parts == PARTS
    assert variants[0].instruction == f"{P_VIEW} a round handle. a zipper pocket. Straps: two padded straps."
    for v in variants:
        assert v.instruction == build_back_prompt(" ".join(v.parts)).instruction
        assert len(set(v.parts)) == len(v.parts) and set(v.parts) <= set(PARTS)
    empty = sum(not v.parts for v in variants[1:])
    assert 2 <= empty <= 20  # p_empty 0.2 of 49
    orders = {v.parts for v in variants if len(v.parts) == 3}
    assert len(orders) > 1  # the order is shuffled too
    sizes = {len(v.parts) for v in variants[1:] if v.parts}
    assert sizes == {1, 2, 3}


def test_variants_are_seeded_and_the_extremes_of_p_empty():
    a = prompt_variants(PARTS, 8, 0.3, np.random.default_rng(7))
    assert a == prompt_variants(PARTS, 8, 0.3, np.random.default_rng(7))
    assert a != prompt_variants(PARTS, 8, 0.3, np.random.default_rng(8))
    assert all(not v.parts for v in prompt_variants(PARTS, 6, 1.0, np.random.default_rng(0))[1:])
    assert all(v.parts for v in prompt_variants(PARTS, 6, 0.0, np.random.default_rng(0)))
    assert [v.instruction for v in prompt_variants((), 3, 0.0, np.random.default_rng(0))] == [P_VIEW] * 3
    assert len(prompt_variants(PARTS, 1, 0.5, np.random.default_rng(0))) == 1
