"""`nemo-vtp convert`: HF <-> Megatron checkpoints of Qwen2.5-VL, and a logit check between the two.

    nemo-vtp convert hf-to-megatron --hf-dir D --out C [--tp N --pp M] [--dtype auto|float32|bfloat16]
    nemo-vtp convert megatron-to-hf --ckpt C --out D [--tp N --pp M] [--hf-config F] [--max-shard-gb 4]
    nemo-vtp convert verify --hf-dir D --ckpt C [--tolerance 1e-3]

Conversion runs on CPU in TP x PP processes (spawned here, or the ranks of an outer `torchrun`): each
builds its shard of the model, so peak memory per process is about one model shard plus one full
tensor. Inputs are checked (config vs tensors, missing/extra/shape, TP/PP divisibility) before any
process starts. The Megatron checkpoint is TP/PP-agnostic: --tp/--pp only choose how the work is split.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import torch

from nemo_vtp.models.hub import resolve_model_dir
from nemo_vtp.models.qwen25_vl.config import Qwen25VLArch, from_hf_config
from nemo_vtp.models.qwen25_vl.convert_args import DTYPE_NAMES, parser
from nemo_vtp.models.qwen25_vl.hf_io import SafetensorsReader
from nemo_vtp.models.qwen25_vl.weight_map import canonical_hf_name, check_hf_tensors

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if getattr(args, "hf_dir", None) is not None:
            args.hf_dir = resolve_model_dir(args.hf_dir, "--hf-dir")
        return int(globals()[args.func](args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


# --- hf-to-megatron --------------------------------------------------------------------------------


def hf_to_megatron(args) -> int:
    arch, dtype = check_hf_dir(args.hf_dir, args.dtype)
    arch.check_parallel(args.tp, args.pp)
    _require_empty(args.out)
    start = time.time()
    launch(_hf_to_megatron_rank, args.tp, args.pp, str(args.hf_dir), str(args.out), str(dtype))
    print(f"wrote {args.out} ({_size_gib(args.out):.2f} GiB) in {time.time() - start:.1f}s")
    return 0


def check_hf_dir(hf_dir: Path, dtype: str) -> tuple[Qwen25VLArch, torch.dtype]:
    """Config and tensor checks of an HF folder (headers only); returns the architecture and dtype."""
    arch = from_hf_config(hf_dir)
    reader = SafetensorsReader(hf_dir)
    check_hf_tensors(reader.shapes(), arch, str(hf_dir))
    if dtype == "auto":  # the embedding's dtype, from the headers
        return arch, next(d for n, d in reader.dtypes().items() if canonical_hf_name(n) == "model.embed_tokens.weight")
    return arch, DTYPES[dtype]


def _hf_to_megatron_rank(hf_dir: str, out: str, dtype: str) -> None:
    from nemo_vtp.models.qwen25_vl.checkpoint import (
        save_model_checkpoint,
        write_hf_side,
    )
    from nemo_vtp.models.qwen25_vl.weight_stream import load_hf_weights

    arch, torch_dtype = from_hf_config(hf_dir), _dtype(dtype)
    chunks = build_cpu_model(arch, torch_dtype)
    load_hf_weights(chunks, SafetensorsReader(hf_dir))
    save_model_checkpoint(chunks, out)
    if torch.distributed.get_rank() == 0:
        write_hf_side(out, arch, torch_dtype, files_from=hf_dir)


# --- megatron-to-hf --------------------------------------------------------------------------------


def megatron_to_hf(args) -> int:
    from nemo_vtp.models.qwen25_vl.checkpoint import read_arch

    arch = read_arch(args.ckpt, args.hf_config)
    arch.check_parallel(args.tp, args.pp)
    if not (args.ckpt / "metadata.json").is_file():
        raise FileNotFoundError(f"{args.ckpt} is not a Megatron distributed checkpoint (no metadata.json)")
    if args.out.exists() and any(args.out.glob("*.safetensors")):
        raise FileExistsError(f"{args.out} already holds safetensors files")
    start = time.time()
    launch(_megatron_to_hf_rank, args.tp, args.pp, str(args.ckpt), str(args.out),
           str(args.hf_config or ""), int(args.max_shard_gb * 2**30))
    print(f"wrote {args.out} ({_size_gib(args.out):.2f} GiB) in {time.time() - start:.1f}s")
    return 0


def checkpoint_dtype(ckpt: str | Path) -> torch.dtype:
    """dtype recorded in C/hf/config.json at conversion time (float32 when absent)."""
    path = Path(ckpt, "hf", "config.json")
    name = json.loads(path.read_text()).get("torch_dtype", "float32") if path.is_file() else "float32"
    return DTYPES.get(name, torch.float32)


def _megatron_to_hf_rank(ckpt: str, out: str, hf_config: str, max_shard_bytes: int) -> None:
    from nemo_vtp.models.qwen25_vl.checkpoint import (
        HF_SUBDIR,
        load_model_checkpoint,
        read_arch,
    )
    from nemo_vtp.models.qwen25_vl.hf_io import (
        SafetensorsWriter,
        copy_side_files,
        write_hf_config,
    )
    from nemo_vtp.models.qwen25_vl.weight_stream import export_hf_weights

    arch, dtype = read_arch(ckpt, hf_config or None), checkpoint_dtype(ckpt)
    chunks = build_cpu_model(arch, dtype)
    load_model_checkpoint(chunks, ckpt)
    writer = SafetensorsWriter(out, max_shard_bytes) if torch.distributed.get_rank() == 0 else None
    for name, tensor in export_hf_weights(chunks):
        if writer is not None:
            writer.add(name, tensor)
    if writer is not None:
        writer.close()
        if Path(ckpt, HF_SUBDIR).is_dir():
            copy_side_files(Path(ckpt, HF_SUBDIR), out)
        write_hf_config(out, arch.to_hf_dict(), dtype)


# --- verify ----------------------------------------------------------------------------------------


def verify(args) -> int:
    from transformers import Qwen2_5_VLForConditionalGeneration

    from nemo_vtp.models.qwen25_vl import parity
    from nemo_vtp.models.qwen25_vl.checkpoint import load_model_checkpoint

    arch, _ = check_hf_dir(args.hf_dir, "auto")
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.hf_dir, dtype=torch.float32,
                                                            attn_implementation="sdpa").eval()
    worst = 0.0
    with single_process_parallel():
        chunks = build_cpu_model(arch, checkpoint_dtype(args.ckpt))
        load_model_checkpoint(chunks, args.ckpt)
        chunks = [chunk.float().eval() for chunk in chunks]
        for with_image in (False, True):
            sample = parity.parity_sample(arch, with_image)
            position_ids = parity.hf_position_ids(hf, sample)
            ref = parity.hf_logits(hf, sample, position_ids)
            with torch.no_grad():
                ours = parity.schedule_forward(chunks, parity.megatron_inputs(sample, position_ids))
            diff = (ours - ref).abs().max().item()
            worst = max(worst, diff)
            print(f"{'image' if with_image else 'text-only'}: logits {tuple(ref.shape)}, max |diff| = {diff:.3e}")
    ok = worst <= args.tolerance
    print(f"{'OK' if ok else 'FAIL'}: max |diff| {worst:.3e} {'<=' if ok else '>'} tolerance {args.tolerance:.1e}")
    return 0 if ok else 1


# --- processes -------------------------------------------------------------------------------------


def build_cpu_model(arch: Qwen25VLArch, dtype: torch.dtype) -> list:
    """This rank's model chunks on CPU, weights uninitialized (they are loaded next)."""
    from megatron.core import parallel_state

    from nemo_vtp.models.qwen25_vl.model import build_model_chunks, transformer_config

    config = transformer_config(
        arch, tensor_model_parallel_size=parallel_state.get_tensor_model_parallel_world_size(),
        pipeline_model_parallel_size=parallel_state.get_pipeline_model_parallel_world_size(),
        params_dtype=dtype, use_cpu_initialization=True, perform_initialization=False,
    )
    return build_model_chunks(arch, config, transformer_impl="local", device=torch.device("cpu"))


