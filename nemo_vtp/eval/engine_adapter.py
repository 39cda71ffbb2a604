"""Responses from a generation engine: the model named by `eval.model_path` (an HF folder or a Megatron
checkpoint, see `model_source`), prompts built by the data processor from the eval prompt text and the
item's images, `Engine.generate` with the recipe's `generation.sampling` (greedy in the eval recipes).

The engine is built on the first batch that needs it, so rerunning a finished evaluation loads no model.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from nemo_vtp.eval.items import EvalItem, open_image
from nemo_vtp.eval.model_source import TOKENIZER_FILES, ModelSource, has_tokenizer, resolve_model
from nemo_vtp.eval.runner import GenerateFn

logger = logging.getLogger("nemo_vtp.eval")


class EngineUnavailable(RuntimeError):
    """The generation engine this evaluation needs cannot run here (e.g. vLLM without a GPU)."""


def tokenizer_fallback(cfg) -> Path:
    """The tokenizer a model folder without one gets: `model.tokenizer`, else the tiny synthetic-world one."""
    from nemo_vtp.data.tokenizer import default_tokenizer_dir
    from nemo_vtp.models.hub import resolve_model_dir

    return resolve_model_dir(cfg.model.tokenizer, "model.tokenizer") if cfg.model.tokenizer else default_tokenizer_dir()


def resolve_eval_model(cfg, cache_root: Path, rank: int = 0, world_size: int = 1) -> ModelSource:
    """`eval.model_path` as an HF folder with a tokenizer (a Megatron checkpoint converted once, cached)."""
    source = resolve_model(cfg.eval.model_path, cache_root, tokenizer_fallback(cfg), rank=rank,
                           world_size=world_size, wait_s=cfg.eval.convert_wait_s)
    if not has_tokenizer(source.hf_dir):
        raise FileNotFoundError(f"{source.hf_dir} has no tokenizer files ({' or '.join(TOKENIZER_FILES)}): copy the "
                                "model's tokenizer files into it, or evaluate the Megatron checkpoint itself")
    return source


def check_tokenizer_matches(hf_dir: Path, tokenizer) -> None:
    """The tokenizer must be the model's: its special-token ids equal config.json's, its size fits the vocabulary."""
    from nemo_vtp.data.tokenizer import special_token_ids

    config = json.loads((hf_dir / "config.json").read_text())
    ids = special_token_ids(tokenizer)
    keys = ("image_token_id", "vision_start_token_id", "vision_end_token_id")
    wrong = [f"{key} {ids[key]} (config: {config[key]})" for key in keys if key in config and config[key] != ids[key]]
    vocab = config.get("vocab_size") or config.get("text_config", {}).get("vocab_size")
    if vocab is not None and ids["vocab_size"] > vocab:
        wrong.append(f"{ids['vocab_size']} tokens (config vocab_size: {vocab})")
    if wrong:
        raise ValueError(f"the tokenizer does not belong to the model in {hf_dir}: {'; '.join(wrong)}. "
                         "Set model.tokenizer to the folder of the tokenizer the model was trained with")


def engine_device(run_device: str) -> str:
    """`run.device` -> the device string an engine takes (this rank's GPU under torchrun)."""
    import torch

    use_cuda = run_device == "cuda" or (run_device == "auto" and torch.cuda.is_available())
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if use_cuda else "cpu"


def build_eval_engine(cfg, hf_dir: Path):
    """The recipe's engine (`generation.engine`) loaded from `hf_dir`."""
    from nemo_vtp.generation.engine import build_engine

    device = engine_device(cfg.run.device)
    if cfg.generation.engine == "vllm" and not device.startswith("cuda"):
        raise EngineUnavailable("generation.engine=vllm needs a CUDA GPU; use generation.engine=torch on a CPU")
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)
    return build_engine(cfg.generation, str(hf_dir), device=device, seed=cfg.run.seed)


def item_prompt(processor, item: EvalItem, text: str):
    """An engine `Prompt` for an item: the data processor's chat template around `text`, the item's images
    opened (and checked) like training images, placed before the text."""
    from nemo_vtp.generation.engine import prompt_from_rl

    images = []
    for ref in item.images:
        try:
            images.append(open_image(ref, processor.max_image_pixels))
        except ValueError as err:  # ImageError: an unreadable benchmark image would silently change its score
            raise ValueError(f"{item.benchmark} item {item.id}: {err}") from None
    return prompt_from_rl(processor.generation_prompt(text, images))


def engine_generate(cfg, prompt_of: Callable[[EvalItem], str], cache_root: Path, rank: int = 0,
                    world_size: int = 1) -> GenerateFn:
    """A GenerateFn: prompts from `prompt_of(item)` through the data processor, one greedy (or as the
    recipe samples) response per item from the engine; the model is resolved and loaded on first use."""
    sampling = cfg.generation.sampling
    if sampling.n != 1:
        raise ValueError(f"generation.sampling.n={sampling.n}: evaluation scores one response per item (set it to 1)")
    state: dict = {}

    def setup() -> None:
        from nemo_vtp.data.processor import processor_from_config
        from nemo_vtp.data.tokenizer import load_tokenizer

        source = resolve_eval_model(cfg, cache_root, rank, world_size)
        tokenizer = load_tokenizer(source.hf_dir)
        check_tokenizer_matches(source.hf_dir, tokenizer)
        state["processor"] = processor_from_config(cfg.data, tokenizer)
        state["engine"] = build_eval_engine(cfg, source.hf_dir)
        logger.info("eval engine %s loaded from %s (%s)", cfg.generation.engine, source.hf_dir, source.origin)

    def generate(items: list[EvalItem]) -> list[str]:
        if not state:
            setup()
        prompts = [item_prompt(state["processor"], item, prompt_of(item)) for item in items]
        return [rollouts[0].text for rollouts in state["engine"].generate(prompts, sampling)]

    return generate
