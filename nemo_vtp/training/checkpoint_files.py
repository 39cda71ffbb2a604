"""The files of training checkpoints, read without running code from them and written durably.

File-level rules shared by the trainer (`nemo_vtp.training.checkpoint`) and evaluation (which does not
import Megatron): which step folders of a save_dir can be resumed and why the others cannot, the RNG
file format (tensors and numbers, loaded with `weights_only=True`), and fsync helpers.

A step folder is usable when its `metadata.json` and `trainer_state.json` are readable JSON, the
torch.distributed.checkpoint index (`.metadata`, a pickle) holds only checkpoint-index classes, every
shard file it names is at least as long as the index says, `common.pt` loads as plain data, and this
rank's RNG file (when present) loads as plain tensors and numbers.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import torch

logger = logging.getLogger("nemo_vtp.checkpoint")

TRACKER = "latest_checkpointed_iteration.txt"  # Megatron-LM's tracker: the newest iteration as plain text
OLD_LATEST = "latest"  # runs saved before the iter_ names: a text file naming the newest step folder
STATE_FILE = "trainer_state.json"  # step, consumed samples, scheduler, stage extras
META_FILE = "metadata.json"  # Megatron dist_checkpointing's description of the sharded format
DCP_INDEX = ".metadata"  # torch.distributed.checkpoint's index of the shard files (a pickle)
COMMON_FILE = "common.pt"  # Megatron's non-sharded state (read by Megatron with weights_only=True)
RNG_DIR = "rng"
_STEP_NAME = re.compile(r"(?:iter|step)_(\d+)")  # iter_0000040 (Megatron-LM's name); step_<N> of older runs

# What the shard index may hold; checked here because torch unpickles it with no restriction.
_INDEX_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.planner")
_INDEX_NAMES = {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
                ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"), ("pathlib", "PosixPath"),
                ("pathlib", "PurePosixPath")}
_TORCH_ENUMS = (torch.dtype, torch.layout, torch.memory_format)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file or folder."""


def describe(err: BaseException) -> str:
    """`Type: first line of the message` (torch's unpickling errors run to many lines)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def rng_file(step: Path, rank: int) -> Path:
    return step / RNG_DIR / f"rank_{rank:05d}.pt"


def step_name(step: int) -> str:
    """The folder name of iteration `step`, as Megatron-LM names it: `iter_0000040`."""
    return f"iter_{step:07d}"


def is_step_name(name: str) -> bool:
    """`iter_<N>`, or `step_<N>` (what runs saved before the Megatron-LM names hold)."""
    return _STEP_NAME.fullmatch(name) is not None


def step_folders(save_dir: Path) -> list[Path]:
    """The `iter_<N>` and older `step_<N>` folders of a save_dir, newest (largest N) first; at equal N the
    `iter_` folder first (the one written after the rename)."""
    found = [p for p in (*save_dir.glob("iter_*"), *save_dir.glob("step_*")) if p.is_dir() and is_step_name(p.name)]
    return sorted(found, key=lambda p: (step_number(p), p.name.startswith("iter_")), reverse=True)


def tracked_step(save_dir: Path) -> Path | None:
    """The step folder a save_dir's pointer names: Megatron-LM's tracker (an iteration number), else the
    `latest` file of a run saved before; None when there is neither, or the tracker holds no number.
    Informational: resume scans the folders instead (`usable_steps`)."""
    if (save_dir / TRACKER).is_file():
        text = (save_dir / TRACKER).read_text().strip()
        return save_dir / step_name(int(text)) if text.isdigit() else None
    if (save_dir / OLD_LATEST).is_file():
        return save_dir / (save_dir / OLD_LATEST).read_text().strip()
    return None


# ---------------------------------------------------------------- reading without running code


def read_json(path: Path) -> dict:
    """A JSON object from `path`; CheckpointError naming the file when it is missing or not one."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} is not readable JSON ({describe(err)})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return value


