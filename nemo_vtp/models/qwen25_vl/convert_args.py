"""The command line of `nemo-vtp convert` (nemo_vtp.models.qwen25_vl.convert), without torch or Megatron,
so that `--help` answers at once. Each sub-command's `func` names the function of the convert module."""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPE_NAMES = ("float32", "bfloat16", "float16")  # the torch dtypes a conversion can write
HF_DIR_HELP = "HF model folder, or a Hugging Face id (ORG/NAME) already in the local HF cache"


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="nemo-vtp convert", description="HF <-> Megatron checkpoints of Qwen2.5-VL, "
                                  "and a logit check between the two")
    sub = out.add_subparsers(dest="command", required=True)
    a = sub.add_parser("hf-to-megatron", help="HF folder -> Megatron distributed checkpoint")
    a.add_argument("--hf-dir", required=True, help=HF_DIR_HELP)
    a.add_argument("--out", required=True, type=Path)
    a.add_argument("--dtype", default="auto", choices=["auto", *DTYPE_NAMES], help="auto: the HF weights' dtype")
    a.set_defaults(func="hf_to_megatron")
    b = sub.add_parser("megatron-to-hf", help="Megatron distributed checkpoint -> HF folder (safetensors)")
    b.add_argument("--ckpt", required=True, type=Path)
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--hf-config", type=Path, help="HF config.json when the checkpoint has no hf/config.json")
    b.add_argument("--max-shard-gb", type=float, default=4.0, help="safetensors shard size, GiB")
    b.set_defaults(func="megatron_to_hf")
    for p in (a, b):
        p.add_argument("--tp", type=int, default=1, help="tensor-parallel processes sharing the work")
        p.add_argument("--pp", type=int, default=1, help="pipeline-parallel processes sharing the work")
    c = sub.add_parser("verify", help="max |logit difference| between the HF folder and the checkpoint")
    c.add_argument("--hf-dir", required=True, help=HF_DIR_HELP)
    c.add_argument("--ckpt", required=True, type=Path)
    c.add_argument("--tolerance", type=float, default=1e-3, help="largest accepted max |diff| (float32 logits)")
    c.set_defaults(func="verify")
    return out
