"""What `eval.model_path` names, turned into an HF folder an engine loads: an HF folder is used as it is;
a Megatron checkpoint (a step folder, or a save_dir with a tracker file) is converted once with
`nemo-vtp convert megatron-to-hf` into `<cache_root>/<step>-<hash of its path>/` and reused while the
checkpoint is unchanged.

The conversion runs in a child process (Megatron's parallel state and the conversion's memory stay
out of the evaluating process, which may run under torchrun as one of W data-parallel ranks). Rank 0
converts; the other ranks wait for its `source.json`, written last. A folder with no tokenizer files
(the trainer's checkpoints carry only `hf/config.json`) gets the tokenizer of `tokenizer_fallback`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nemo_vtp.models.hub import resolve_model_dir
from nemo_vtp.training.checkpoint_files import tracked_step

logger = logging.getLogger("nemo_vtp.eval")

SOURCE_FILE = "source.json"  # in a converted folder: which checkpoint it came from (written last)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")  # either marks a folder that has a tokenizer
# Variables of an outer torchrun/srun that would make the conversion child join that world (with
# TORCHELASTIC_USE_AGENT_STORE set, it would wait forever for a rendezvous store that is not there).
_LAUNCHER_VARS = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                  "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
                  "SLURM_LOCALID"}
_LAUNCHER_PREFIXES = ("TORCHELASTIC_",)


@dataclass(frozen=True)
class ModelSource:
    """The HF folder to load, and what it came from."""

    hf_dir: Path  # config.json + safetensors + tokenizer files
    origin: Path  # the HF folder itself, or the Megatron step folder it was converted from
    kind: str  # "hf" or "megatron"


def is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def megatron_step(path: Path) -> Path | None:
    """The step folder of a Megatron checkpoint (itself, or what the save_dir's tracker names: its
    `latest_checkpointed_iteration.txt`, or the `latest` file of a run saved before), None when `path` is
    not one. Not `nemo_vtp.training.checkpoint.find_checkpoint`: that module imports Megatron, which the
    evaluating process does not otherwise need.
    """
    path = tracked_step(path) or path
    return path if (path / "metadata.json").is_file() else None


def resolve_model(model_path: str | Path | None, cache_root: Path, tokenizer_fallback: Path, *, rank: int = 0,
                  world_size: int = 1, wait_s: float = 3600.0) -> ModelSource:
    """The HF folder for `model_path` (see the module docstring); converts a Megatron checkpoint once.

    tokenizer_fallback: folder whose tokenizer files a converted checkpoint gets when it carries none.
    wait_s: how long ranks other than 0 wait for rank 0's conversion, seconds.
    """
    if not model_path:
        raise ValueError("eval.model_path is not set: name an HF folder or a Megatron checkpoint (a step folder "
                         "or a save_dir with latest_checkpointed_iteration.txt), or score saved responses with "
                         "eval.responses_file")
    path = resolve_model_dir(model_path, "eval.model_path")
    if is_hf_folder(path):
        return ModelSource(path, path, "hf")
    step = megatron_step(path)
    if step is None:
        raise ValueError(f"eval.model_path={path} is neither an HF folder (config.json + *.safetensors) nor a Megatron "
                         "checkpoint (a step folder with metadata.json, or a save_dir with "
                         "latest_checkpointed_iteration.txt)")
    target = cache_root / f"{step.name}-{_path_hash(step)}"
    wanted = _source_record(step)
    if _read_source(target) != wanted:
        if rank == 0:
            convert_checkpoint(step, target, tokenizer_fallback, wanted, wait_s)
        else:
            _wait_for(target, wanted, wait_s, world_size)
    return ModelSource(target, step, "megatron")


def _path_hash(path: Path) -> str:
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]


def _source_record(step: Path) -> dict:
    """Identifies a checkpoint's content: its absolute path and its metadata.json's modification time."""
    return {"checkpoint": str(step.resolve()), "metadata_mtime_ns": (step / "metadata.json").stat().st_mtime_ns}


def _read_source(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return {k: record.get(k) for k in ("checkpoint", "metadata_mtime_ns")}


def convert_checkpoint(step: Path, target: Path, tokenizer_fallback: Path, record: dict, timeout_s: float) -> None:
    """`nemo-vtp convert megatron-to-hf` in a child process into a temporary folder, tokenizer files
    added when the checkpoint has none, `source.json` written, then renamed into place."""
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)  # a stale conversion of an overwritten checkpoint
    tmp.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS and not k.startswith(_LAUNCHER_PREFIXES)}
    command = [sys.executable, "-m", "nemo_vtp.cli", "convert", "megatron-to-hf", "--ckpt", str(step),
               "--out", str(tmp)]
    logger.info("converting %s to an HF folder for the engine: %s", step, target)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"converting {step} took over {timeout_s:.0f} s (eval.convert_wait_s): stopped") from None
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"converting the Megatron checkpoint {step} failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    tokenizer_from = step / "hf"
    if not has_tokenizer(tmp):
        from nemo_vtp.models.qwen25_vl.hf_io import copy_side_files

        copy_side_files(tokenizer_fallback, tmp)
        tokenizer_from = tokenizer_fallback
    (tmp / SOURCE_FILE).write_text(json.dumps({**record, "tokenizer_from": str(tokenizer_from),
                                               "convert_s": round(time.perf_counter() - start, 2)}, indent=1))
    os.replace(tmp, target)
    logger.info("converted in %.1f s (tokenizer from %s)", time.perf_counter() - start, tokenizer_from)


def _wait_for(target: Path, wanted: dict, wait_s: float, world_size: int) -> None:
    deadline = time.monotonic() + wait_s
    while _read_source(target) != wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {wait_s:.0f} s for rank 0 (of {world_size}) to convert {wanted['checkpoint']} "
                               f"into {target}; see rank 0's log, or raise eval.convert_wait_s")
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
