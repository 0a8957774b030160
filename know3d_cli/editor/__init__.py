"""Qwen-Image-Edit wrapper: load the pipeline, imagine the back view, tap the MMDiT hidden states."""

from .pipeline import (
    PIPELINES,
    EditorPipeline,
    Know3dQwenImageEditPipeline,
    Know3dQwenImageEditPlusPipeline,
    condition_area,
    load_editor,
    transformer_depth,
)
from .run import imagine_back
from .tap import EditorTap, hidden_state_tap, tap_step_index
from .text_limit import EDITOR_TEXT_TOKENS, InstructionLimit

__all__ = [
    "EDITOR_TEXT_TOKENS", "PIPELINES", "EditorPipeline", "EditorTap", "InstructionLimit",
    "Know3dQwenImageEditPipeline", "Know3dQwenImageEditPlusPipeline",
    "condition_area", "hidden_state_tap", "imagine_back", "load_editor", "tap_step_index",
    "transformer_depth",
]
