"""generate's positional arguments (images, folders, globs vs key=value) and the --id-template."""

from __future__ import annotations

from pathlib import Path

import pytest

from know3d_cli.errors import InputError, UsageError
from know3d_cli.inputs import IdTemplate, expand_inputs, split_arguments


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_existing_paths_are_inputs_and_key_value_are_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "odd=name.png")
    args = ["a.png", "odd=name.png", "tap.block=3", "photos/*.png", "editor=qwen_image_edit_2509"]
    assert split_arguments(args) == (["a.png", "odd=name.png", "photos/*.png"],
                                     ["tap.block=3", "editor=qwen_image_edit_2509"])


def test_folders_globs_and_files_expand_in_order_once(tmp_path):
    shots = tmp_path / "shots"
    for name in ("b.png", "a.JPG", "notes.txt"):
        _touch(shots / name)
    (shots / "sub.png").mkdir()  # a folder named like an image is not one
    single = _touch(tmp_path / "single.webp")
    found = expand_inputs([str(shots), str(tmp_path / "shots" / "*.png"), str(single), str(tmp_path / "missing.png")])
    assert found == [shots / "a.JPG", shots / "b.png", single, tmp_path / "missing.png"]


@pytest.mark.parametrize("args,needle", [([], "no input image"), (["{d}/*.png"], "no image matches"),
                                         (["{d}"], "directory without images")])
def test_inputs_that_name_no_image_are_input_errors(tmp_path, args, needle):
    with pytest.raises(InputError, match=needle):
        expand_inputs([arg.format(d=tmp_path) for arg in args])


def test_id_template_fields_and_errors(tmp_path):
    image = tmp_path / "shoots" / "mug.png"
    assert IdTemplate("{parent}_{stem}_s{seed}").render(image, 2, 7, "auto") == "shoots_mug_s7"
    assert IdTemplate("{index:03d}-{name}-{mode}").render(image, 2, None, "trellis") == "002-mug.png-trellis"
    assert IdTemplate().render(image, 1, None, "auto") == "mug"
    assert IdTemplate("{stem}_s{seed}").uses_seed and not IdTemplate().uses_seed
    for bad, needle in (("{colour}", "unknown field 'colour'"), ("plain", "no field"), ("{stem", "invalid")):
        with pytest.raises(UsageError, match=needle):
            IdTemplate(bad)
    with pytest.raises(UsageError, match="invalid --id-template"):
        IdTemplate("{stem:d}").render(image, 1, None, "auto")
