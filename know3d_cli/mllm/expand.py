"""Qwen2.5-VL reads the front photo and the user's hint and writes a part-level description of the back.

`describe` serves generation (`mllm.expand`); `describe_views` serves training data: the same model, chat format,
decoding and parser, shown the front and back renders of an asset, lists the parts of its back.

Greedy decoding, answer requested as JSON; an answer that does not parse never fails the run: the plain answer is
used if it reads like prose, otherwise the user's hint, and a warning is logged and recorded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..config import MllmConfig
from ..errors import CheckpointError, ModelMissingError
from ..runtime import Runtime

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You describe the hidden back side of an object for a 3D artist. You see a photo of the object's front and "
    "a hint from the user about its back. Describe what the back looks like part by part: shape, material, colour "
    "and attachments such as straps, zips, pockets, handles or labels. Follow the hint; where it says nothing, infer "
    "a plausible back that matches the front. Keep the object's identity, proportions and materials. Answer with "
    'JSON only, in this form: {"parts": [{"part": "...", "description": "..."}], '
    '"summary": "one sentence describing the back view"}'
)
# Training data (`know3d data build`): the back is seen, so the model lists what it shows instead of imagining it.
VIEWS_SYSTEM_PROMPT = (
    "You describe the back side of an object for a 3D artist. You see two renders of the same object: first its "
    "front, then its back (the camera turned 180 degrees around it). Describe what the back view shows part by "
    "part: shape, material, colour and attachments such as straps, zips, pockets, handles or labels, in particular "
    "the parts the front view does not show. Answer with "
    'JSON only, in this form: {"parts": [{"part": "...", "description": "..."}], '
    '"summary": "one sentence describing the back view"}'
)
VIEWS_REQUEST = "The first image is the front view, the second the back view. Describe the back."


@dataclass(frozen=True)
class BackViewExpansion:
    text: str | None  # description for the editor prompt; None = fall back to the user's hint
    raw: str  # the model's answer as generated
    parts: tuple[tuple[str, str], ...]  # (part, description) pairs parsed from the JSON answer
    warnings: tuple[str, ...]  # problems worth recording in metadata (unparsable answer, ...)


def _json_objects(text: str):
    """Every JSON object embedded in `text` (answers often wrap it in prose or a ```json fence)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            yield value
        start = text.find("{", end)


def _looks_like_prose(text: str) -> bool:
    """Readable text rather than the noise an untrained model emits: printable, mostly letters, several words."""
    if not text or not all(ch.isprintable() or ch in "\n\t" for ch in text):
        return False
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    return letters >= 0.8 * len(text) and len(text.split()) >= 3


def part_sentence(part: str, description: str = "") -> str:
    """One back part as the editor text writes it: `"Part: description."` (or `"Part."`)."""
    return f"{part}: {description.rstrip('.')}." if description else f"{part.rstrip('.')}."


def parse_description(raw: str, user_text: str) -> BackViewExpansion:
    """Turn the model's answer into the editor text (see the module docstring for the fallbacks)."""
    for obj in _json_objects(raw):
        parts = []
        for item in obj.get("parts") or []:
            if isinstance(item, dict) and str(item.get("part", "")).strip():
                parts.append((str(item["part"]).strip(), str(item.get("description", "")).strip()))
        summary = obj.get("summary")
        summary = summary.strip() if isinstance(summary, str) else ""
        pieces = [summary.rstrip(".") + "."] if summary else []
        pieces += [part_sentence(part, desc) for part, desc in parts]
        if pieces:
            return BackViewExpansion(" ".join(pieces), raw, tuple(parts), ())
    answer = " ".join(raw.split())
    if _looks_like_prose(answer):
        msg = "the MLLM answer is not the requested JSON; using it as plain text"
        logger.warning(msg)
        return BackViewExpansion(answer, raw, (), (msg,))
    fallback = "using the --back text instead" if user_text.strip() else "no back text is used"
    msg = f"the MLLM answer is unreadable (not JSON, not prose); {fallback}"
    logger.warning("%s: %r", msg, raw[:80])
    return BackViewExpansion(None, raw, (), (msg,))


class BackViewExpander:
    """A local Qwen2.5-VL instruct model (+ processor) that describes the back of the object in a photo.

    Args:
        path: local folder in the `save_pretrained` layout (`config.json`, weights, processor files).
        cfg: `mllm` settings (answer length, image size shown to the model).
        runtime: the load dtype; the caller moves it to the device with `.to()`.
    """

    def __init__(self, path: str | Path, cfg: MllmConfig, runtime: Runtime):
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise ModelMissingError(f"MLLM not found: {path / 'config.json'} does not exist")
        try:
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                path, dtype=runtime.dtype, local_files_only=True
            ).eval()
            self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"MLLM at {path} does not load as Qwen2.5-VL: {exc}") from exc
        self.cfg = cfg

    def to(self, device: torch.device | str) -> BackViewExpander:
        self.model.to(device)
        return self

    def messages(self, image: Image.Image, user_text: str) -> list[dict]:
        hint = user_text.strip() or "(none: describe the most plausible back)"
        return [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
            {"role": "user", "content": [{"type": "image", "image": image},
                                         {"type": "text", "text": f"Hint about the back: {hint}"}]},
        ]

    def _inputs(self, image: Image.Image, user_text: str):
        """Tokenised chat with the image; includes `mm_token_type_ids` (needed for correct 3-D MRoPE)."""
        return self._chat_inputs(self.messages(image, user_text), [image])

    def _chat_inputs(self, messages: list[dict], images: list[Image.Image]):
        """Tokenised `messages`, whose image entries are `images` in order."""
        if self.processor.chat_template is not None:
            return self.processor.apply_chat_template(
                messages, tokenize=True, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            )
        # no template shipped: Qwen's chat format written out
        text = "".join(
            f"<|im_start|>{m['role']}\n"
            + "".join("<|vision_start|><|image_pad|><|vision_end|>" if p["type"] == "image" else p["text"]
                      for p in m["content"])
            + "<|im_end|>\n"
            for m in messages
        ) + "<|im_start|>assistant\n"
        return self.processor(text=[text], images=images, return_tensors="pt")

    def _shown(self, image: Image.Image) -> Image.Image:
        """RGB, longest side `cfg.image_side` (LANCZOS)."""
        image = image.convert("RGB")
        scale = self.cfg.image_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(size, Image.LANCZOS)

    def _answer(self, inputs) -> str:
        """Greedy answer to tokenised chat `inputs`, decoded without special tokens."""
        inputs = inputs.to(self.model.device)
        out = self.model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        raw = self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]
        logger.debug("MLLM answer: %r", raw)
        return raw

    @torch.no_grad()
    def describe(self, image: Image.Image, user_text: str) -> BackViewExpansion:
        """Greedy answer for the photo and hint, parsed into the editor text."""
        return parse_description(self._answer(self._inputs(self._shown(image), user_text)), user_text)

    def view_messages(self, front: Image.Image, back: Image.Image) -> list[dict]:
        return [
            {"role": "system", "content": [{"type": "text", "text": VIEWS_SYSTEM_PROMPT}]},
            {"role": "user", "content": [{"type": "image", "image": front}, {"type": "image", "image": back},
                                         {"type": "text", "text": VIEWS_REQUEST}]},
        ]

    @torch.no_grad()
    def describe_views(self, front: Image.Image, back: Image.Image) -> BackViewExpansion:
        """Part-level description of the back from renders of both sides (training captions; `parts` holds the
        parsed (part, description) pairs, empty when the answer is not the requested JSON)."""
        images = [self._shown(front), self._shown(back)]
        return parse_description(self._answer(self._chat_inputs(self.view_messages(*images), images)), "")


__all__ = [
    "SYSTEM_PROMPT", "VIEWS_REQUEST", "VIEWS_SYSTEM_PROMPT", "BackViewExpander", "BackViewExpansion",
    "parse_description", "part_sentence",
]
