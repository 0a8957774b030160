"""Qwen-Image-Edit wrapper: load the pipeline, imagine the back view, tap the MMDiT hidden states."""

from .pipeline import (
    PIPELINES,
    EditorPipeline,
    Know3dQwenImageEditPipeline,
    Know3dQwenImageEditPlusPipeline,
    condition_area,
    load_editor,
)
from .run import imagine_back
from .tap import EditorTap, hidden_state_tap, tap_step_index

__all__ = [
    "PIPELINES", "EditorPipeline", "EditorTap", "Know3dQwenImageEditPipeline", "Know3dQwenImageEditPlusPipeline",
    "condition_area", "hidden_state_tap", "imagine_back", "load_editor", "tap_step_index",
]