def read_trainer_state(step: Path) -> dict:
    state = read_json(step / STATE_FILE)
    if not isinstance(state.get("step"), int):
        raise CheckpointError(f"{step / STATE_FILE} has no integer `step`")
    return state


class _IndexUnpickler(pickle.Unpickler):
    """Unpickles only the classes a torch.distributed.checkpoint index is made of."""

    def find_class(self, module: str, name: str):
        if module in (*_INDEX_MODULES, "torch") or (module, name) in _INDEX_NAMES:
            value = super().find_class(module, name)  # a look-up: nothing is called yet
            if _is_index_global(module, name, value):
                return value
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _is_index_global(module: str, name: str, value) -> bool:
    if (module, name) in _INDEX_NAMES:
        return True
    if module == "torch":
        return isinstance(value, _TORCH_ENUMS)  # torch.float32 and the like
    return isinstance(value, type) and value.__module__ == module  # a class defined by the index modules


def read_shard_index(step: Path):
    """The torch.distributed.checkpoint index of `step`, unpickled with an allowlist of its classes
    (torch itself unpickles it with no restriction when loading)."""
    path = step / DCP_INDEX
    try:
        with open(path, "rb") as f:
            return _IndexUnpickler(f).load()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is not a shard index ({describe(err)})") from None


def check_shards(step: Path) -> None:
    """Every shard file the index names exists and is as long as the index says (a torn write is shorter)."""
    storage = getattr(read_shard_index(step), "storage_data", None)
    if not isinstance(storage, dict):
        raise CheckpointError(f"{step / DCP_INDEX} holds no shard table")
    needed: dict[str, int] = {}
    for info in storage.values():
        name, offset, length = (getattr(info, key, None) for key in ("relative_path", "offset", "length"))
        if not (isinstance(name, str) and isinstance(offset, int) and isinstance(length, int)):
            raise CheckpointError(f"{step / DCP_INDEX} holds a malformed shard entry: {info!r}")
        needed[name] = max(needed.get(name, 0), offset + length)
    for name, size in sorted(needed.items()):
        shard = step / name
        actual = shard.stat().st_size if shard.is_file() else None
        if actual is None:
            raise CheckpointError(f"{shard} is missing (the index {step / DCP_INDEX} names it)")
        if actual < size:
            raise CheckpointError(f"{shard} is truncated: {actual} bytes, the index needs {size}")


def check_common_state(step: Path) -> None:
    """Megatron's `common.pt` (the non-sharded state) loads as plain data, as Megatron itself will load it."""
    path = step / COMMON_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file; all mean "unusable"
        raise CheckpointError(f"{path} is not readable ({describe(err)})") from None


def unusable_reason(step: Path, rank: int = 0, resume: bool = True) -> str | None:
    """Why `step` cannot be resumed from on `rank` (with `resume` false: cannot give its weights), None when
    it can (the module docstring's rule; weights need only metadata.json, the shards and common.pt)."""
    try:
        read_json(step / META_FILE)
        check_shards(step)
        check_common_state(step)
        if resume:
            read_trainer_state(step)
        if resume and rng_file(step, rank).is_file():
            load_rng_file(rng_file(step, rank))
    except CheckpointError as err:
        return str(err)
    return None


def usable_steps(save_dir: Path, rank: int = 0, vote: Callable[[list[bool]], list[bool]] | None = None,
                 resume: bool = True) -> list[Path]:
    """The step folders of `save_dir` that can be resumed from (`resume` false: that hold intact weights),
    newest first; logs why each other one is skipped. CheckpointError naming them when step folders exist
    but none is usable.

    vote: turns this rank's per-folder "unusable" flags into the flags every rank agrees on (distributed
    runs veto a folder that is unusable on any rank); None for one process.
    """
    steps = step_folders(save_dir)
    reasons = [unusable_reason(step, rank, resume) for step in steps]
    flags = [reason is not None for reason in reasons]
    vetoed = vote(flags) if vote is not None else flags
    reasons = [reason or ("unusable on another rank" if veto else None) for reason, veto in zip(reasons, vetoed)]
    usable = [step for step, reason in zip(steps, reasons) if reason is None]
    if steps and not usable:
        named = "; ".join(f"{step.name}: {reason}" for step, reason in zip(steps, reasons))
        raise CheckpointError(f"{save_dir} holds step folders but none can be resumed ({named}). "
                              "Repair or move them away; nothing was trained over them")
    for step, reason in zip(steps, reasons):
        if reason is not None:
            newer = usable and step_number(step) > step_number(usable[0])
            logger.warning("checkpoint %s is unusable: %s%s", step, reason,
                           f"; falling back to the previous intact step {usable[0].name}" if newer else "")
    return usable


