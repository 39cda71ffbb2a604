"""Data: which samples to train on (files or the synthetic world), how rows are checked, and how
images and text become model inputs."""

from typing import Literal, get_args

from pydantic import Field, field_validator

from nemo_vtp.config.base import Section
from nemo_vtp.data.instruction import FORMAT_INSTRUCTION

# The synthetic world's scene families (nemo_vtp.data.synth.scenes.FAMILIES, in the same order).
Family = Literal["shapes", "bars", "digits", "clock", "ruler"]


class SynthConfig(Section):
    num: int = Field(2000, ge=1)  # samples generated over all splits
    seed: int = 0  # world seed: the same seed gives the same bytes
    levels: list[int] = Field(default_factory=lambda: [1, 2, 3])  # difficulty levels to include (1 easy .. 3 hard)
    families: list[Family] = Field(default_factory=lambda: list(get_args(Family)), min_length=1)  # scene families to include
    image_size: int = Field(112, ge=56)  # side of the square images, pixels (a multiple of 28 avoids resizing)
    val_fraction: float = Field(0.1, ge=0, lt=1)  # share of samples in val.jsonl
    test_fraction: float = Field(0.1, ge=0, lt=1)  # share of samples in test.jsonl

    @field_validator("levels")
    @classmethod
    def _levels_known(cls, levels: list[int]) -> list[int]:
        if not levels or any(level not in (1, 2, 3) for level in levels):
            raise ValueError(f"levels must be a non-empty subset of [1, 2, 3], got {levels}")
        return levels


class DataConfig(Section):
    train_path: str | None = None  # sample JSONL for training; None: the synthetic world under <output_dir>/data
    val_path: str | None = None  # sample JSONL for validation; None: the synthetic world's val split
    synth: SynthConfig = Field(default_factory=SynthConfig)  # the synthetic world used when paths are None
    strict: bool = False  # stop at the first unusable row instead of skipping and counting it
    max_image_pixels: int = Field(50_000_000, ge=1)  # raw image area (pixels) above which a row is skipped
    allow_outside_root: bool = False  # accept image paths that leave the JSONL's folder (absolute or '..'); False: skip them
    min_pixels: int = Field(56 * 56, ge=784)  # smallest resized image area, pixels (HF min_pixels)
    max_pixels: int = Field(28 * 28 * 1280, ge=784)  # largest resized image area, pixels (HF max_pixels)
    system_prompt: str = "You are a helpful assistant."  # system message of the chat template
    instruction: str = FORMAT_INSTRUCTION  # appended on a new line to every question, in training and eval ("": none)
    max_seq_length: int = Field(4096, ge=16)  # longest conversation (or packed row), tokens; longer rows are skipped
    pack_sequences: bool = True  # SFT: pack conversations into rows of max_seq_length tokens
    pad_to_multiple_of: int = Field(1, ge=1)  # pad each batch/packed row to a multiple of this many tokens
