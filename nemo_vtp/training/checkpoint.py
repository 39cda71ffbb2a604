"""Training checkpoints: Megatron `dist_checkpointing` for model and optimizer, the trainer state
beside it, written atomically, resumed automatically.

Layout of `<save_dir>`:

    latest                      text file naming the newest complete step folder (written last)
    step_0000040/               one checkpoint, renamed into place only once complete
        metadata.json, *.distcp   {"model": ..., "optimizer": ...} sharded state (loads at any TP/PP)
        trainer_state.json        step, consumed samples, scheduler, stage extras (e.g. dynamic sampling)
        rng/rank_00000.pt         python/numpy/torch RNG states of each rank (restored when the layout matches)
        hf/config.json            the model architecture (so conversion and eval need no recipe)

A run killed at any moment leaves either the previous `latest` or the new one, never a torn
checkpoint: the folder is written as `.tmp-step_*`, renamed, then `latest` is replaced.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from nemo_vtp.models.qwen25_vl.checkpoint import HF_SUBDIR, model_state_keys, read_arch, write_hf_side

# Architecture fields whose mismatch makes a checkpoint unloadable (token ids may legitimately differ).
_SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "tie_word_embeddings", "vision")

LATEST = "latest"
STATE_FILE = "trainer_state.json"


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def unwrap(chunk: torch.nn.Module) -> torch.nn.Module:
    """The model inside Megatron's DDP (or any `.module` wrapper)."""
    while hasattr(chunk, "module"):
        chunk = chunk.module
    return chunk


# The distributed optimizer's default layout ("fully_sharded_model_space", flattened ranges) is refused by
# megatron-core 0.19's dist_checkpointing ("ShardedTensor.flattened_range is not supported").
# "fully_reshardable" stores each parameter's optimizer state in the parameter's shape (gathered over DP
# while saving), so a checkpoint also loads at another TP/PP/DP layout. Other optimizers ignore this.
OPTIMIZER_CKPT_METADATA = {"distrib_optim_sharding_type": "fully_reshardable", "chained_optim_avoid_prefix": True}


def _sharded_state(model_chunks, optimizer, is_loading: bool) -> dict:
    keys = model_state_keys(model_chunks)
    state = {key: unwrap(chunk).sharded_state_dict() for key, chunk in zip(keys, model_chunks)}
    if optimizer is not None and not is_loading:
        _ensure_optimizer_state(optimizer)
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(state, is_loading=is_loading,
                                                          metadata=OPTIMIZER_CKPT_METADATA)
    return state


def _ensure_optimizer_state(optimizer) -> None:
    """Give every parameter its Adam state (zeros, step 0) before saving: a checkpoint written before
    the first update (an RL step whose groups all had zero variance) must hold the keys a load
    expects. Zeros and step 0 are exactly what Adam starts from, so nothing changes numerically."""
    for inner in getattr(optimizer, "chained_optimizers", [optimizer]):
        if inner.optimizer is None or inner.init_state_fn is None:
            continue
        inner.init_state_fn(inner.optimizer, inner.config)
        if _steps_per_param(inner):
            for state in inner.optimizer.state.values():
                state.setdefault("step", torch.tensor(0.0))


def _steps_per_param(optimizer) -> bool:
    """torch's Adam keeps `step` in each parameter's state; the fused Adams (TE's, apex's) keep it in the
    param group and refuse a per-parameter `step` (TE's FusedAdam.state_dict raises KeyError 'step')."""
    inners = [o.optimizer for o in getattr(optimizer, "chained_optimizers", [optimizer])]
    return any(isinstance(inner, torch.optim.Adam | torch.optim.AdamW) for inner in inners)


def _default_adam_steps(state_dict) -> None:
    """Megatron stores the Adam step once (`common_step`) and omits it when it is 0; torch's Adam
    refuses a state without `step`. Give such states step 0, what they were saved with."""
    if isinstance(state_dict, dict):
        per_param = state_dict.get("state")
        if isinstance(per_param, dict) and "common_step" not in per_param:
            for value in per_param.values():
                if isinstance(value, dict) and "exp_avg" in value:
                    value.setdefault("step", torch.tensor(0.0))
        for value in state_dict.values():
            _default_adam_steps(value)


