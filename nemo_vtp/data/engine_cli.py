"""What `data annotate` and `data clean-sft` share: arguments, the settings, the teachers and the run.

    nemo-vtp data annotate|clean-sft --in FILE.jsonl --out DIR [--shard i/n] [--teacher URL_OR_DIR ...]
        [--judge URL_OR_DIR] [--config RECIPE.yaml] [--limit N] [--no-progress] [data_engine.k=v ...]

Settings come from the recipe's `data_engine` section (defaults in nemo_vtp/config/data_engine.py),
then the `k=v` overrides (the `data_engine.` prefix may be left out), then --teacher/--judge.
Exit status: 0 when every row of the shard is finished, 1 when some failed or were not attempted
(rerun the same command), 2 for bad arguments or settings.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from nemo_vtp.config.data_engine import DataEngineConfig
from nemo_vtp.config.loader import ConfigError, apply_overrides, format_validation_error, load_config
from nemo_vtp.data.io import DataError, read_samples
from nemo_vtp.data.runner import Outcome, parse_shard, run_samples
from nemo_vtp.data.schema import Sample
from nemo_vtp.data.teachers import Teacher, build_teacher


def add_arguments(parser) -> None:
    parser.add_argument("--in", dest="in_path", required=True, help="sample JSONL file to process")
    parser.add_argument("--out", required=True, help="output folder: NAME.jsonl (the kept samples, NAME = the input's "
                        "file name, e.g. train), NAME.records.jsonl, NAME.summary.json")
    parser.add_argument("--shard", default="0/1", help="process rows i, i+n, i+2n, ... of the input (i/n)")
    parser.add_argument("--teacher", action="append", default=None,
                        help="teacher: http(s)://host:port of a chat-completions server or a local HF folder; "
                             "repeat for several (overrides data_engine.teachers)")
    parser.add_argument("--judge", default=None, help="judge/extractor, same forms (default: the first teacher)")
    parser.add_argument("--config", default=None, help="a recipe YAML whose data_engine section to use")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows of the input (before sharding)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="settings, e.g. data_engine.annotate.budget=2")


def load_settings(args) -> DataEngineConfig:
    """The data_engine section from --config, overrides and --teacher/--judge; ConfigError when invalid."""
    overrides = [o if o.lstrip("+").startswith("data_engine.") else f"data_engine.{o}" for o in args.overrides]
    if args.teacher:
        overrides.append(f"data_engine.teachers=[{','.join(args.teacher)}]")
    if args.judge:
        overrides.append(f"data_engine.judge={args.judge}")
    if args.config:
        return load_config(args.config, overrides).data_engine
    from nemo_vtp.config.schema import RecipeConfig

    origins: dict = {}
    data = apply_overrides({}, origins, overrides)
    try:
        return RecipeConfig.model_validate(data).data_engine
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, RecipeConfig, origins)) from None


def build_teachers(cfg: DataEngineConfig) -> tuple[list[Teacher], Teacher]:
    """(teachers, judge); a judge equal to a teacher reuses it (one model in memory for local folders)."""
    teachers = [build_teacher(t, cfg.requests) for t in cfg.teachers]
    judge_cfg = cfg.judge_teacher
    same = next((t for t, c in zip(teachers, cfg.teachers) if c == judge_cfg), None)
    return teachers, same or build_teacher(judge_cfg, cfg.requests)


def run_command(args, command: str, make_processor: Callable[[DataEngineConfig, list[Teacher], Teacher, Path],
                                                           Callable[[Sample], Outcome]]) -> int:
    try:
        shard = parse_shard(args.shard)
        cfg = load_settings(args)
        samples, read_summary = read_samples(args.in_path)
        teachers, judge = build_teachers(cfg)
    except (ValueError, ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.limit is not None:
        samples = samples[:args.limit]
    process = make_processor(cfg, teachers, judge, Path(args.in_path).parent)
    try:
        summary = run_samples(samples, process, command=command, input_path=args.in_path, out_dir=args.out,
                              shard=shard, max_concurrency=cfg.requests.max_concurrency,
                              max_consecutive_failures=cfg.requests.max_consecutive_failures,
                              progress=not args.no_progress, read_summary=read_summary)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary)
    return 1 if summary.counts["failed"] or summary.not_attempted else 0
