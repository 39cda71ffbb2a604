"""The command line of a training stage: parse, load the recipe, set up, train, tear down.

Errors found before the first step (a bad recipe, a missing or mismatched checkpoint, a batch that
does not divide) print one line and exit 2; a run that stopped early (pre-emption) says so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from nemo_vtp.config import ConfigError, load_config
from nemo_vtp.parallel import teardown
from nemo_vtp.training.logging import configure_logging, is_rank_zero
from nemo_vtp.training.stage_args import STAGES, stage_parser


def stage_main(argv: list[str], stage: str, setup: Callable, train: Callable,
               headline: Callable[[dict], str]) -> int:
    """`stage`: "sft" or "rl" (nemo_vtp.training.stage_args); `setup(cfg) -> state` (with .step, .total_steps,
    .metrics, .preemption); `train(cfg, state) -> metrics`; `headline(metrics)` is the closing line's figure,
    e.g. "loss 0.41"."""
    args = stage_parser(stage).parse_args(argv)
    prog = STAGES[stage][0]
    configure_logging()
    try:
        cfg = load_config(args.recipe, args.overrides)
        state = setup(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        teardown()
        return 2
    try:
        metrics = train(cfg, state)
        if is_rank_zero():
            status = "done" if state.step >= state.total_steps else "stopped early (resume by running it again)"
            print(f"{prog} {status}: step {state.step}/{state.total_steps}, {headline(metrics)}")
    finally:
        state.metrics.close()
        state.preemption.restore()
        teardown()
    return 0
