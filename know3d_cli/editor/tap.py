"""The hidden-state tap: MMDiT image-stream output of one block, conditional pass, at one denoising step.

Works from outside the model, with forward hooks only:

- a transformer forward pre-hook counts calls (with true CFG every step makes two: cond first, then uncond), reads
  `img_shapes` (token grids: target first, then each condition image) and keeps the target latents x_t of the tap
  step;
- a forward hook on `transformer_blocks[block]` keeps the image stream of the cond pass at the tap step (a block
  returns `(text_stream, image_stream)`, called with keyword arguments only);
- a transformer forward hook keeps each pass's velocity at the tap step (for the x0 preview).

After the tap a private exception ends denoising ("block": at once, skipping the rest of that forward; "step":
once every pass of the tap step has run), so the transformer is never called after the tap step. The context
manager swallows that exception, removes the hooks and releases offloaded models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from PIL import Image

from ..config import TapTokens
from ..errors import ConfigError

logger = logging.getLogger(__name__)

STOPS = (None, "block", "step")


@dataclass(frozen=True)
class EditorTap:
    """What the editor hands on: tapped hidden states, where they were taken, and an optional back-view image."""

    hidden: torch.Tensor  # (B, h, w, C) image stream after block `tap.block`, cond pass, transformer dtype and
    #   device; C = inner dim (3072 real, 48 tiny); tokens=all: target rows, then each condition image's rows
    step_index: int  # 0-based denoising step of the tap
    timestep: float  # scheduler timestep of that step, 0-1000 scale
    sigma: float  # noise level of that step (the transformer's `timestep` input)
    grid: tuple[int, int]  # (h, w): token grid of `hidden` (target only: (H/16, W/16) for the real model)
    forwards: int  # transformer forward calls started (cond + uncond passes)
    preview: Image.Image | None  # x0 estimate at the tap step, the finished image, or None


class _StopDenoising(Exception):
    """Raised from a hook to end the pipeline call once the tap has what it needs."""


def tap_step_index(step_frac: float, steps: int) -> int:
    """The tap step: round(step_frac * steps), clamped to [0, steps - 1]."""
    return min(max(int(round(step_frac * steps)), 0), steps - 1)


@dataclass
class TapRecorder:
    """Filled by the hooks while the pipeline runs; read after the `hidden_state_tap` block."""

    block: int  # index into transformer.transformer_blocks
    step: int  # tap step index
    passes: int  # transformer forwards per step (2 with true CFG)
    tokens: TapTokens  # which image-stream tokens to keep
    stop: str | None  # None (run to the end) | "block" | "step"
    keep_velocity: bool  # keep x_t and each pass's velocity at the tap step
    forwards: int = 0  # transformer calls started so far
    hidden: torch.Tensor | None = None  # (B, h, w, C)
    grid: tuple[int, int] | None = None  # (h, w) of `hidden`
    timestep: float | None = None
    sigma: float | None = None
    x_t: torch.Tensor | None = None  # (B, h_t * w_t, 4 z) packed target latents entering the tap step
    velocities: list[torch.Tensor] = field(default_factory=list)  # [(B, h_t * w_t, 4 z)] cond, then uncond
    _call: tuple[int, int] = (-1, -1)  # (step, pass) of the running forward
    _shapes: list[tuple[int, int, int]] = field(default_factory=list)  # img_shapes of sample 0

    @property
    def at_tap(self) -> bool:
        return self._call[0] == self.step

    def n_target(self) -> int:
        frames, height, width = self._shapes[0]
        return frames * height * width

    def select(self, image_stream: torch.Tensor) -> torch.Tensor:
        """(B, N_img, C) image stream -> (B, h, w, C): target grid, or target rows then each condition image's."""
        if self.tokens == TapTokens.target:
            _, height, width = self._shapes[0]
            grid = image_stream[:, : height * width]
        else:
            widths = {shape[2] for shape in self._shapes}
            if len(widths) != 1:
                raise ConfigError(
                    f"tap.tokens=all stacks the condition tokens under the target grid, which needs equal token "
                    f"widths, got grids {[tuple(s[1:]) for s in self._shapes]}; use a square photo or set "
                    f"editor.condition_area to editor.resolution squared"
                )
            height, width = sum(s[0] * s[1] for s in self._shapes), widths.pop()
            grid = image_stream[:, : height * width]
        self.grid = (height, width)
        return grid.reshape(grid.shape[0], height, width, grid.shape[-1]).detach().clone()

    # ---------------------------------------------------------------------------------------------- hooks
    def on_transformer_call(self, module, args, kwargs, scheduler) -> None:
        index = self.forwards
        self.forwards += 1
        self._call = (index // self.passes, index % self.passes)
        if not self.at_tap:
            return
        self._shapes = [tuple(s) for s in kwargs["img_shapes"][0]]
        if self._call[1] == 0:
            self.timestep = float(scheduler.timesteps[self.step])
            self.sigma = float(scheduler.sigmas[self.step])
            if self.keep_velocity:
                self.x_t = kwargs["hidden_states"][:, : self.n_target()].detach().float()

    def on_block_output(self, module, args, kwargs, output) -> None:
        if self.at_tap and self._call[1] == 0:
            self.hidden = self.select(output[1])
            if self.stop == "block":
                raise _StopDenoising

    def on_transformer_output(self, module, args, kwargs, output) -> None:
        if not self.at_tap:
            return
        if self.keep_velocity:
            sample = output[0] if isinstance(output, tuple) else output.sample
            self.velocities.append(sample[:, : self.n_target()].detach().float())
        if self.stop == "step" and self._call[1] == self.passes - 1:
            raise _StopDenoising


@contextmanager
def hidden_state_tap(
    pipe,
    block: int,
    step: int,
    passes: int,
    tokens: TapTokens = TapTokens.target,
    stop: str | None = "block",
    keep_velocity: bool = False,
) -> Iterator[TapRecorder]:
    """Hook `pipe.transformer` for one pipeline call; yields the recorder the hooks fill.

    Args:
        pipe: a Qwen-Image-Edit(-Plus) pipeline.
        block: transformer block whose image-stream output is kept.
        step: 0-based denoising step of the tap.
        passes: transformer forwards per step (2 with true CFG, cond first).
        tokens: "target" (generated view only) or "all" (plus condition-image tokens).
        stop: None to let the call finish, "block" to end it right after the tap, "step" after the tap step's
            last pass (needed for the x0 preview).
        keep_velocity: record x_t and every pass's velocity at the tap step.

    Raises:
        ConfigError: `block` out of range for the loaded transformer.
        ValueError: an invalid `stop`.
    """
    blocks = pipe.transformer.transformer_blocks
    if not 0 <= block < len(blocks):
        raise ConfigError(f"tap.block={block} is out of range: the editor transformer has {len(blocks)} blocks "
                          f"(0-{len(blocks) - 1})")
    if stop not in STOPS:
        raise ValueError(f"stop must be one of {STOPS}, got {stop!r}")
    recorder = TapRecorder(block=block, step=step, passes=passes, tokens=tokens, stop=stop,
                           keep_velocity=keep_velocity)
    scheduler = pipe.scheduler
    handles = [
        pipe.transformer.register_forward_pre_hook(
            lambda m, a, k: recorder.on_transformer_call(m, a, k, scheduler), with_kwargs=True),
        blocks[block].register_forward_hook(recorder.on_block_output, with_kwargs=True),
        pipe.transformer.register_forward_hook(recorder.on_transformer_output, with_kwargs=True),
    ]
    try:
        yield recorder
    except _StopDenoising:
        logger.debug("denoising stopped after step %d (%d transformer forwards)", step, recorder.forwards)
    finally:
        for handle in handles:
            handle.remove()
        pipe.maybe_free_model_hooks()  # the pipeline's own clean-up is skipped when we stop it


__all__ = ["EditorTap", "TapRecorder", "hidden_state_tap", "tap_step_index"]
