"""How much text the editor reads, checked before any model loads.

Qwen-Image-Edit encodes its instruction with its text encoder, Qwen2.5-VL, through the prompt template of diffusers'
Qwen-Image pipelines, whose text context is 1024 tokens (`tokenizer_max_length`; they refuse a
`max_sequence_length` above it). The instruction (Know3D's view prompt, a space, the back text) must fit in it, as
counted by the editor's own tokenizer (`<editor>/tokenizer`).
"""

from __future__ import annotations

import logging
import unicodedata
from pathlib import Path

from ..errors import CheckpointError, ModelMissingError, UsageError

logger = logging.getLogger(__name__)

EDITOR_TEXT_TOKENS = 1024  # text context of the Qwen-Image pipelines (diffusers `tokenizer_max_length`)


class InstructionLimit:
    """Checks editor instructions against `EDITOR_TEXT_TOKENS`; the tokenizer loads on the first long text."""

    def __init__(self, editor_dir: Path):
        self.editor_dir = Path(editor_dir)
        self._tokenizer = None

    def tokens(self, text: str) -> int:
        """Token count of `text` for the editor's text encoder (no special tokens)."""
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self.editor_dir / "tokenizer")
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def check(self, instruction: str, view_prompt: str) -> None:
        """Raise `UsageError` when `instruction` does not fit the editor's text context.

        Byte-level BPE never makes more tokens than the text has UTF-8 bytes (after the tokenizer's NFC step), so
        short texts pass without loading the tokenizer.
        """
        if len(unicodedata.normalize("NFC", instruction).encode("utf-8")) <= EDITOR_TEXT_TOKENS:
            return
        count = self.tokens(instruction)
        if count > EDITOR_TEXT_TOKENS:
            view = self.tokens(view_prompt + " ")
            raise UsageError(
                f"the back text is too long: {count - view} tokens, but the editor's text encoder (Qwen2.5-VL, "
                f"{EDITOR_TEXT_TOKENS}-token context in Qwen-Image-Edit) leaves {EDITOR_TEXT_TOKENS - view} after "
                "the view prompt; shorten it"
            )


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    if not path.is_dir():
        raise ModelMissingError(f"editor tokenizer not found: {path} does not exist")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"cannot load the editor tokenizer from {path}: {' '.join(str(exc).split())}") from exc


__all__ = ["EDITOR_TEXT_TOKENS", "InstructionLimit"]
