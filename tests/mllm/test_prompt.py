"""The editor instruction built from Know3D's view prompt and the back-side text."""

from __future__ import annotations

import dataclasses

import pytest

from know3d_cli.mllm import P_VIEW, BackViewPrompt, build_back_prompt


def test_view_prompt_is_the_papers():
    assert P_VIEW == "Show the reverse side of the subject as seen from rotating the camera 180 degrees."


@pytest.mark.parametrize("user_text", ["", "   ", "\n"])
def test_empty_text_gives_the_view_prompt_alone(user_text):
    prompt = build_back_prompt(user_text)
    assert prompt.instruction == P_VIEW
    assert prompt.user_text == user_text and prompt.expanded is None


def test_user_text_follows_after_one_space_exactly_as_typed():
    text = 'à l\'arrière : « deux  sangles »\n背面有拉链 🎒 \\n ${oc.env:HOME} "q"'
    prompt = build_back_prompt(f"  {text}\n")
    assert prompt.instruction == P_VIEW + " " + text  # only the outer whitespace is trimmed
    assert prompt.user_text == f"  {text}\n"


def test_expansion_replaces_the_user_text():
    prompt = build_back_prompt("a zip pocket", expanded="Back panel: flat grey fabric. Pocket: zipped.")
    assert prompt.instruction == P_VIEW + " Back panel: flat grey fabric. Pocket: zipped."
    assert prompt.expanded == "Back panel: flat grey fabric. Pocket: zipped."
    assert prompt.user_text == "a zip pocket"


def test_blank_expansion_falls_back_to_the_user_text():
    assert build_back_prompt("a zip", expanded="  ").instruction == P_VIEW + " a zip"


def test_prompt_is_frozen():
    prompt = build_back_prompt("x")
    assert isinstance(prompt, BackViewPrompt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prompt.instruction = "y"  # type: ignore[misc]
