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
    "data": ("nemo_vtp.data.cli", "datasets: synth, convert, mix, annotate, clean-sft, check"),
    "eval": ("nemo_vtp.eval.cli", "benchmarks: nemo-vtp eval RECIPE [k=v...]"),
    "ablate": ("nemo_vtp.ablate", "reward ablation (Table 3) from one Stage I checkpoint: nemo-vtp ablate RECIPE [k=v...]"),
    "serve": ("nemo_vtp.generation.server", "OpenAI-compatible chat completions over the torch engine"),
    "config": ("nemo_vtp.config.cli", "config show RECIPE [k=v...]: the resolved, validated recipe"),
    "model": ("nemo_vtp.models.cli", "model tiny --out DIR: a tiny random Qwen2.5-VL HF folder to try things on"),
    "recipes": ("nemo_vtp.recipe_files", "recipes list | recipes copy NAME DIR: the shipped recipes"),
}

# Commands whose module imports torch or Megatron (seconds, and Megatron's import warnings): their
# `--help` comes from a light parser builder ("module:function") and the heavy module is not imported.
HELP_PARSERS: dict[str, str] = {
    "sft": "nemo_vtp.training.stage_args:sft_parser",
    "rl": "nemo_vtp.training.stage_args:rl_parser",
    "convert": "nemo_vtp.models.qwen25_vl.convert_args:parser",
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: nemo-vtp [--version] COMMAND [args...]\n\ncommands:\n{rows}\n"


def version() -> str:
    """The installed distribution's version (the package's own when it runs from a checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("nemo_vtp")
    except PackageNotFoundError:
        from nemo_vtp import __version__

        return __version__


def _light_help(name: str, rest: list[str]) -> int | None:
    """Answer `COMMAND ... --help` from the light parser when the command has one; None otherwise."""
    if name not in HELP_PARSERS or not {"-h", "--help"} & set(rest):
        return None
    module_name, function = HELP_PARSERS[name].split(":")
    try:
        getattr(importlib.import_module(module_name), function)().parse_args(rest)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), end="")
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"nemo-vtp {version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr, end="")
        return 2
    answered = _light_help(name, rest)
    if answered is not None:
        return answered
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
