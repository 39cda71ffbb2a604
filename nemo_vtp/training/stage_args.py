"""The command line of the training stages (`nemo-vtp sft|rl RECIPE [k=v ...]`), without torch or Megatron,
so that `--help` answers at once."""

from __future__ import annotations

import argparse

# stage -> (prog, description)
STAGES = {
    "sft": ("nemo-vtp sft", "Stage I perception SFT"),
    "rl": ("nemo-vtp rl", "Stage II perception-aware DAPO"),
}


def stage_parser(stage: str) -> argparse.ArgumentParser:
    prog, description = STAGES[stage]
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("recipe", help="a recipe YAML, e.g. recipes/tiny/sft.yaml (nemo-vtp recipes list)")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. optimizer.lr=2e-5")
    return parser


def sft_parser() -> argparse.ArgumentParser:
    return stage_parser("sft")


def rl_parser() -> argparse.ArgumentParser:
    return stage_parser("rl")
