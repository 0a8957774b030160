"""Loading Qwen-Image-Edit from a local folder, with the `mm_token_type_ids` fix and a bounded condition resize.

diffusers 0.42.1's Edit/EditPlus pipelines do not pass `mm_token_type_ids` to Qwen2.5-VL; with transformers >= 5 the
text encoder then silently uses 1-D instead of 3-D MRoPE positions (diffusers#14194). The subclasses here override
`_get_qwen_prompt_embeds` to pass it. The condition image is resized to ~1 MP by module-level constants of the
diffusers pipelines; `condition_area` swaps them for the duration of one call only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline
from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as _edit_module
from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as _plus_module

from ..config import EditorConfig, EditorPipelineKind
from ..errors import BackendUnavailable, CheckpointError, ModelMissingError
from ..runtime import Runtime

logger = logging.getLogger(__name__)


class _PromptEmbedsWithMRoPE:
    """Mixin for both Edit pipelines: prompt encoding that hands `mm_token_type_ids` to the text encoder."""

    def _image_slots(self, image) -> str:
        """Text placed before the instruction for the vision tokens (the Edit template already holds its slot)."""
        return ""

    def _get_qwen_prompt_embeds(self, prompt=None, image=None, device=None, dtype=None):
        """Encode `prompt` (+ image) with Qwen2.5-VL.

        Returns:
            embeds: (B, L, D) last hidden state after the template prefix, zero-padded to the longest sample.
            mask: (B, L) int64, 1 for real tokens.
        """
        device = device or self._execution_device
        dtype = dtype or self.text_encoder.dtype
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        slots = self._image_slots(image)
        texts = [self.prompt_template_encode.format(slots + p) for p in prompts]
        inputs = self.processor(text=texts, images=image, padding=True, return_tensors="pt").to(device)
        extra = {}
        if "mm_token_type_ids" in inputs:  # the fix: without it MRoPE falls back to sequential positions
            extra["mm_token_type_ids"] = inputs["mm_token_type_ids"]
        out = self.text_encoder(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            output_hidden_states=True,
            use_cache=False,
            **extra,
        )
        return _drop_prefix(out.hidden_states[-1], inputs["attention_mask"], self.prompt_template_encode_start_idx,
                            dtype, device)


def _drop_prefix(hidden: torch.Tensor, mask: torch.Tensor, drop: int, dtype: torch.dtype, device: torch.device):
    """Keep each sample's real tokens after the first `drop` (the system turn), re-padded to a common length.

    hidden: (B, T, D); mask: (B, T) 1 = token, 0 = padding -> ((B, L, D), (B, L) int64).
    """
    kept = [h[m.bool()][drop:] for h, m in zip(hidden, mask)]
    length = max(k.shape[0] for k in kept)
    embeds = hidden.new_zeros(len(kept), length, hidden.shape[-1])
    out_mask = torch.zeros(len(kept), length, dtype=torch.long, device=hidden.device)
    for i, k in enumerate(kept):
        embeds[i, : k.shape[0]] = k
        out_mask[i, : k.shape[0]] = 1
    return embeds.to(device=device, dtype=dtype), out_mask.to(device)


class Know3dQwenImageEditPipeline(_PromptEmbedsWithMRoPE, QwenImageEditPipeline):
    """`QwenImageEditPipeline` (Qwen-Image-Edit) with MRoPE-correct prompt embeddings."""


class Know3dQwenImageEditPlusPipeline(_PromptEmbedsWithMRoPE, QwenImageEditPlusPipeline):
    """`QwenImageEditPlusPipeline` (2509 / 2511) with MRoPE-correct prompt embeddings."""

    def _image_slots(self, image) -> str:
        if image is None:
            return ""
        count = len(image) if isinstance(image, list) else 1
        return "".join(f"Picture {i + 1}: <|vision_start|><|image_pad|><|vision_end|>" for i in range(count))


PIPELINES: dict[EditorPipelineKind, type] = {
    EditorPipelineKind.plus: Know3dQwenImageEditPlusPipeline,
    EditorPipelineKind.edit: Know3dQwenImageEditPipeline,
}
EditorPipeline = Know3dQwenImageEditPipeline | Know3dQwenImageEditPlusPipeline


def transformer_depth(path: str | Path) -> int | None:
    """Number of MMDiT blocks (`transformer/config.json` `num_layers`), read without loading; None if unknown."""
    try:
        layers = json.loads((Path(path).expanduser() / "transformer" / "config.json").read_text()).get("num_layers")
    except (OSError, ValueError, AttributeError):
        return None
    return layers if isinstance(layers, int) and layers > 0 else None


def load_editor(path: str | Path, cfg: EditorConfig, runtime: Runtime) -> EditorPipeline:
    """Load the editor pipeline from a local diffusers folder (never downloads), in `runtime.dtype`, on the CPU.

    The caller moves it to the device (`StageModels.using`). `cfg.lora` is loaded into the transformer at
    `cfg.lora_weight`.

    Raises:
        ModelMissingError: no `model_index.json` under `path`, or the LoRA file is missing.
        CheckpointError: the folder does not load as a Qwen-Image-Edit pipeline.
        BackendUnavailable: a LoRA is configured but `peft` is not installed.
    """
    path = Path(path).expanduser()
    index = path / "model_index.json"
    if not index.is_file():
        raise ModelMissingError(f"editor not found: {index} does not exist")
    cls = PIPELINES[cfg.pipeline]
    base_name = cls.__bases__[-1].__name__
    try:
        released_as = json.loads(index.read_text()).get("_class_name", "")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"editor index {index} is not valid JSON: {exc}") from exc
    if released_as != base_name:
        logger.warning("editor %s was released for %s but editor.pipeline=%s; edits may be weak or no-ops",
                       path, released_as or "an unknown pipeline", cfg.pipeline)
    try:
        with quiet_loading():
            pipe = cls.from_pretrained(path, local_files_only=True, dtype=runtime.dtype)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"editor at {path} does not load as {base_name}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    if cfg.lora:
        _load_lora(pipe, cfg.lora, cfg.lora_weight)
    return pipe


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No diffusers/transformers loading progress bars on stderr (it carries our own progress display)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    modules = (diffusers_logging, transformers_logging)
    saved = [module.is_progress_bar_enabled() for module in modules]
    for module in modules:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in zip(modules, saved):
            if enabled:
                module.enable_progress_bar()


def _load_lora(pipe: EditorPipeline, lora: str, weight: float) -> None:
    """Load a LoRA into the transformer: a local file or folder, a hub repo, or `owner/repo/path/file.safetensors`
    (hub files are read from the local cache only: nothing is downloaded here)."""
    try:
        import peft  # noqa: F401  (diffusers needs it for LoRA)
    except ImportError as exc:
        raise BackendUnavailable(f"editor.lora={lora} needs the `peft` package: pip install 'know3d[lora]'") from exc
    local = Path(lora).expanduser()
    if local.is_file():
        source, kwargs = str(local.parent), {"weight_name": local.name}
    elif local.is_dir():
        source, kwargs = str(local), {}
    elif local.is_absolute() or lora.startswith((".", "~")) or lora.count("/") == 0:
        raise ModelMissingError(f"editor LoRA not found: {local}")
    else:
        owner, name, *rest = lora.split("/")
        source = f"{owner}/{name}"
        kwargs = {"weight_name": "/".join(rest)} if rest else {}
    try:
        pipe.load_lora_weights(source, adapter_name="know3d", local_files_only=True, **kwargs)
        pipe.set_adapters(["know3d"], adapter_weights=[weight])
    except OSError as exc:
        raise ModelMissingError(f"editor LoRA {lora} is not on disk (hub files must already be in the cache): "
                                f"{exc}") from exc
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"editor LoRA {lora} does not load into the transformer: {exc}") from exc


def _dimensions(area: int, ratio: float) -> tuple[int, int]:
    """(width, height), multiples of 32, with about `area` pixels and aspect `ratio` = w / h."""
    width = math.sqrt(area * ratio)
    return max(32, round(width / 32) * 32), max(32, round(width / ratio / 32) * 32)


@contextmanager
def condition_area(pipe: EditorPipeline, area: int | None) -> Iterator[None]:
    """Resize the condition image to ~`area` pixels (instead of ~1 MP) inside the block; `None` changes nothing.

    Plus reads two module constants (VAE copy and VLM copy; the VLM copy is kept at most as large as the VAE copy);
    Edit calls the module function `calculate_dimensions` for its single copy. The previous values are restored on
    exit, so nothing leaks into later calls (not thread-safe: one call at a time per process).
    """
    if area is None:
        yield
        return
    if isinstance(pipe, QwenImageEditPlusPipeline):
        saved = (_plus_module.VAE_IMAGE_SIZE, _plus_module.CONDITION_IMAGE_SIZE)
        _plus_module.VAE_IMAGE_SIZE = area
        _plus_module.CONDITION_IMAGE_SIZE = min(saved[1], area)
        try:
            yield
        finally:
            _plus_module.VAE_IMAGE_SIZE, _plus_module.CONDITION_IMAGE_SIZE = saved
    else:
        original: Callable = _edit_module.calculate_dimensions

        def bounded(target_area, ratio):
            width, height = _dimensions(area, ratio)
            return width, height, None

        _edit_module.calculate_dimensions = bounded
        try:
            yield
        finally:
            _edit_module.calculate_dimensions = original


__all__ = ["EditorPipeline", "Know3dQwenImageEditPipeline", "Know3dQwenImageEditPlusPipeline", "PIPELINES",
           "condition_area", "load_editor", "quiet_loading"]
