"""`nemo-vtp ablate RECIPE [k=v...]`: the reward ablation (the paper's Table 3) from one Stage I checkpoint.

RECIPE is a Stage II recipe; its `checkpoint.load` names the Stage I checkpoint every run starts from.
For each arm of `ablation.arms` and each of `ablation.seeds` seeds:
  1. Stage II runs with the arm's reward switches (`rewards.enabled.*`) and run.seed + k, in its own
     process (`nemo-vtp rl`, under torchrun when `ablation.nproc_per_node` > 1), into
     <out>/runs/<arm>/seed<k> (log: stage2.log there);
  2. its final checkpoint is evaluated greedily on the held-out split with the training prompt
     (nemo_vtp.eval.checkpoints.evaluate_checkpoint), and every response is measured against the
     sample's truth (nemo_vtp.ablate_metrics);
  3. the run's means go to <out>/runs/<arm>/seed<k>/result.json.
Then <out>/results.jsonl (one line per finished run) and <out>/report.md (Table 3 layout: mean and 95%
interval per arm, paired difference to the full arm) with one PNG per metric are written.

Resumable: a run with a result.json is skipped; a Stage II run or an evaluation that was stopped
continues from its own checkpoint or records. `ablation.task=i` runs only the i-th (arm, seed) of
the plan (arm-major: i = arm index x seeds + seed index), for Slurm array jobs (slurm/ablate.sbatch).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nemo_vtp.ablate_metrics import METRICS, mean_of, response_metrics

logger = logging.getLogger("nemo_vtp.ablate")

# Reward terms each arm switches off (`rewards.enabled.<term>=false`); "full" is the reference arm.
ARM_OFF: dict[str, tuple[str, ...]] = {
    "full": (), "no-vkey": ("vkey",), "no-tkey": ("tkey",), "no-cons": ("cons",),
    "acc-fmt": ("vkey", "tkey", "cons", "rep"),
}
RESULT_FILE = "result.json"


class AblationError(RuntimeError):
    """A Stage II run or an evaluation failed: the message names the run and its log."""


@dataclass(frozen=True)
class RunSpec:
    arm: str
    seed_index: int  # k in 0 .. S-1
    seed: int  # run.seed + k
    run_dir: Path

    @property
    def name(self) -> str:
        return f"{self.arm} seed {self.seed_index}"


def task_to_run(index: int, arms: list[str], seeds: int) -> tuple[str, int]:
    """The (arm, seed index) of a Slurm array index: arm-major over the plan.

    >>> task_to_run(7, ["full", "no-vkey", "no-cons"], 5)
    ('no-vkey', 2)
    """
    if not 0 <= index < len(arms) * seeds:
        raise ValueError(f"ablation.task={index} is outside 0..{len(arms) * seeds - 1} "
                         f"({len(arms)} arms x {seeds} seeds)")
    return arms[index // seeds], index % seeds


def output_dir(cfg) -> Path:
    return Path(cfg.ablation.output_dir or Path(cfg.run.output_dir) / "ablation")


def plan(cfg) -> list[RunSpec]:
    """Every (arm, seed) run of the recipe, arm-major."""
    out, ab = output_dir(cfg), cfg.ablation
    return [RunSpec(arm, k, cfg.run.seed + k, out / "runs" / arm / f"seed{k}")
            for arm in ab.arms for k in range(ab.seeds)]


def rl_command(recipe: str, overrides: list[str], spec: RunSpec, nproc: int) -> list[str]:
    """The Stage II command of one run: the user's overrides, then the run's folder, seed and switches."""
    run = [f"run.output_dir={spec.run_dir}", f"checkpoint.save_dir={spec.run_dir / 'checkpoints'}",
           f"run.seed={spec.seed}", "ablation.task=null",
           *(f"rewards.enabled.{term}=false" for term in ARM_OFF[spec.arm])]
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [*launcher, "-m", "nemo_vtp.cli", "rl", recipe, *overrides, *run]


def run_stage2(cmd: list[str], spec: RunSpec) -> bool:
    """Run Stage II, output to <run_dir>/stage2.log. True when it finished all its steps, False when it
    stopped early (a signal: it saved a checkpoint and a rerun continues). AblationError on failure."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    log = spec.run_dir / "stage2.log"
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"\n$ {' '.join(cmd)}\n")
        sink.flush()
        rc = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, env=_child_env()).returncode
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
    if rc != 0:
        raise AblationError(f"Stage II of {spec.name} exited {rc}; its log {log} ends with:\n{tail}")
    return "nemo-vtp rl done:" in tail


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def eval_config(cfg):
    """The recipe with its evaluation set to the held-out split, greedy, with the training prompt."""
    ab = cfg.ablation
    data_dir = ab.eval_data_dir or (str(Path(cfg.data.train_path).parent) if cfg.data.train_path else None)
    if data_dir is None:
        raise ValueError("set ablation.eval_data_dir (or data.train_path, whose folder holds the held-out split)")
    ev = cfg.eval.model_copy(update={"benchmark": "synthetic", "data_dir": data_dir, "split": ab.eval_split,
                                     "limit": ab.eval_limit, "prompt": "structured", "prompt_style": None,
                                     "batch_size": ab.eval_batch_size})
    sampling = cfg.generation.sampling.model_copy(update={
        "temperature": 0.0, "n": 1, "max_new_tokens": ab.eval_max_new_tokens or cfg.generation.sampling.max_new_tokens})
    return cfg.model_copy(update={"eval": ev, "generation": cfg.generation.model_copy(update={"sampling": sampling})})


