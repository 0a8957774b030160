"""The editor instruction: Know3D's fixed view prompt followed by the user's (or the MLLM's) back-side text."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

P_VIEW = "Show the reverse side of the subject as seen from rotating the camera 180 degrees."


@dataclass(frozen=True)
class BackViewPrompt:
    user_text: str  # the --back text as given (may be empty)
    expanded: str | None  # the MLLM's part-level back description, when `mllm.expand` ran
    instruction: str  # exact editor prompt: P_VIEW, a space, then `expanded` or else `user_text` (P_VIEW alone if empty)


def build_back_prompt(user_text: str, expanded: str | None = None) -> BackViewPrompt:
    """Compose the editor instruction; the expansion, when there is one, replaces the user's text.

    The user's text goes in exactly as typed, only its outer whitespace trimmed (its line breaks stay); the MLLM's
    expansion is joined into one line.
    """
    user_text = user_text or ""
    text = " ".join(expanded.split()) if expanded and expanded.strip() else user_text.strip()
    instruction = f"{P_VIEW} {text}" if text else P_VIEW
    return BackViewPrompt(user_text=user_text, expanded=expanded, instruction=instruction)


def check_text_encodable(text: str) -> None:
    """Raise `UsageError` when `text` holds characters that are not valid UTF-8 (undecodable command-line bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"the back text is not valid UTF-8 (byte {exc.start} cannot be decoded); "
                         "pass it as UTF-8 text") from exc


__all__ = ["P_VIEW", "BackViewPrompt", "build_back_prompt", "check_text_encodable"]
