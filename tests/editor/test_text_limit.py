"""The back-text limit: the editor instruction must fit Qwen-Image-Edit's 1024-token text context."""

from __future__ import annotations

import pytest

from know3d_cli.editor import EDITOR_TEXT_TOKENS, InstructionLimit
from know3d_cli.errors import UsageError
from know3d_cli.mllm import P_VIEW, build_back_prompt


def test_short_text_needs_no_tokenizer(tmp_path):
    limit = InstructionLimit(tmp_path / "no-editor-here")  # would fail to load: it is never needed
    limit.check(build_back_prompt("a zipper pocket, 背面有拉链 🎒").instruction, P_VIEW)
    assert limit._tokenizer is None


def test_limit_is_counted_in_the_editors_tokens(tiny_root):
    limit = InstructionLimit(tiny_root / "editor")
    view = limit.tokens(P_VIEW + " ")
    budget = EDITOR_TEXT_TOKENS - view
    # the tiny tokenizer is byte-level without merges: an emoji is 4 tokens, "x" is 1
    fits = "🎒" * (budget // 4) + "x" * (budget % 4)
    limit.check(build_back_prompt(fits).instruction, P_VIEW)
    assert limit.tokens(build_back_prompt(fits).instruction) == EDITOR_TEXT_TOKENS
    with pytest.raises(UsageError, match=f"{budget + 1} tokens.*leaves {budget}") as info:
        limit.check(build_back_prompt(fits + "x").instruction, P_VIEW)
    assert "\n" not in str(info.value) and info.value.exit_code == 2
