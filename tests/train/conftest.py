"""Shared training fixtures: a synthetic dataset from the tiny models, and override lists for tiny runs."""

from __future__ import annotations

from pathlib import Path

import pytest

SHAPE_TOKENS = 64  # shape-latent voxels per synthetic sample: equal sizes, fast sparse steps


@pytest.fixture(scope="session")
def train_data(tiny_root, tmp_path_factory) -> Path:
    """Two synthetic samples (shape latents at 512, 64 voxels each; 2 prompt variants)."""
    from know3d_cli.tiny.dataset import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("train-data") / "dataset", tiny_root, num_samples=2,
                                   shape_tokens=SHAPE_TOKENS)


def train_overrides(tiny_root: Path, dataset: Path, out: Path, *extra: str) -> list[str]:
    """A tiny CPU run: tiny models, batch 2, no previews or TensorBoard unless `extra` asks."""
    return ["preset=tiny", f"models.tiny_root={tiny_root}", f"train.dataset={dataset}", f"train.output_dir={out}",
            "train.batch_size=2", "train.validation.every=0", "train.tensorboard=false", "train.log_every=1",
            *extra]
