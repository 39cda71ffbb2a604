"""`nemo-vtp eval RECIPE [k=v...]`: evaluate a checkpoint (or score saved responses) on one benchmark.

Every rank (torchrun or srun) scores its shard into the output folder; the last rank to finish writes
summary.json and summary.md. Rerunning the same command resumes where the previous run stopped.
"""

from __future__ import annotations

import argparse
import sys

from nemo_vtp.config import ConfigError, load_config
from nemo_vtp.eval.engine_adapter import EngineUnavailable
from nemo_vtp.eval.evaluate import evaluate, output_dir
from nemo_vtp.eval.files import BenchmarkFilesMissing
from nemo_vtp.training.logging import configure_logging


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nemo-vtp eval", description=__doc__)
    parser.add_argument("recipe", help="an eval recipe, e.g. recipes/eval/eval-qwen25vl-7b-mathvista-1n8g-dp8.yaml "
                        "(nemo-vtp recipes list)")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. eval.limit=10 eval.prompt=plain")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        cfg = load_config(args.recipe, args.overrides)
        summary = evaluate(cfg)
    except (ConfigError, BenchmarkFilesMissing, EngineUnavailable, FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary is not None:
        out_dir = output_dir(cfg)
        print((out_dir / "summary.md").read_text(), end="")
        print(f"summary written to {out_dir}/summary.md and summary.json")
    return 0
