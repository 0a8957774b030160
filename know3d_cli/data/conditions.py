"""A sample's cached conditions, computed by the code generation runs, on the same kind of image.

- DINOv3 tokens of the front render (`trellis2.stages.encode_views`, fp32, as `Trellis2Pipeline` conditions TRELLIS.2
  on a prepared photo), stored fp16.
- The back parts: a CSV caption, or Qwen2.5-VL's description of the front and back renders
  (`BackViewExpander.describe_views`: the model, decoding and answer parser of `mllm.expand`).
- H_DiT: for each prompt variant, the editor run on the front render with that instruction and tapped by
  `editor.imagine_back` at `tap.block` / `tap.step_frac` with `preview=none` (it stops right after the tap), its noise
  seeded per variant; stored bf16.

The front render reaches every model as generation's prepared photo does: the inference crop premultiplied on black.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..config import Know3dConfig, Preview
from ..editor import imagine_back
from ..mllm import BackViewExpander
from .models import DinoV3Conditioner, encode_views
from .prompts import PromptVariant, part_sentences

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackText:
    source: str  # "caption" | "mllm" | "none"
    parts: tuple[str, ...]  # part sentences the prompt variants draw from
    detail: dict[str, Any]  # the MLLM's raw answer, summary and warnings (empty for a caption)


@dataclass(frozen=True)
class TappedStates:
    hidden: torch.Tensor  # (K, h, w, C_edit) bf16, CPU: one tap per prompt variant
    tap: dict[str, Any]  # where the tap was taken (step, timestep, sigma, grid, forwards per variant)


def dino_tokens(conditioner: DinoV3Conditioner, front: Image.Image, resolutions: list[int]) -> dict[str, torch.Tensor]:
    """`dino_<side>` (T, C_dino) fp16 tokens of the front image for each side."""
    return {f"dino_{side}": encode_views(conditioner, [front], side).views[0][0].to(torch.float16).cpu().contiguous()
            for side in resolutions}


def caption_text(parts: tuple[str, ...] | None) -> BackText:
    """The back parts of a CSV caption (none when the caption is empty)."""
    return BackText("caption" if parts else "none", part_sentences(parts or ()), {})


def described_text(expander: BackViewExpander, front: Image.Image, back: Image.Image) -> BackText:
    """Qwen2.5-VL's parts of the back, seen in both renders. An answer without parts falls back to its plain text as
    one part (if it reads as prose) or to no part (recorded in `detail["warnings"]`)."""
    answer = expander.describe_views(front, back)
    if answer.parts:
        parts = part_sentences(answer.parts)
    else:
        parts = (answer.text,) if answer.text else ()
    detail = {"raw": answer.raw, "warnings": list(answer.warnings)}
    return BackText("mllm", parts, detail)


def tapped_states(editor, front: Image.Image, variants: list[PromptVariant], seeds: list[int],
                  cfg: Know3dConfig) -> TappedStates:
    """H_DiT of every prompt variant (module docstring)."""
    taps = [imagine_back(editor, front, variant.instruction, cfg.editor, cfg.tap, preview=Preview.none,
                         generator=torch.Generator("cpu").manual_seed(seed))
            for variant, seed in zip(variants, seeds)]
    first = taps[0]  # every variant taps the same step and grid
    meta = {"block": cfg.tap.block, "step_frac": cfg.tap.step_frac, "step_index": first.step_index,
            "timestep": first.timestep, "sigma": first.sigma, "grid": list(first.grid), "tokens": cfg.tap.tokens,
            "forwards": [tap.forwards for tap in taps]}
    hidden = [tap.hidden[0].to(torch.bfloat16).cpu() for tap in taps]
    return TappedStates(torch.stack(hidden).contiguous(), meta)


__all__ = ["BackText", "TappedStates", "caption_text", "described_text", "dino_tokens", "tapped_states"]
