"""Training: the Know3D adapter (or a whole TRELLIS.2 flow) with TRELLIS.2's flow-matching objective, and a LoRA of
the editor's MMDiT for back views (`know3d train`)."""

from .export import ExportResult, export_checkpoint
from .trainer import TrainResult, run_training

__all__ = ["ExportResult", "TrainResult", "export_checkpoint", "run_training"]
