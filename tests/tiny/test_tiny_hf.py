"""The tiny editor, MLLM and DINOv3 folders reload with the stock `from_pretrained(local_files_only=True)`."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from know3d_cli.tiny.dinov3 import TINY_DINOV3_HIDDEN, TINY_DINOV3_REGISTERS, write_tiny_dinov3  # noqa: E402
from know3d_cli.tiny.editor import RELEASED_SCHEDULER_CONFIG, TINY_EDITOR_HIDDEN, write_tiny_editor  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_hf")


def _weights(path):
    from safetensors.torch import load_file

    return {f.relative_to(path).as_posix(): load_file(f) for f in sorted(path.rglob("*.safetensors"))}


def test_editor_folder_reloads(tiny_root):
    from diffusers import DiffusionPipeline, QwenImageEditPlusPipeline

    path = tiny_root / "editor"
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPlusPipeline"
    assert set(index) >= {"transformer", "vae", "scheduler", "text_encoder", "tokenizer", "processor"}
    pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True)
    assert isinstance(pipe, QwenImageEditPlusPipeline)
    assert pipe.transformer.inner_dim == TINY_EDITOR_HIDDEN
    assert pipe.transformer.config.zero_cond_t is True
    for key, value in RELEASED_SCHEDULER_CONFIG.items():
        assert pipe.scheduler.config[key] == value, key
    tok = pipe.processor.tokenizer
    assert tok.convert_tokens_to_ids("<|image_pad|>") == pipe.text_encoder.config.image_token_id
    assert len(tok) <= pipe.text_encoder.config.text_config.vocab_size
    assert pipe.text_encoder.config.text_config.hidden_size == pipe.transformer.config.joint_attention_dim


def test_writers_are_deterministic_and_idempotent(tiny_root, root):
    first = _weights(tiny_root / "editor")  # the session's set, seed 0
    stamp = (tiny_root / "editor" / "model_index.json").stat().st_mtime_ns
    assert write_tiny_editor(tiny_root / "editor", seed=0) == tiny_root / "editor"  # complete: returns at once
    assert (tiny_root / "editor" / "model_index.json").stat().st_mtime_ns == stamp
    second = _weights(write_tiny_editor(root / "b", seed=0))
    other = _weights(write_tiny_editor(root / "c", seed=1))
    assert first.keys() == second.keys()
    for name in first:
        for key in first[name]:
            assert torch.equal(first[name][key], second[name][key]), (name, key)
    diff = other["transformer/diffusion_pytorch_model.safetensors"]
    assert not torch.equal(diff["img_in.weight"], first["transformer/diffusion_pytorch_model.safetensors"]["img_in.weight"])


def test_rewrite_after_seed_change(root):
    path = write_tiny_dinov3(root / "dino_seed", seed=0)
    before = _weights(path)["model.safetensors"]["embeddings.cls_token"].clone()
    write_tiny_dinov3(path, seed=5)
    after = _weights(path)["model.safetensors"]["embeddings.cls_token"]
    assert not torch.equal(before, after)


def test_mllm_folder_reloads(tiny_root):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    path = tiny_root / "mllm"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, local_files_only=True)
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert processor.chat_template
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                         add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert model.generation_config.eos_token_id == processor.tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_dinov3_folder_reloads(tiny_root):
    from transformers import DINOv3ViTModel

    path = tiny_root / "dinov3"
    model = DINOv3ViTModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    assert model.config.num_register_tokens == TINY_DINOV3_REGISTERS
    assert model.config.patch_size == 16 and model.config.hidden_size == TINY_DINOV3_HIDDEN
    names = {name for name, _ in model.named_parameters()}
    assert {"embeddings.register_tokens", "layer.0.attention.q_proj.weight", "norm.weight"} <= {
        n.removeprefix("model.") for n in names}
