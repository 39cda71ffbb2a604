"""Training data of a run: the sample files a recipe names, or the synthetic world generated once
under `<output_dir>/data` when it names none; read with skip-and-count, filtered by length."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist
from PIL import Image

from nemo_vtp.config.loader import ConfigError
from nemo_vtp.config.schema import RecipeConfig
from nemo_vtp.data.io import read_samples, resolve_images
from nemo_vtp.data.processor import expand_image_pads, smart_resize
from nemo_vtp.data.schema import Sample, format_response

logger = logging.getLogger(__name__)


@dataclass
class SampleSet:
    samples: list[Sample]
    base_dir: Path  # image paths are relative to this folder
    path: Path
    skipped: dict[str, int]  # reason -> rows skipped (unreadable rows, too long...)


def synth_dir(cfg: RecipeConfig) -> Path:
    return Path(cfg.run.output_dir) / "data"


def ensure_synthetic_world(cfg: RecipeConfig) -> Path:
    """Generate the synthetic world once (rank 0) when the recipe names no data files. A world already
    there (a resumed run) must be the one `data.synth` describes: another one is an error, never reused."""
    from nemo_vtp.data.synth import WorldSpec, generate, world_differences

    out = synth_dir(cfg)
    s = cfg.data.synth
    spec = WorldSpec(num=s.num, seed=s.seed, levels=tuple(s.levels), families=tuple(s.families),
                     image_size=s.image_size, val_fraction=s.val_fraction, test_fraction=s.test_fraction)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0 and not (out / "world.json").is_file():
        logger.info("generating the synthetic perception world (%d samples) in %s", s.num, out)
        generate(spec, out)
    if dist.is_initialized():
        dist.barrier()
    # Every rank checks (after the barrier the file is complete), so all of them stop together.
    differences = world_differences(spec, out / "world.json")
    if differences:
        raise ValueError("the synthetic world in {} is not the one data.synth describes ({}); use another "
                         "run.output_dir or delete that folder".format(out, "; ".join(differences)))
    return out


def data_paths(cfg: RecipeConfig) -> tuple[Path, Path | None]:
    """(train, val) JSONL paths of the recipe, generating the synthetic world if needed."""
    if cfg.data.train_path:
        return Path(cfg.data.train_path), Path(cfg.data.val_path) if cfg.data.val_path else None
    world = ensure_synthetic_world(cfg)
    return world / "train.jsonl", Path(cfg.data.val_path) if cfg.data.val_path else world / "val.jsonl"


def load_sample_set(cfg: RecipeConfig, path: Path) -> SampleSet:
    samples, summary = read_samples(path, strict=cfg.data.strict, max_image_pixels=cfg.data.max_image_pixels,
                                    allow_outside_root=cfg.data.allow_outside_root)
    if not samples:
        raise ValueError(f"{path}: no usable samples ({summary})")
    return SampleSet(samples, path.parent, path, dict(summary.skipped))


def prompt_token_length(processor, sample: Sample, base_dir: Path) -> int:
    """Tokens of a sample's generation prompt (images expanded), computed from image headers (no pixel decoding)."""
    grids = []
    spec = processor.vision
    for image_path in resolve_images(sample, base_dir):
        with Image.open(image_path) as im:
            width, height = im.size
        h, w = smart_resize(height, width, factor=spec.patch_size * spec.merge_size,
                            min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
        grids.append((1, h // spec.patch_size, w // spec.patch_size))
    return len(processor.tokenize(expand_image_pads(processor.prompt_text(sample), grids, spec.merge_size)))


def sft_token_length(processor, sample: Sample, base_dir: Path) -> int:
    """Tokens of a sample's SFT conversation: its prompt, the response and `<|im_end|>\\n`."""
    response = format_response(sample.response) + processor.eos_token + "\n"
    return prompt_token_length(processor, sample, base_dir) + len(processor.tokenize(response))


def _filter(sample_set: SampleSet, stage: str, reason_of: Callable[[Sample], str | None]) -> SampleSet:
    """Keep the samples `reason_of` finds no reason to drop; count the others by reason."""
    kept, skipped = [], dict(sample_set.skipped)
    for sample in sample_set.samples:
        reason = reason_of(sample)
        if reason is None:
            kept.append(sample)
        else:
            skipped[reason] = skipped.get(reason, 0) + 1
    if len(kept) < len(sample_set.samples):
        logger.warning("%s: %d of %d samples skipped for %s: %s", sample_set.path,
                       len(sample_set.samples) - len(kept), len(sample_set.samples), stage, skipped)
    if not kept:
        raise ValueError(f"{sample_set.path}: no sample is usable for {stage} ({skipped})")
    return SampleSet(kept, sample_set.base_dir, sample_set.path, skipped)


def filter_for_sft(sample_set: SampleSet, processor, max_seq_length: int) -> SampleSet:
    """Drop (and count) samples without a response or longer than `max_seq_length` tokens."""
    def reason_of(sample: Sample) -> str | None:
        if sample.response is None:
            return "no response"
        if sft_token_length(processor, sample, sample_set.base_dir) > max_seq_length:
            return f"longer than max_seq_length={max_seq_length}"
        return None

    return _filter(sample_set, "SFT", reason_of)


def filter_for_rl(sample_set: SampleSet, processor, max_prompt_tokens: int) -> SampleSet:
    """Drop (and count) RL samples whose generation prompt is longer than `max_prompt_tokens` tokens."""
    def reason_of(sample: Sample) -> str | None:
        if prompt_token_length(processor, sample, sample_set.base_dir) > max_prompt_tokens:
            return f"prompt longer than max_prompt_tokens={max_prompt_tokens}"
        return None

    return _filter(sample_set, "RL", reason_of)


def max_prompt_tokens(cfg: RecipeConfig, max_position_embeddings: int) -> int:
    """`rl.max_prompt_tokens`, or when None the rollout engine's context (vLLM's max_model_len, the
    model's max_position_embeddings for the torch engine) less `generation.sampling.max_new_tokens`."""
    if cfg.rl.max_prompt_tokens is not None:
        return cfg.rl.max_prompt_tokens
    gen = cfg.generation
    context = gen.vllm.max_model_len if gen.engine == "vllm" else max_position_embeddings
    limit = context - gen.sampling.max_new_tokens
    if limit < 1:
        raise ConfigError(f"generation.sampling.max_new_tokens ({gen.sampling.max_new_tokens}) leaves no room for a "
                          f"prompt in the engine's context of {context} tokens")
    return limit


def load_rl_prompts(cfg: RecipeConfig, path: Path) -> SampleSet:
    """The RL prompt set: read with skip-and-count, then prompts over `max_prompt_tokens` skipped and counted."""
    from nemo_vtp.data.processor import processor_from_config
    from nemo_vtp.data.tokenizer import load_tokenizer
    from nemo_vtp.training.policy import build_arch

    tokenizer = load_tokenizer(cfg.model.tokenizer)
    limit = max_prompt_tokens(cfg, build_arch(cfg, tokenizer).max_position_embeddings)
    return filter_for_rl(load_sample_set(cfg, path), processor_from_config(cfg.data, tokenizer), limit)
