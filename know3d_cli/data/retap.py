"""A dataset's H_DiT tapped again under other editor settings (an editor LoRA, another tap block or step).

After `know3d train editor-lora`, the adapter must learn from the hidden states of the fine-tuned editor. Everything
else in a sample (latents, renders, DINOv3 tokens, prompts, editor seeds) does not depend on the editor, so
`retap_dataset` copies the samples of a finished dataset into a new folder and recomputes only `hdit`, by the code
`know3d data build` runs (`conditions.tapped_states` on the stored front render, each variant with its stored
instruction and editor seed), instead of redoing O-Voxel and the encoders. `dataset.json` keeps the source's settings
but `editor` and `tap`, which are the new ones, and names the source under `built_by.retapped_from`.

The new folder is written by `DatasetWriter` (whole samples only; a killed run resumes, skipping finished samples);
a folder that already holds a dataset with other settings is refused (exit 2).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hub
from ..config import Know3dConfig, to_container
from ..errors import InputError
from ..outputs import read_results
from ..runtime import resolve_runtime
from ..shard import Shard
from .conditions import tapped_states
from .prompts import PromptVariant
from .schema import CONDITIONS_FILE, DATASET_FILE, LATENTS_FILE, SAMPLE_FILE
from .writer import BACK_FILE, FRONT_FILE, INDEX_DIR, SAMPLES_DIR, DatasetWriter, Sample
from .views import stored_view

logger = logging.getLogger(__name__)

_INDEX_FIELDS = ("id", "source", "sha256", "prompts", "counts")  # sample.json keys `Sample.sample_json` writes itself


@dataclass(frozen=True)
class RetapSummary:
    total: int  # samples of the source dataset
    retapped: int  # written by this run
    skipped: int  # already in the new folder


def retap_dataset(source: Path, out: Path, cfg: Know3dConfig,
                  emit: Callable[[dict[str, Any]], None] | None = None) -> RetapSummary:
    """Copy the dataset at `source` to `out` with every `hdit` tapped again with `cfg.editor` and `cfg.tap`.

    Raises:
        InputError: `source` is not a dataset folder, or a sample of it is incomplete (exit 3).
        ConfigError: `out` holds a dataset built with other settings (exit 2).
    """
    from PIL import Image
    from safetensors.torch import load_file

    emit = emit or (lambda event: None)
    source = Path(source)
    try:
        info = json.loads((source / DATASET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{source} is not a dataset folder of `know3d data build` ({exc})") from exc
    settings = to_container(cfg)
    info["settings"] = {**info["settings"], "editor": settings["editor"], "tap": settings["tap"]}
    info["built_by"] = {**info.get("built_by", {}), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "retapped_from": str(source)}
    writer = DatasetWriter(out, Shard(0, 1), info)
    records = [r for path in sorted((source / INDEX_DIR).glob("*.jsonl")) for r in read_results(path)]
    editor = None
    retapped = skipped = 0
    for record in records:
        sample_id = record["id"]
        if writer.finished(sample_id):
            writer.adopt(sample_id)
            skipped += 1
            continue
        folder = source / SAMPLES_DIR / sample_id
        try:
            sample = json.loads((folder / SAMPLE_FILE).read_text(encoding="utf-8"))
            latents, conditions = load_file(str(folder / LATENTS_FILE)), load_file(str(folder / CONDITIONS_FILE))
        except (OSError, ValueError) as exc:
            raise InputError(f"{folder} is not a complete sample ({exc})") from exc
        if editor is None:
            from ..editor import load_editor

            editor = load_editor(hub.resolve(cfg, "editor").path, cfg.editor, resolve_runtime(cfg.runtime))
        variants = [PromptVariant(tuple(v["parts"]), prompt) for v, prompt in zip(sample["variants"], sample["prompts"])]
        seeds = [v["editor_seed"] for v in sample["variants"]]
        start = time.perf_counter()
        tapped = tapped_states(editor, stored_view(folder / FRONT_FILE), variants, seeds, cfg)
        timings = {**sample.get("timings_s", {}), "editor": round(time.perf_counter() - start, 4)}
        rest = {k: v for k, v in sample.items() if k not in _INDEX_FIELDS}
        with Image.open(folder / FRONT_FILE) as front, Image.open(folder / BACK_FILE) as back:
            writer.write(Sample(sample_id, sample["source"], sample["sha256"], latents,
                                {**conditions, "hdit": tapped.hidden}, front.convert("RGBA"), back.convert("RGBA"),
                                tuple(sample["prompts"]), {**rest, "tap": tapped.tap, "timings_s": timings}))
        retapped += 1
        emit({"event": "retap", "id": sample_id, "status": "ok", "dir": str(writer.samples / sample_id)})
    logger.info("retapped %d samples of %s into %s (%d already there)", retapped, source, out, skipped)
    return RetapSummary(len(records), retapped, skipped)


__all__ = ["RetapSummary", "retap_dataset"]