def held_out(ecfg) -> dict[str, dict]:
    """{id: sample dict} of the held-out split (key facts and scene for the measures)."""
    from nemo_vtp.data.io import read_samples

    path = Path(ecfg.eval.data_dir) / f"{ecfg.eval.split}.jsonl"
    samples, _ = read_samples(path, check_images=False)
    return {s.id: s.to_dict() for s in samples}


def evaluate_run(ecfg, spec: RunSpec, truth: dict[str, dict]) -> dict[str, float | None]:
    """Evaluate the run's final checkpoint; the means of the per-response measures over the split."""
    from nemo_vtp.eval.checkpoints import evaluate_checkpoint
    from nemo_vtp.eval.runner import read_records

    out = spec.run_dir / "eval"
    evaluate_checkpoint(ecfg, spec.run_dir / "checkpoints", out)
    rows = [response_metrics(r["response"], truth[r["id"]], bool(r["correct"]), float(r["metrics"].get("format", 0)))
            for r in read_records(out)]
    if not rows:
        raise AblationError(f"the evaluation of {spec.name} in {out} holds no scored response")
    return {"n": float(len(rows)), **{m: mean_of(rows, m) for m in METRICS}}


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and a rename: a reader (or a parallel array task) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def finished_results(specs: list[RunSpec]) -> list[dict]:
    """The result.json of every planned run that has one, in plan order."""
    return [json.loads((s.run_dir / RESULT_FILE).read_text()) for s in specs if (s.run_dir / RESULT_FILE).is_file()]


class _StopFlag:
    """USR1/TERM (a Slurm pre-emption) reach the Stage II child too, which saves and exits; the driver
    notes the signal, lets the child finish its save, and then stops instead of starting the next run."""

    def __init__(self):
        self.stop = False
        self.previous = {s: signal.signal(s, self._note) for s in (signal.SIGUSR1, signal.SIGTERM)}

    def _note(self, signum, frame) -> None:
        self.stop = True

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def run_one(recipe: str, overrides: list[str], cfg, ecfg, spec: RunSpec, truth: dict) -> dict | None:
    """Stage II, evaluation and result.json of one run; None when Stage II stopped early."""
    start = time.perf_counter()
    if not run_stage2(rl_command(recipe, overrides, spec, cfg.ablation.nproc_per_node), spec):
        return None
    metrics = evaluate_run(ecfg, spec, truth)
    result = {"arm": spec.arm, "seed_index": spec.seed_index, "seed": spec.seed, "run_dir": str(spec.run_dir),
              "seconds": round(time.perf_counter() - start, 1), "metrics": metrics}
    write_atomic(spec.run_dir / RESULT_FILE, json.dumps(result) + "\n")
    return result