def _rng_state() -> dict:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            "tracker": get_cuda_rng_tracker().get_states()}


def _set_rng_state(state: dict) -> None:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    get_cuda_rng_tracker().set_states(state["tracker"])


def find_checkpoint(path: str | Path) -> Path:
    """A step folder, or the folder `latest` points to when given a save_dir. Clear error otherwise."""
    path = Path(path)
    if (path / LATEST).is_file():
        path = path / (path / LATEST).read_text().strip()
    if not (path / "metadata.json").is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: expected a step folder with metadata.json "
                                f"or a save_dir with a `{LATEST}` file")
    return path


def check_architecture(path: Path, arch) -> None:
    """Fail before loading when the checkpoint was written for another model (its hf/config.json)."""
    if not (path / HF_SUBDIR / "config.json").is_file():
        return
    saved = read_arch(path)
    diffs = [f"{name}: checkpoint {getattr(saved, name)} vs recipe {getattr(arch, name)}"
             for name in _SHAPE_FIELDS if getattr(saved, name) != getattr(arch, name)]
    if diffs:
        raise ValueError(f"{path} holds a different model than the recipe builds: " + "; ".join(diffs))


class Checkpointer:
    """Saves and restores one stage's checkpoints under `save_dir` (collective calls: every rank)."""

    def __init__(self, save_dir: str | Path, keep_last: int = 2):
        self.save_dir = Path(save_dir)
        self.keep_last = keep_last

    def latest(self) -> Path | None:
        try:
            return find_checkpoint(self.save_dir)
        except FileNotFoundError:
            return None

    def save(self, step: int, model_chunks, optimizer, trainer_state: dict[str, Any], arch=None) -> Path:
        from megatron.core import dist_checkpointing

        name = f"step_{step:07d}"
        final, tmp = self.save_dir / name, self.save_dir / f".tmp-{name}"
        if _rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        dist_checkpointing.save(_sharded_state(model_chunks, optimizer, is_loading=False), str(tmp))
        (tmp / "rng").mkdir(exist_ok=True)
        torch.save(_rng_state(), tmp / "rng" / f"rank_{_rank():05d}.pt")
        _barrier()
        if _rank() == 0:
            (tmp / STATE_FILE).write_text(json.dumps({**trainer_state, "step": step}, indent=1))
            if arch is not None:
                write_hf_side(tmp, arch, torch.float32, files_from=None)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            pointer = self.save_dir / f".{LATEST}.tmp"
            pointer.write_text(name)
            os.replace(pointer, self.save_dir / LATEST)
            self._prune(keep=name)
        _barrier()
        return final

    def _prune(self, keep: str) -> None:
        steps = sorted(p for p in self.save_dir.glob("step_*") if p.is_dir())
        for old in steps[:-self.keep_last]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, path: str | Path, model_chunks, optimizer=None, world_layout: dict | None = None,
             arch=None) -> dict:
        """Restore model (and optimizer) from `path`; returns the trainer state (empty for a weights-only
        checkpoint such as one written by `convert hf-to-megatron`). RNG states are restored only when
        `world_layout` equals the one saved (same world size, TP and PP)."""
        from megatron.core import dist_checkpointing

        path = find_checkpoint(path)
        if arch is not None:
            check_architecture(path, arch)
        state_file = path / STATE_FILE
        trainer_state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        if optimizer is not None and not trainer_state:
            raise ValueError(f"{path} holds no trainer state (a weights-only checkpoint): it can initialise a model "
                             "through checkpoint.load but cannot be resumed")
        loaded = dist_checkpointing.load(_sharded_state(model_chunks, optimizer, is_loading=True), str(path))
        for key, chunk in zip(model_state_keys(model_chunks), model_chunks):
            unwrap(chunk).load_state_dict(loaded[key], strict=True)
        if optimizer is not None:
            if _steps_per_param(optimizer):
                _default_adam_steps(loaded["optimizer"])
            optimizer.load_state_dict(loaded["optimizer"])
        rng_file = path / "rng" / f"rank_{_rank():05d}.pt"
        if world_layout is not None and trainer_state.get("world_layout") == world_layout and rng_file.is_file():
            _set_rng_state(torch.load(rng_file, weights_only=False))
        return trainer_state
