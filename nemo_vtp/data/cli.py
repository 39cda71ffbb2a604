"""`nemo-vtp data SUBCOMMAND ...`: dataset tools.

To add a sub-command, write a module with `add_arguments(parser)` and `run(args) -> int` and add
one line to SUBCOMMANDS; only the chosen module is imported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module with add_arguments/run, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("nemo_vtp.data.commands.synth", "generate the synthetic perception world (train/val/test JSONL + images)"),
    "convert": ("nemo_vtp.data.commands.convert", "convert a public dataset file into our sample JSONL"),
    "tokenizer": ("nemo_vtp.data.commands.tokenizer", "build the tiny model's tokenizer folder (deterministic)"),
    "check": ("nemo_vtp.data.commands.check", "validate a sample JSONL file and print what would be skipped"),
    "mix": ("nemo_vtp.data.commands.mix", "mix, subsample, deduplicate and split sources into train.jsonl/val.jsonl"),
    "annotate": ("nemo_vtp.data.commands.annotate", "teacher-driven key-information annotation of RL samples (V, Z)"),
    "clean-sft": ("nemo_vtp.data.commands.clean_sft", "teacher rewrite + s_f/s_c/s_a/s_m scoring of SFT samples"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items())
    return f"usage: nemo-vtp data SUBCOMMAND [args...]\n\nsubcommands:\n{rows}\n"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), end="")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown data subcommand {name!r}\n\n{_usage()}", file=sys.stderr, end="")
        return 2
    module_name, help_ = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"nemo-vtp data {name}", description=help_)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
