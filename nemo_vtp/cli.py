"""`nemo-vtp`: one entry point; each sub-command lives in the module that owns the work."""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help). Each module exposes `main(argv: list[str]) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("nemo_vtp.demo", "the two-stage CPU demo: synthetic world -> SFT -> DAPO -> eval -> report"),
    "sft": ("nemo_vtp.sft", "Stage I perception SFT: nemo-vtp sft RECIPE [k=v...]"),
    "rl": ("nemo_vtp.dapo", "Stage II perception-aware DAPO: nemo-vtp rl RECIPE [k=v...]"),
    "convert": ("nemo_vtp.models.qwen25_vl.convert", "HF <-> Megatron checkpoints: hf-to-megatron, megatron-to-hf, verify"),
    "data": ("nemo_vtp.data.cli", "datasets: synth, convert, annotate, clean-sft"),
    "eval": ("nemo_vtp.eval.cli", "benchmarks: nemo-vtp eval RECIPE [k=v...]"),
    "ablate": ("nemo_vtp.ablate", "reward ablation (Table 3) from one Stage I checkpoint: nemo-vtp ablate RECIPE [k=v...]"),
    "serve": ("nemo_vtp.generation.server", "OpenAI-compatible chat completions over the torch engine"),
    "config": ("nemo_vtp.config.cli", "config show RECIPE [k=v...]: the resolved, validated recipe"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: nemo-vtp COMMAND [args...]\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), end="")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr, end="")
        return 2
    module_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            print(f"error: `nemo-vtp {name}` is not built yet ({module_name} does not exist)", file=sys.stderr)
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
