"""Test helpers around the tiny random Qwen2.5-VL of nemo_vtp.models.qwen25_vl.tiny (re-exported here):
images, prompts, and teacher-forced references for engine tests."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nemo_vtp.models.qwen25_vl.tiny import (  # noqa: F401 (re-exported for the tests)
    CHAT_TEMPLATE,
    MAX_PIXELS,
    MIN_PIXELS,
    SPECIAL_TOKENS,
    make_config,
    make_image_processor,
    make_model,
    make_tokenizer,
    randomize_,
    save_processor,
    write_tiny_folder,
)


def make_image(seed: int = 0, width: int = 84, height: int = 56) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")


def make_prompt(tokenizer, image_processor, text: str, image=None):
    """A user turn with an optional image -> a Prompt with expanded image pads (what our processor makes)."""
    from nemo_vtp.generation.engine import Prompt, expand_image_pads

    content = ([{"type": "image"}] if image is not None else []) + [{"type": "text", "text": text}]
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(chat)["input_ids"]
    if image is None:
        return Prompt(token_ids=ids, text=chat)
    enc = image_processor(images=[image], return_tensors="pt")
    grid = enc["image_grid_thw"]
    per_image = (grid.prod(-1) // image_processor.merge_size**2).tolist()
    ids = expand_image_pads(ids, tokenizer.convert_tokens_to_ids("<|image_pad|>"), per_image)
    return Prompt(token_ids=ids, pixel_values=enc["pixel_values"], image_grid_thw=grid, images=[image], text=chat)


def comparable_length(response: list[int], config) -> int:
    """How many leading response tokens a teacher-forced reference scores like the engine did.

    A random model may emit `<|image_pad|>`/`<|video_pad|>`: an engine embeds it as a plain token, while a
    forward with images would read it as an image slot. References therefore feed a pad id in its place
    (as the RL loop does) and are compared up to and including the first such token only.
    """
    placeholders = {config.image_token_id, config.video_token_id}
    return next((i + 1 for i, t in enumerate(response) if t in placeholders), len(response))


def teacher_forced_logprobs(model, prompt, response: list[int]) -> torch.Tensor:
    """(comparable_length(response),) raw log-probs of `response` from one unpadded HF forward (HF computes
    the positions); emitted image/video placeholders are fed as the pad id (see `comparable_length`)."""
    device = next(model.parameters()).device
    n = comparable_length(response, model.config)
    placeholders = {model.config.image_token_id, model.config.video_token_id}
    fed = [model.config.text_config.pad_token_id if t in placeholders else t for t in response]
    ids = torch.tensor([list(prompt.token_ids) + fed], device=device)
    kwargs = {}
    if prompt.pixel_values is not None:
        kwargs = {
            "pixel_values": prompt.pixel_values.to(device),
            "image_grid_thw": prompt.image_grid_thw.to(device),
            "mm_token_type_ids": (ids == model.config.image_token_id).int(),
        }
    model.model.rope_deltas = None
    with torch.no_grad():
        logits = model(input_ids=ids, **kwargs).logits[0].float()
    start = len(prompt.token_ids) - 1
    logp = logits[start : start + n].log_softmax(-1)
    return logp.gather(1, torch.tensor(response[:n], device=device)[:, None]).squeeze(1).cpu()
