"""Tiny random Qwen2.5-VL instruct model with an offline byte-level tokenizer, in the `save_pretrained` layout.

The same builders make the tiny editor's text encoder and processor (`tiny/editor.py`), since Qwen-Image-Edit's
text encoder is a Qwen2.5-VL. The tokenizer is byte-level (256 byte tokens, no merges) plus the Qwen special tokens,
so it needs no download; the ids differ from the real Qwen2 vocabulary, which the tiny models do not care about.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .marker import clear, is_complete, mark_complete

logger = logging.getLogger(__name__)

TINY_QWEN_VL_HIDDEN = 16  # text hidden size = vision out_hidden_size = the tiny editor's joint_attention_dim

_SPECIAL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL chat format: `<|im_start|>{role}\n{content}<|im_end|>\n`, one vision slot per image part, the default
# system turn when none is given, and `<|im_start|>assistant\n` as the generation prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)



def tiny_qwen_tokenizer():
    """Byte-level `Qwen2Tokenizer`: ids 0-255 are the byte alphabet, 256 `<|endoftext|>`, then the specials."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {char: index for index, char in enumerate(sorted(ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|endoftext|>",
                               pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(_SPECIAL_TOKENS)})
    return tokenizer


def tiny_qwen_processor(tokenizer, chat_template: str | None = None):
    """`Qwen2VLProcessor` with small pixel limits (56x56 to 224x224); needs torchvision."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 224 * 224})
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=Qwen2VLVideoProcessor(), chat_template=chat_template)


def tiny_qwen_vl(tokenizer, seed: int):
    """A 2-layer Qwen2.5-VL (text hidden 16, vision depth 2) whose vocabulary covers `tokenizer`."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in ("<|endoftext|>", *_SPECIAL_TOKENS)}
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": TINY_QWEN_VL_HIDDEN, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096, "bos_token_id": None, "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            # sum(mrope_section) == head_dim / 2 = 16 / 2 / 2
            "rope_parameters": {"mrope_section": [1, 1, 2], "rope_type": "default", "rope_theta": 1e6},
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": TINY_QWEN_VL_HIDDEN},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def write_tiny_mllm(path: Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-VL *instruct* model and its processor (with a chat template) to `path`.

    Layout as `Qwen/Qwen2.5-VL-7B-Instruct`: `config.json`, `generation_config.json`, `model.safetensors`, tokenizer
    and processor files, `chat_template.jinja`. Deterministic in `seed`; returns at once if already written.
    """
    path = Path(path)
    if is_complete(path, "mllm", seed):
        return path
    clear(path)
    tokenizer = tiny_qwen_tokenizer()
    processor = tiny_qwen_processor(tokenizer, chat_template=CHAT_TEMPLATE)
    model = tiny_qwen_vl(tokenizer, seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    mark_complete(path, "mllm", seed)
    logger.debug("wrote tiny mllm to %s", path)
    return path


__all__ = ["CHAT_TEMPLATE", "TINY_QWEN_VL_HIDDEN", "tiny_qwen_processor", "tiny_qwen_tokenizer", "tiny_qwen_vl",
           "write_tiny_mllm"]
