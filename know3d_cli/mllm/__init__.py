"""Qwen2.5-VL prompt building and answer parsing: what the editor is asked to imagine."""

from .expand import (
    SYSTEM_PROMPT,
    VIEWS_SYSTEM_PROMPT,
    BackViewExpander,
    BackViewExpansion,
    parse_description,
    part_sentence,
)
from .prompt import P_VIEW, BackViewPrompt, build_back_prompt, check_text_encodable

__all__ = [
    "P_VIEW", "SYSTEM_PROMPT", "VIEWS_SYSTEM_PROMPT", "BackViewExpander", "BackViewExpansion", "BackViewPrompt",
    "build_back_prompt", "check_text_encodable", "parse_description", "part_sentence",
]
