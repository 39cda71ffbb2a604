"""The Qwen2.5-VL processor: chat template, image -> patches, `<|image_pad|>` expansion, 3-D mrope
position ids, SFT examples with response-only labels, and RL prompts.

Equal to HF transformers' `Qwen2_5_VLProcessor` with the PIL image processor (`input_ids`,
`pixel_values`, `image_grid_thw`) and to HF `get_rope_index` (position ids); a unit test checks it.

Images: resized (bicubic) so both sides are multiples of 28 and the area is within
[min_pixels, max_pixels] (HF's `smart_resize` rule), scaled to [0, 1], normalised with the CLIP
mean/std, cut into 14x14 patches, each repeated over a temporal patch of 2, and ordered by 2x2
merge window. One image of grid (1, gh, gw) gives gh*gw patch rows of 3*2*14*14 = 1176 floats and
gh*gw/4 `<|image_pad|>` tokens.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nemo_vtp.data.instruction import user_text
from nemo_vtp.data.io import open_image
from nemo_vtp.data.schema import Sample, format_response
from nemo_vtp.data.tokenizer import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    DEFAULT_SYSTEM_PROMPT,
    EOS_TOKEN,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    special_token_ids,
)

IGNORE_INDEX = -100  # label of tokens that carry no loss (HF / torch cross-entropy convention)
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


@dataclass(frozen=True)
class VisionSpec:
    """Image preprocessing settings (HF `Qwen2VLImageProcessor` names)."""

    min_pixels: int = DEFAULT_MIN_PIXELS  # smallest resized area, pixels
    max_pixels: int = DEFAULT_MAX_PIXELS  # largest resized area, pixels
    patch_size: int = 14  # ViT patch side, pixels
    temporal_patch_size: int = 2  # frames per patch; a still image is repeated
    merge_size: int = 2  # spatial merge of the patch merger (2x2 patches -> 1 LLM token)
    image_mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    image_std: tuple[float, float, float] = OPENAI_CLIP_STD

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Target (height, width): multiples of `factor`, area within [min_pixels, max_pixels], aspect kept.

    Sides are rounded to the nearest multiple; if the area is then too large (small) both sides are
    scaled by the same factor and floored (ceiled) to multiples.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be at most 200, got {height}x{width}")
    h = round(height / factor) * factor  # may be 0 for a tiny side: the min_pixels branch then fixes it
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def image_to_patches(image: Image.Image, spec: VisionSpec = VisionSpec()) -> tuple[np.ndarray, tuple[int, int, int]]:
    """One RGB image -> (patches float32 (gh*gw, 3*T*p*p), grid (1, gh, gw)), rows by merge window."""
    h, w = smart_resize(image.height, image.width, spec.factor, spec.min_pixels, spec.max_pixels)
    pixels = np.asarray(image.convert("RGB").resize((w, h), resample=Image.BICUBIC))  # (h, w, 3) uint8
    x = (pixels.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.asarray(spec.image_mean, dtype=np.float32)) / np.asarray(spec.image_std, dtype=np.float32)
    p, m, t = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    gh, gw = h // p, w // p
    x = x.reshape(gh // m, m, p, gw // m, m, p, 3)
    x = x.transpose(0, 3, 1, 4, 6, 2, 5)  # (gh/m, gw/m, m, m, C, p, p)
    x = np.broadcast_to(x[:, :, :, :, :, None], (*x.shape[:5], t, p, p))  # repeat the still frame
    return np.ascontiguousarray(x).reshape(gh * gw, 3 * t * p * p), (1, gh, gw)


def build_prompt(question: str, num_images: int, system: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """The chat-template text of a one-turn user message (images first) up to `<|im_start|>assistant\\n`.

    Equals `apply_chat_template([{"role": "user", "content": [{"type": "image"}]*n + [{"type": "text",
    "text": question}]}], add_generation_prompt=True)` with Qwen2.5-VL's template (a non-default
    `system` adds a system message, as the template does).
    """
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{IMAGE_PLACEHOLDER * num_images}"
            f"{question}<|im_end|>\n<|im_start|>assistant\n")


def expand_image_pads(text: str, grids: list[tuple[int, int, int]], merge_size: int = 2) -> str:
    """Replace the i-th `<|image_pad|>` by t*h*w/merge_size**2 copies, for grids[i] = (t, h, w)."""
    pieces = text.split("<|image_pad|>")
    if len(pieces) - 1 != len(grids):
        raise ValueError(f"text has {len(pieces) - 1} <|image_pad|> tokens but {len(grids)} images were given")
    out = [pieces[0]]
    for (t, h, w), piece in zip(grids, pieces[1:]):
        out.append("<|image_pad|>" * (t * h * w // merge_size**2) + piece)
    return "".join(out)


def get_rope_index(
    input_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    image_token_id: int,
    video_token_id: int,
    spatial_merge_size: int = 2,
    second_per_grid_ts: torch.Tensor | None = None,
    tokens_per_second: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """3-D (temporal, height, width) mrope position ids, HF Qwen2.5-VL's rule.

    input_ids (B, T); image_grid_thw (num_images, 3) and video_grid_thw (num_videos, 3), consumed in
    order over the batch; attention_mask (B, T) or None (padding gets position 0).
    Text tokens advance all three ids by 1. A run of vision tokens with grid (t, h, w) starting at
    position s gets (s + t_i * interval, s + h_i, s + w_i) over the merged grid (t, h/m, w/m); the text
    after it resumes at s + max(h, w)/m. interval is 1 for images and
    tokens_per_second * second_per_grid_t for videos.
    Returns position_ids (3, B, T) int64 and mrope_position_deltas (B, 1) = max position + 1 - length.
    """
    input_ids = input_ids if input_ids.dim() == 2 else input_ids[None]
    batch, length = input_ids.shape
    position_ids = torch.zeros(3, batch, length, dtype=torch.long)
    grids = {1: iter(image_grid_thw.tolist() if image_grid_thw is not None else []),
             2: iter(video_grid_thw.tolist() if video_grid_thw is not None else [])}
    seconds = iter(second_per_grid_ts.tolist() if second_per_grid_ts is not None else [])
    deltas = []
    for b in range(batch):
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones(length, dtype=torch.bool)
        ids = input_ids[b][keep].tolist()
        kinds = [1 if i == image_token_id else 2 if i == video_token_id else 0 for i in ids]
        pieces, pos = [], 0
        for kind, run in itertools.groupby(kinds):
            n = len(list(run))
            if kind == 0:
                pieces.append(torch.arange(pos, pos + n).expand(3, n))
                pos += n
                continue
            t, h, w = next(grids[kind])
            interval = 1.0 if kind == 1 else tokens_per_second * next(seconds, 1.0)
            pieces.append(_vision_positions(pos, t, h // spatial_merge_size, w // spatial_merge_size, interval))
            pos += max(h, w) // spatial_merge_size
        positions = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.long)
        position_ids[:, b, keep] = positions
        deltas.append((int(positions.max()) + 1 if positions.numel() else 0) - len(ids))
    return position_ids, torch.tensor(deltas, dtype=torch.long).unsqueeze(1)


def _vision_positions(start: int, t: int, h: int, w: int, interval: float) -> torch.Tensor:
    """(3, t*h*w) positions of one merged vision grid, raster order (t, then h, then w)."""
    tt = (torch.arange(t) * interval).long() + start
    hh = torch.arange(h) + start
    ww = torch.arange(w) + start
    grid = torch.meshgrid(tt, hh, ww, indexing="ij")
    return torch.stack(grid).reshape(3, -1)


@dataclass
class SFTExample:
    """One tokenised SFT conversation. Shapes: T tokens, N patch rows, I images."""

    input_ids: torch.Tensor  # (T,) int64
    labels: torch.Tensor  # (T,) int64, = input_ids on the response and its <|im_end|>, -100 elsewhere (unshifted)
    loss_mask: torch.Tensor  # (T,) float32, 1.0 where labels != -100
    position_ids: torch.Tensor  # (3, T) int64, mrope
    pixel_values: torch.Tensor  # (N, 1176) float32
    image_grid_thw: torch.Tensor  # (I, 3) int64
    sample_id: str = ""


@dataclass
class RLPrompt:
    """One RL prompt: token ids up to `<|im_start|>assistant\\n`, its vision inputs, and the sample for rewards."""

    prompt_ids: torch.Tensor  # (T,) int64
    position_ids: torch.Tensor  # (3, T) int64
    pixel_values: torch.Tensor  # (N, 1176) float32
    image_grid_thw: torch.Tensor  # (I, 3) int64
    prompt_text: str  # the template text before pad expansion (what an engine's own processor takes)
    images: list[Image.Image]  # the RGB images as loaded (for engines that process images themselves)
    sample: dict = field(default_factory=dict)  # Sample.to_dict(): question, answer, choices, key_info...


class Processor:
    """Sample -> model inputs for Qwen2.5-VL, with a given HF tokenizer and image settings."""

    def __init__(self, tokenizer, vision: VisionSpec = VisionSpec(), system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                 instruction: str = "", max_image_pixels: int | None = None):
        self.tokenizer = tokenizer
        self.vision = vision
        self.system_prompt = system_prompt
        self.instruction = instruction  # appended to every question (nemo_vtp.data.instruction.user_text)
        self.max_image_pixels = max_image_pixels
        self.ids = special_token_ids(tokenizer)
        self.eos_token = EOS_TOKEN

    def encode_images(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> pixel_values (N, 1176) float32, image_grid_thw (I, 3) int64."""
        if not images:
            return torch.zeros(0, 3 * self.vision.temporal_patch_size * self.vision.patch_size**2), \
                torch.zeros(0, 3, dtype=torch.long)
        patches, grids = zip(*(image_to_patches(im, self.vision) for im in images))
        return torch.from_numpy(np.concatenate(patches)), torch.tensor(grids, dtype=torch.long)

    def load_images(self, sample: Sample, base_dir: str | Path) -> list[Image.Image]:
        return [open_image(Path(base_dir) / p, self.max_image_pixels) for p in sample.images]

    def question_text(self, sample: Sample) -> str:
        return user_text(sample.question, self.instruction)

    def prompt_text(self, sample: Sample) -> str:
        return build_prompt(self.question_text(sample), len(sample.images), self.system_prompt)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def position_ids(self, input_ids: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        """(T,) ids -> (3, T) mrope positions."""
        pos, _ = get_rope_index(input_ids[None], image_grid_thw, image_token_id=self.ids["image_token_id"],
                                video_token_id=self.ids["video_token_id"], spatial_merge_size=self.vision.merge_size)
        return pos[:, 0]

    def sft_example(self, sample: Sample, base_dir: str | Path, images: list[Image.Image] | None = None) -> SFTExample:
        """Prompt + `format_response(sample.response)` + `<|im_end|>\\n`; loss on the response and <|im_end|>."""
        if sample.response is None:
            raise ValueError(f"sample {sample.id!r} has no response: it cannot be used for SFT")
        images = self.load_images(sample, base_dir) if images is None else images
        pixel_values, grid = self.encode_images(images)
        prompt = expand_image_pads(self.prompt_text(sample), grid.tolist(), self.vision.merge_size)
        prompt_ids = self.tokenize(prompt)
        target_ids = self.tokenize(format_response(sample.response) + self.eos_token)
        tail_ids = self.tokenize("\n")
        input_ids = torch.tensor(prompt_ids + target_ids + tail_ids, dtype=torch.long)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        labels[len(prompt_ids):len(prompt_ids) + len(target_ids)] = torch.tensor(target_ids)
        return SFTExample(input_ids, labels, (labels != IGNORE_INDEX).float(), self.position_ids(input_ids, grid),
                          pixel_values, grid, sample.id)

    def rl_prompt(self, sample: Sample, base_dir: str | Path) -> RLPrompt:
        """The generation prompt of a sample plus the sample itself (for the reward functions)."""
        prompt = self.generation_prompt(self.question_text(sample), self.load_images(sample, base_dir))
        prompt.sample = sample.to_dict()
        return prompt

    def generation_prompt(self, question: str, images: list[Image.Image]) -> RLPrompt:
        """The generation prompt of a user turn given as text (used as is: no `instruction` appended)
        and its RGB images (placed before the text); `sample` is left empty."""
        pixel_values, grid = self.encode_images(images)
        text = build_prompt(question, len(images), self.system_prompt)
        ids = torch.tensor(self.tokenize(expand_image_pads(text, grid.tolist(), self.vision.merge_size)))
        return RLPrompt(ids, self.position_ids(ids, grid), pixel_values, grid, text, images)


def processor_from_config(cfg, tokenizer) -> Processor:
    """A Processor from a recipe's `data:` section (`nemo_vtp.config.data.DataConfig`)."""
    return Processor(tokenizer, VisionSpec(min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels),
                     system_prompt=cfg.system_prompt, instruction=cfg.instruction,
                     max_image_pixels=cfg.max_image_pixels)