def _progress(pending: list[RunSpec], enabled: bool):
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=len(pending), desc="ablate", unit="run")


def run_plan(recipe: str, overrides: list[str], cfg) -> tuple[list[RunSpec], bool]:
    """Run every pending run of the plan (or of `ablation.task`). Returns (the plan, all of it done)."""
    specs = plan(cfg)
    mine = specs
    if cfg.ablation.task is not None:
        arm, k = task_to_run(cfg.ablation.task, list(cfg.ablation.arms), cfg.ablation.seeds)
        mine = [s for s in specs if s.arm == arm and s.seed_index == k]
    pending = [s for s in mine if not (s.run_dir / RESULT_FILE).is_file()]
    logger.info("ablate: %d runs planned (%d arms x %d seeds), %d done, %d to run here", len(specs),
                len(cfg.ablation.arms), cfg.ablation.seeds, len(specs) - sum(not (s.run_dir / RESULT_FILE).is_file()
                                                                              for s in specs), len(pending))
    if not pending:
        return specs, True
    ecfg, truth = eval_config(cfg), None
    flag, bar = _StopFlag(), _progress(pending, cfg.logging.progress_bar)
    try:
        for spec in pending:
            truth = truth or held_out(ecfg)
            result = run_one(recipe, overrides, cfg, ecfg, spec, truth)
            if result is None or flag.stop:
                logger.warning("ablate: stopped during %s; run the same command again to continue", spec.name)
                return specs, False
            figures = ", ".join(f"{m} {v:.3f}" for m, v in result["metrics"].items() if v is not None and m != "n")
            logger.info("ablate: %s finished in %.0f s: %s", spec.name, result["seconds"], figures)
            if bar is not None:
                bar.update(1)
    finally:
        flag.restore()
        if bar is not None:
            bar.close()
    return specs, True


def _check_held_out(cfg) -> None:
    """A missing held-out split is an error before the first training run, not after it."""
    ecfg = eval_config(cfg)
    path = Path(ecfg.eval.data_dir) / f"{ecfg.eval.split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"the held-out split {path} does not exist: set ablation.eval_data_dir and "
                                "ablation.eval_split (a synthetic world folder holds test.jsonl)")


_PARSER = argparse.ArgumentParser(prog="nemo-vtp ablate", description="reward ablation (Table 3) from one Stage I "
                                  "checkpoint: every arm x seed, evaluated on the held-out split")
_PARSER.add_argument("recipe", help="a Stage II recipe; checkpoint.load names the Stage I checkpoint")
_PARSER.add_argument("overrides", nargs="*", help="dotlist overrides for every run, e.g. ablation.seeds=3")


def main(argv: list[str]) -> int:
    from nemo_vtp.ablate_report import write_report
    from nemo_vtp.config import ConfigError, load_config
    from nemo_vtp.training.logging import configure_logging

    args = _PARSER.parse_args(argv)
    configure_logging()
    try:
        cfg = load_config(args.recipe, args.overrides)
        _check_held_out(cfg)
        specs, complete = run_plan(args.recipe, args.overrides, cfg)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except AblationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = output_dir(cfg)
    results = finished_results(specs)
    write_atomic(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in results))
    report = write_report(out, results, list(cfg.ablation.arms), cfg.ablation.seeds)
    print(f"nemo-vtp ablate: {len(results)}/{len(specs)} runs done; {report}")
    return 0 if complete else 1