def launch(fn, tp: int, pp: int, *args) -> None:
    """Run `fn(*args)` on TP x PP CPU ranks: the current `torchrun` ranks, or processes spawned here."""
    world = tp * pp
    outer = int(os.environ.get("WORLD_SIZE", "0"))
    if outer:
        if outer != world:
            raise ValueError(f"launched with WORLD_SIZE={outer}, but --tp {tp} x --pp {pp} = {world}")
        _rank_main(-1, fn, tp, pp, 0, args)
    elif world == 1:
        _rank_main(0, fn, tp, pp, _free_port(), args)
    else:
        torch.multiprocessing.spawn(_rank_main, args=(fn, tp, pp, _free_port(), args), nprocs=world, join=True)


def _rank_main(rank: int, fn, tp: int, pp: int, port: int, args: tuple) -> None:
    if rank >= 0:  # spawned here (or world size 1): give the process a torchrun-like environment
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(tp * pp),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with _parallel(tp, pp):
        fn(*args)


class _parallel:
    """Megatron parallel state on CPU/gloo for the life of the block."""

    def __init__(self, tp: int, pp: int):
        self.tp, self.pp = tp, pp

    def __enter__(self):
        from nemo_vtp.config.parallel import ParallelConfig
        from nemo_vtp.parallel.state import initialize

        initialize(ParallelConfig(tensor_model_parallel_size=self.tp, pipeline_model_parallel_size=self.pp,
                                  backend="gloo"), seed=0, device="cpu")
        return self

    def __exit__(self, *exc):
        from nemo_vtp.parallel.state import teardown

        teardown()


def single_process_parallel() -> _parallel:
    """TP=1, PP=1 parallel state in this process (for `verify`)."""
    if "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    return _parallel(1, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_empty(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"output folder {path} is not empty")


def _size_gib(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**30


def _dtype(name: str) -> torch.dtype:
    return DTYPES[name.removeprefix("torch.")]
