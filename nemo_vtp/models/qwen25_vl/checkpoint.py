"""Megatron distributed checkpoints of Qwen2.5-VL weights, and the HF side files they carry.

Layout of a model checkpoint folder C (what `convert hf-to-megatron` writes and the trainer may save):

    C/metadata.json, C/*.distcp, C/common.pt   `dist_checkpointing.save({"model": chunk.sharded_state_dict()})`
                                               ("model0", "model1", ... with virtual pipeline chunks)
    C/hf/config.json                           the HF config of the architecture
    C/hf/tokenizer*, preprocessor_config.json  tokenizer/processor files, copied verbatim

Sharded-tensor keys are global (layer axis spans all layers, TP pieces are offsets into the full
tensor), so C loads at any TP/PP. Loading reads only the "model" keys: a checkpoint that also holds an
optimizer state loads the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch
from megatron.core import dist_checkpointing

from nemo_vtp.models.qwen25_vl.config import Qwen25VLArch, from_hf_config
from nemo_vtp.models.qwen25_vl.hf_io import copy_side_files, write_hf_config
from nemo_vtp.training.checkpoint_files import check_shards

HF_SUBDIR = "hf"


def model_state_keys(model_chunks) -> list[str]:
    """Top-level keys of the model weights: ["model"], or ["model0", "model1", ...] for VP chunks."""
    return ["model"] if len(model_chunks) == 1 else [f"model{i}" for i in range(len(model_chunks))]


def sharded_model_state(model_chunks) -> dict:
    """{"model": sharded state dict} of this rank's chunks, Megatron-LM's convention."""
    return {key: chunk.sharded_state_dict() for key, chunk in zip(model_state_keys(model_chunks), model_chunks)}


def save_model_checkpoint(model_chunks, ckpt_dir: str | Path) -> None:
    """Collective: every rank calls it. `ckpt_dir` must be absent or empty."""
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save(sharded_model_state(model_chunks), str(ckpt_dir))


def load_model_checkpoint(model_chunks, ckpt_dir: str | Path) -> None:
    """Collective: load the weights of a checkpoint saved at any TP/PP into this rank's chunks."""
    if not Path(ckpt_dir, "metadata.json").is_file():
        raise FileNotFoundError(f"{ckpt_dir} is not a Megatron distributed checkpoint (no metadata.json)")
    check_shards(Path(ckpt_dir))  # names a torn shard; vets the shard index before torch unpickles it
    loaded = dist_checkpointing.load(sharded_model_state(model_chunks), str(ckpt_dir))
    for key, chunk in zip(model_state_keys(model_chunks), model_chunks):
        chunk.load_state_dict(loaded[key], strict=True)


def write_hf_side(ckpt_dir: str | Path, arch: Qwen25VLArch, dtype: torch.dtype, files_from: str | Path | None) -> Path:
    """Write C/hf/config.json and copy tokenizer/processor files from `files_from` (rank 0 only)."""
    side = Path(ckpt_dir, HF_SUBDIR)
    side.mkdir(parents=True, exist_ok=True)
    write_hf_config(side, arch.to_hf_dict(), dtype)
    if files_from is not None:
        copy_side_files(files_from, side)
    return side


def read_arch(ckpt_dir: str | Path, hf_config: str | Path | None = None) -> Qwen25VLArch:
    """The architecture of a checkpoint: `hf_config` if given, else C/hf/config.json."""
    path = Path(hf_config) if hf_config else Path(ckpt_dir, HF_SUBDIR, "config.json")
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass --hf-config with the model's HF config.json")
    return from_hf_config(path)
