"""Training checkpoints: Megatron `dist_checkpointing` for model and optimizer, the trainer state
beside it, written atomically, resumed automatically.

Layout of `<save_dir>`:

    latest_checkpointed_iteration.txt   the newest complete iteration, e.g. `40` (written last; the name
                                        and format of Megatron-LM's tracker)
    iter_0000040/               one checkpoint (Megatron-LM's folder name), renamed into place only once complete
        metadata.json, *.distcp   {"model": ..., "optimizer": ...} sharded state (loads at any TP/PP)
        trainer_state.json        step, consumed samples, scheduler, stage extras (e.g. dynamic sampling)
        rng/rank_00000.pt         python/numpy/torch RNG states of each rank as tensors and numbers
                                  (loaded with weights_only=True; restored when the layout matches)
        hf/config.json            the model architecture (so conversion and eval need no recipe)

A run killed at any moment leaves complete step folders and at most one `.tmp-iter_*`: the folder is
written as `.tmp-iter_*`, every file and folder in it fsynced, renamed, the save_dir fsynced, then the
tracker is replaced the same way. Resume does not trust the tracker: it scans the step folders and takes
the newest usable one (`checkpoint_files.unusable_reason`), falls back past one that fails to load
(saying so in the log), and stops with an error naming them when step folders exist but none is usable.
Runs saved before the Megatron-LM names (`step_<N>/` folders, a `latest` file) resume the same way;
their next save writes `iter_` folders and the tracker, and removes the `latest` file.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from nemo_vtp.models.qwen25_vl.checkpoint import HF_SUBDIR, model_state_keys, read_arch, write_hf_side
from nemo_vtp.training import checkpoint_files as ckfiles

logger = logging.getLogger("nemo_vtp.checkpoint")

# Architecture fields whose mismatch makes a checkpoint unloadable (token ids may legitimately differ).
_SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "tie_word_embeddings", "vision")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _unusable_anywhere(flags: list[bool]) -> list[bool]:
    """Per entry: true when any rank's flag is true (every rank then takes the same step)."""
    if not dist.is_initialized() or not flags:
        return flags
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    votes = torch.tensor(flags, dtype=torch.int32, device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return [bool(v) for v in votes.tolist()]


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

    return ckfiles.rng_to_tensors(random.getstate(), np.random.get_state(), torch.get_rng_state(),
                                  torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
                                  get_cuda_rng_tracker().get_states())


def _set_rng_state(state: dict) -> None:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    get_cuda_rng_tracker().set_states(state["tracker"])


def find_checkpoint(path: str | Path) -> Path:
    """A step folder, or the newest step folder of a save_dir with intact weights. Clear error otherwise."""
    path = Path(path)
    if (path / ckfiles.META_FILE).is_file():
        return path
    usable = usable_steps(path, _rank(), resume=False)
    if not usable:
        raise FileNotFoundError(f"no checkpoint at {path}: expected a step folder with {ckfiles.META_FILE} "
                                "or a save_dir with iter_* folders")
    return usable[0]


def usable_steps(save_dir: Path, rank: int = 0, resume: bool = True) -> list[Path]:
    """`checkpoint_files.usable_steps`, agreed by every rank (all take the same step folder)."""
    return ckfiles.usable_steps(save_dir, rank, vote=_unusable_anywhere, resume=resume)


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
        """The newest usable step folder, None when there is none (see `usable_steps` for the errors)."""
        usable = usable_steps(self.save_dir, _rank())
        return usable[0] if usable else None

    def resume_candidates(self, resume: bool, overwrite: bool) -> list[Path]:
        """The step folders to resume from, newest first; [] for a fresh start. A fresh start (resume off)
        over existing step folders is refused unless `overwrite`, which then deletes them."""
        if resume:
            return usable_steps(self.save_dir, _rank())
        existing = ckfiles.step_folders(self.save_dir)
        if existing and not overwrite:
            raise ckfiles.CheckpointError(
                f"{self.save_dir} already holds {', '.join(p.name for p in existing)} and checkpoint.resume=false: "
                "a fresh run would overwrite them. Set checkpoint.resume=true to continue that run, "
                "checkpoint.overwrite=true to replace it, or another checkpoint.save_dir")
        if existing:
            logger.warning("checkpoint.overwrite=true: deleting %s", ", ".join(str(p) for p in existing))
            _barrier()  # every rank has seen them before rank 0 deletes them
            if _rank() == 0:
                for old in existing:
                    shutil.rmtree(old)
            _barrier()
        return []

    def resume(self, candidates: list[Path], model_chunks, optimizer, world_layout: dict | None = None,
               arch=None) -> tuple[Path, dict]:
        """Load the newest of `candidates` that loads on every rank; fall back past one that fails, naming
        it and why in the log. Returns (the step folder, its trainer state)."""
        failures = []
        for step in candidates:
            try:
                trainer_state, error = self.load(step, model_chunks, optimizer, world_layout, arch), None
            except ckfiles.CheckpointError as err:
                trainer_state, error = None, str(err)
            if not _unusable_anywhere([error is not None])[0]:
                if failures:
                    logger.warning("resuming from %s, the newest step folder that loads", step)
                return step, trainer_state
            failures.append(f"{step}: {error or 'failed on another rank'}")
            logger.warning("cannot resume from %s (%s); falling back to the previous step folder", step,
                           error or "failed on another rank")
        raise ckfiles.CheckpointError(f"no step folder under {self.save_dir} loads: " + "; ".join(failures))

    def save(self, step: int, model_chunks, optimizer, trainer_state: dict[str, Any], arch=None) -> Path:
        from megatron.core import dist_checkpointing

        name = ckfiles.step_name(step)
        final, tmp = self.save_dir / name, self.save_dir / f".tmp-{name}"
        if _rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        dist_checkpointing.save(_sharded_state(model_chunks, optimizer, is_loading=False), str(tmp))
        own_rng = ckfiles.rng_file(tmp, _rank())
        own_rng.parent.mkdir(exist_ok=True)
        torch.save(_rng_state(), own_rng)
        ckfiles.fsync_path(own_rng)
        _barrier()
        if _rank() == 0:
            ckfiles.write_durably(tmp / ckfiles.STATE_FILE, json.dumps({**trainer_state, "step": step}, indent=1))
            if arch is not None:
                write_hf_side(tmp, arch, torch.float32, files_from=None)
            ckfiles.fsync_tree(tmp)
            self._publish(tmp, final, step)
            self._prune(keep=name)
        _barrier()
        return final

    def _publish(self, tmp: Path, final: Path, step: int) -> None:
        """Rename the flushed `tmp` into place (over any folder of the same step, an older run's `step_` one
        too), then point the tracker at it; each rename flushed to disk."""
        for same in ckfiles.step_folders(self.save_dir):
            if ckfiles.step_number(same) == step:
                shutil.rmtree(same, ignore_errors=True)
        ckfiles.replace_durably(tmp, final)
        ckfiles.write_tracker(self.save_dir, step)

    def _prune(self, keep: str) -> None:
        """Keep the newest `keep_last` step folders (and `keep`); drop leftovers of interrupted saves."""
        for old in ckfiles.step_folders(self.save_dir)[self.keep_last:]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)
        for leftover in self.save_dir.glob(".tmp-*"):
            if ckfiles.is_step_name(leftover.name.removeprefix(".tmp-")) and leftover.name != f".tmp-{keep}":
                shutil.rmtree(leftover, ignore_errors=True)

    def load(self, path: str | Path, model_chunks, optimizer=None, world_layout: dict | None = None,
             arch=None) -> dict:
        """Restore model (and optimizer) from `path`; returns the trainer state (empty for a weights-only
        checkpoint such as one written by `convert hf-to-megatron`). RNG states are restored only when
        `world_layout` equals the one saved (same world size, TP and PP)."""
        from megatron.core import dist_checkpointing

        path = find_checkpoint(path)
        if arch is not None:
            check_architecture(path, arch)
        trainer_state = ckfiles.read_trainer_state(path) if (path / ckfiles.STATE_FILE).exists() else {}
        if optimizer is not None and not trainer_state:
            raise ValueError(f"{path} holds no trainer state (a weights-only checkpoint): it can initialise a model "
                             "through checkpoint.load but cannot be resumed")
        ckfiles.check_shards(path)  # also vets the shard index before torch unpickles it
        try:
            loaded = dist_checkpointing.load(_sharded_state(model_chunks, optimizer, is_loading=True), str(path))
        except Exception as err:  # noqa: BLE001 - torch and Megatron raise many types for unreadable shards
            raise ckfiles.CheckpointError(f"{path}: loading the sharded model/optimizer state failed "
                                          f"({ckfiles.describe(err)})") from err
        for key, chunk in zip(model_state_keys(model_chunks), model_chunks):
            unwrap(chunk).load_state_dict(loaded[key], strict=True)
        if optimizer is not None:
            if _steps_per_param(optimizer):
                _default_adam_steps(loaded["optimizer"])
            optimizer.load_state_dict(loaded["optimizer"])
        own_rng = ckfiles.rng_file(path, _rank())
        if world_layout is not None and trainer_state.get("world_layout") == world_layout and own_rng.is_file():
            _restore_rng(own_rng)
        return trainer_state


def _restore_rng(path: Path) -> None:
    try:
        _set_rng_state(ckfiles.load_rng_file(path))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ckfiles.CheckpointError(f"{path} holds RNG states this process cannot take "
                                      f"({ckfiles.describe(err)})") from err
