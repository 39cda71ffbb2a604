"""`nemo-vtp model tiny --out DIR [--seed S] [--dtype float32|bfloat16]`: a tiny random Qwen2.5-VL HF folder
(nemo_vtp.models.qwen25_vl.tiny) to try conversion, serving and the engines on, with nothing downloaded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="nemo-vtp model", description="model folders")
    sub = out.add_subparsers(dest="command", required=True)
    tiny = sub.add_parser("tiny", help="write a tiny random Qwen2.5-VL HF folder (config, safetensors, tokenizer, "
                                       "image processor)")
    tiny.add_argument("--out", required=True, type=Path, help="output folder (must be empty or new)")
    tiny.add_argument("--seed", type=int, default=0, help="weight seed; the same seed gives the same weights")
    tiny.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weight dtype")
    return out


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: --out {args.out} is not empty", file=sys.stderr)
        return 2
    import torch

    from nemo_vtp.models.qwen25_vl.tiny import write_tiny_folder

    write_tiny_folder(args.out, seed=args.seed, dtype=getattr(torch, args.dtype))
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"wrote a tiny random Qwen2.5-VL to {args.out} ({size / 2**20:.1f} MiB); try: "
          f"nemo-vtp convert hf-to-megatron --hf-dir {args.out} --out {args.out}-mcore")
    return 0
