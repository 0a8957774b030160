"""The import graph of `know3d_cli` points one way: lower layers never import upper ones.

Layers, lowest first (each may import its own layer and the ones below it):

1. foundation: `errors` (exceptions and exit codes), `choices` (the config-choice Enum base), `geometry` (`Asset3D`,
   sparse voxel sampling). They import nothing from the layers above; every layer may use them.
2. library: `trellis2`, the self-contained TRELLIS.2 library. Settings, device and precision are passed in; it never
   sees the app's config tree, runtime, timing, files or CLI, and knows nothing about the editor (no diffusers,
   Hydra, Typer or Rich).
3. infrastructure: `config` (the schema; its `trellis2` / `adapter` sections are the library's settings),
   `train_config` (its `train` section), `runtime`, `timing`, `io`, `outputs` (the shared output folder: asset
   locks, all-or-nothing asset folders, results.jsonl), `metadata`, `manifest`, `inputs` (generate's images and
   the id template), `machine` (host and GPUs, torch-free), `progress`, `hub`, `render` (the offscreen renderer and
   voxel depth pictures), `shard` (the stable `--shard i/n` split).
4. stages: `preprocess`, `mllm`, `editor`, `export`; a stage never imports another stage.
5. tools: `tiny` (tiny random models in the real layouts), `data` (training data: assets, O-Voxel, and views
   rendered through the `preprocess` crop), `report` (the review gallery of an output folder).
6. wiring: `run_plan` (the mode), `stage_models` (models and their residency), `asset_run` (stage results ->
   asset folder), `pipeline` (the chain), `batch`, `ray_engine` (batch on Ray actors), `demo`, `doctor`, `train`
   (the trainer).
7. edge: `cli`, `__main__`.

Imports are read with `ast` from the source (including imports inside functions and under `TYPE_CHECKING`), so a
lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "know3d_cli"
PACKAGE = "know3d_cli"

LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"__init__", "errors", "choices", "geometry"}),
    ("library", {"trellis2"}),
    ("infrastructure", {"config", "train_config", "runtime", "timing", "io", "outputs", "metadata", "manifest",
                        "inputs", "machine", "progress", "hub", "render", "shard"}),
    ("stages", {"preprocess", "mllm", "editor", "export"}),
    ("tools", {"tiny", "data", "report"}),
    ("wiring", {"run_plan", "stage_models", "asset_run", "pipeline", "batch", "ray_engine", "demo", "doctor", "train"}),
    ("edge", {"cli", "__main__"}),
]
STAGES = {"preprocess", "mllm", "editor", "export"}
# Third-party packages the TRELLIS.2 library must not depend on (the editor's and the app's).
LIBRARY_FORBIDDEN = {"diffusers", "hydra", "omegaconf", "typer", "rich", "peft"}


def _module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, root: Path = PACKAGE_ROOT) -> set[str]:
    """Absolute names of everything `path` imports (relative imports resolved; `from x import y` gives x and x.y)."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


def _component(name: str) -> str | None:
    """The top-level component of a know3d_cli module (`know3d_cli.trellis2.nn.x` -> `trellis2`), None for other
    packages and for names that are not modules (`from . import __version__`)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return "__init__"
    exists = (PACKAGE_ROOT / parts[1]).is_dir() or (PACKAGE_ROOT / f"{parts[1]}.py").is_file()
    return parts[1] if exists else None


def _layer(component: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        if component in members:
            return index
    raise AssertionError(f"know3d_cli.{component} is in no layer: classify it in tests/test_layering.py LAYERS")


SOURCES = sorted(PACKAGE_ROOT.rglob("*.py"))


def _edges() -> list[tuple[str, str, str]]:
    """(importing module, its component, imported component) for every import between two components."""
    edges = []
    for path in SOURCES:
        module = _module_name(path)
        own = _component(module)
        for other in {_component(name) for name in _imports(path)} - {None, own}:
            edges.append((module, own, other))
    return edges


def test_every_component_is_in_a_layer():
    components = {p.stem for p in PACKAGE_ROOT.iterdir() if p.suffix == ".py"}
    components |= {p.name for p in PACKAGE_ROOT.iterdir() if (p / "__init__.py").is_file()}
    for component in components:
        _layer(component)


def test_imports_point_down_the_layers():
    upward = [f"{module} ({LAYERS[_layer(own)][0]}) imports know3d_cli.{other} ({LAYERS[_layer(other)][0]})"
              for module, own, other in _edges() if _layer(other) > _layer(own)]
    assert not upward, "\n".join(upward)


def test_stages_never_import_each_other():
    across = [f"{module} imports know3d_cli.{other}" for module, own, other in _edges()
              if own in STAGES and other in STAGES]
    assert not across, "\n".join(across)


def test_the_trellis2_library_uses_only_the_foundation_and_no_app_framework():
    library = [path for path in SOURCES if _component(_module_name(path)) == "trellis2"]
    assert len(library) > 30
    for path in library:
        for name in _imports(path):
            component = _component(name)
            if component is not None:
                assert _layer(component) <= _layer("trellis2"), f"{path} imports {name}"
            assert name.split(".")[0] not in LIBRARY_FORBIDDEN, f"{path} imports {name}"


@pytest.mark.parametrize("relative, source, expected", [
    ("trellis2/x.py", "from ..errors import ConfigError\n", {"know3d_cli.errors", "know3d_cli.errors.ConfigError"}),
    ("trellis2/x.py", "from . import hub\n", {"know3d_cli.trellis2", "know3d_cli.trellis2.hub"}),
    ("trellis2/nn/x.py", "if TYPE_CHECKING:\n    from ...runtime import Runtime\n",
     {"know3d_cli.runtime", "know3d_cli.runtime.Runtime"}),
    ("trellis2/__init__.py", "def f():\n    import know3d_cli.cli\n", {"know3d_cli.cli"}),
])
def test_the_import_reader_resolves_relative_lazy_and_type_checking_imports(tmp_path, relative, source, expected):
    root = tmp_path / PACKAGE
    path = root / relative
    path.parent.mkdir(parents=True)
    path.write_text(source)
    assert _imports(path, root) == expected
    assert _component("know3d_cli.runtime.Runtime") == "runtime" and _component("know3d_cli.__version__") is None