def step_number(step: Path) -> int:
    """N of an `iter_<N>` or `step_<N>` folder."""
    return int(_STEP_NAME.fullmatch(step.name).group(1))


# ---------------------------------------------------------------- RNG states as tensors and numbers


def rng_to_tensors(python_state: tuple, numpy_state: tuple, torch_state: torch.Tensor,
                   cuda_state: torch.Tensor | None, tracker: dict) -> dict:
    """RNG states as a dict of tensors, ints, floats and strings (what `weights_only=True` loads)."""
    version, words, gauss_next = python_state
    kind, keys, pos, has_gauss, cached = numpy_state
    return {"format": 2,
            "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": torch_state, "cuda": cuda_state, "tracker": dict(tracker)}


def rng_from_tensors(saved: dict) -> dict:
    """{"python", "numpy", "torch", "cuda", "tracker"} in the forms random/numpy/torch accept; also reads
    the first format (numpy array and python tuples stored as they are)."""
    if saved.get("format") != 2:
        return {key: saved[key] for key in ("python", "numpy", "torch", "cuda", "tracker")}
    py, nps = saved["python"], saved["numpy"]
    return {"python": (py["version"], tuple(py["words"].tolist()), py["gauss_next"]),
            "numpy": (nps["kind"], nps["keys"].numpy().astype("uint32"), nps["pos"], nps["has_gauss"],
                      nps["cached_gaussian"]),
            "torch": saved["torch"], "cuda": saved["cuda"], "tracker": saved["tracker"]}


def _numpy_array_globals() -> list:
    """What a pickled numpy array needs (the first RNG format held one): array, dtype, their rebuild."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_rng_file(path: Path) -> dict:
    """One rank's RNG states, loaded with `weights_only=True` (no code runs, whatever the file holds)."""
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            saved = torch.load(path, map_location="cpu", weights_only=True)
        return rng_from_tensors(saved)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file; all mean "unusable"
        raise CheckpointError(f"{path} is not an RNG state file ({describe(err)})") from None


# ---------------------------------------------------------------- durable writes


def fsync_path(path: Path) -> None:
    """Flush one file's data, or one folder's entries, to disk (a file system that cannot flush a folder
    says EINVAL: its folder entries are then as durable as it makes them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if not (err.errno == errno.EINVAL and os.path.isdir(path)):
            raise
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder`, then each folder's entries (deepest first)."""
    for dirpath, _, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def write_durably(path: Path, text: str) -> None:
    """Write `text` to `path` and flush it to disk."""
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def replace_durably(src: Path, dst: Path) -> None:
    """Rename `src` over `dst` and flush the parent folder so the rename itself survives a crash."""
    os.replace(src, dst)
    fsync_path(dst.parent)


def write_tracker(save_dir: Path, step: int) -> None:
    """Point the tracker at iteration `step` (written beside it, flushed, renamed over it), then drop the
    `latest` file a run saved before the iter_ names may still hold (it would name an older folder)."""
    pending = save_dir / f".{TRACKER}.tmp"
    write_durably(pending, str(step))
    replace_durably(pending, save_dir / TRACKER)
    if (save_dir / OLD_LATEST).is_file():
        (save_dir / OLD_LATEST).unlink()
        fsync_path(save_dir)
