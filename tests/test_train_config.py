"""The `train` configuration: per-stage recipes from the train= group, one-line errors, and no effect on assets."""

from __future__ import annotations

import pytest

from know3d_cli.config import load_config, to_container
from know3d_cli.errors import ConfigError
from know3d_cli.metadata import run_key


def test_stage_recipes_follow_the_released_training_configs():
    ss = load_config([]).train
    assert (ss.stage, ss.t_schedule.name, ss.t_schedule.mean, ss.t_schedule.std) == ("ss", "logit_normal", 1.0, 1.0)
    assert ss.optimizer.lr == 1e-4 and ss.optimizer.betas == [0.9, 0.95] and ss.optimizer.weight_decay == 0.01
    assert (ss.p_uncond, ss.sigma_min, ss.ema.rate, ss.grad_clip.percentile) == (0.1, 1e-5, 0.9999, 95.0)
    shape = load_config(["train=shape_512"]).train
    assert (shape.stage, shape.t_schedule.name, shape.max_tokens, shape.optimizer.lr) == (
        "shape_512", "uniform", 8192, 1e-4)
    hr = load_config(["train=shape_1024", "train.steps=5"]).train
    assert (hr.stage, hr.optimizer.lr, hr.max_tokens, hr.steps) == ("shape_1024", 2e-5, 32768, 5)


@pytest.mark.parametrize("override,key", [
    ("train.trainable=vae", "train.trainable"),
    ("train.t_schedule.name=beta", "train.t_schedule.name"),
    ("train.p_uncond=1.5", "train.p_uncond"),
    ("train.adapter.pool=3", "train.adapter.pool"),
    ("train.editor_lora.weighting_scheme=foo", "train.editor_lora.weighting_scheme"),
    ("train.from_scratch=true", "train.from_scratch"),
    ("train.distributed=fsdp", "train.distributed"),
    ("train.accumulation=3", "train.accumulation"),
    ("train.steps=0", "train.steps"),
    ("train.validation.steps=0", "train.validation.steps"),
    ("train=shape_512 train.trainable=ss_vae", "train.trainable=ss_vae"),
    ("train=shape_512 train.ss_latents=encoder", "train.ss_latents=encoder"),
    ("train.ss_vae.lambda_kl=-1", "train.ss_vae.lambda_kl"),
    ("train.ss_vae.loss=focal", "train.ss_vae.loss"),
])
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_config(override.split())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override", ["train.p_uncond_ext=0.2", "+train.p_uncond_ext=0.2"])
def test_a_renamed_key_names_its_new_name(override):
    with pytest.raises(ConfigError, match=r"train\.p_uncond_ext was renamed to train\.p_uncond_editor"):
        load_config([override])
    assert load_config(["train.p_uncond_editor=0.2"]).train.p_uncond_editor == 0.2


def test_training_settings_do_not_change_an_assets_key():
    a = to_container(load_config([]))
    b = to_container(load_config(["train.steps=7", "train=shape_1024"]))
    assert run_key("sha", "back", 1, a) == run_key("sha", "back", 1, b)
