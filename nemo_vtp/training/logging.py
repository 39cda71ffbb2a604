"""Metrics on rank 0: TensorBoard events, one JSON line per step, a Megatron-style line per
`log_interval` step (or a tqdm bar when stderr is a terminal, never both), and, when enabled,
Weights & Biases and MLflow.

The console line, printed to stdout and flushed so that `tail -f` on a batch log sees it at once:

     [2026-12-05 03:00:00] iteration       10/    1200 | consumed samples:           80 | ...

SFT lines carry the loss, grad norm, throughput, MFU and memory; RL lines the reward terms and
the seconds of each phase of a rollout step.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The fields of the console line: (metric name after the prefix, label, format). Missing or
# non-finite metrics are left out of the line.
SFT_FIELDS = (("lr", "learning rate", "{:.3E}"), ("loss", "lm loss", "{:.6E}"), ("grad_norm", "grad norm", "{:.3f}"),
              ("tokens_per_s", "tokens/s", "{:.1f}"), ("mfu", "MFU", "{:.2%}"))
RL_PHASES = ("rollout_s", "generate_s", "score_s", "train_s", "refit_s")  # seconds of each phase, in time/<name>


def configure_logging(level: int = logging.INFO) -> None:
    """Our INFO lines on stderr; megatron-core's own INFO chatter (config dumps) only at WARNING."""
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("megatron").setLevel(logging.WARNING)
    # Known, harmless start-up notices of megatron-core on machines without TE/apex.
    for notice in (".*Transformer Engine and Apex are not installed.*", ".*Apex is not installed.*",
                   ".*full scope is deprecated.*"):
        warnings.filterwarnings("ignore", message=notice)


def is_rank_zero() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _scalar(value: Any) -> float | None:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def memory_gib() -> float:
    """Peak memory of this process, GiB: the CUDA allocator's peak on a GPU, else the peak RSS."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def _field(label: str, value: Any, fmt: str) -> str | None:
    scalar = _scalar(value)
    return None if scalar is None else f"{label}: {fmt.format(scalar)}"


def _rl_fields(metrics: dict[str, Any]) -> list[str | None]:
    """Learning rate, reward terms (total, built-in, then rewards.extra), reward worker counters, loss
    and phase seconds of a rollout step."""
    from nemo_vtp.rewards.terms import COUNTERS

    counters = {f"reward/{name}" for name in (*COUNTERS, "num_samples")}
    terms = [k for k in metrics if k.startswith("reward/") and k != "reward/total" and k not in counters]
    return [_field("learning rate", metrics.get("lr"), "{:.3E}"),
            *[_field(key, metrics.get(key), "{:.3f}") for key in ("reward/total", *terms)],
            *[_field(f"reward/{k}", metrics.get(f"reward/{k}"), "{:.0f}") for k in ("timeouts", "errors")],
            _field("pg loss", metrics.get("loss/pg_loss"), "{:.4E}"),
            _field("grad norm", metrics.get("loss/grad_norm"), "{:.3f}"),
            *[_field(f"{p[:-2]} (s)", metrics.get(f"time/{p}"), "{:.2f}") for p in RL_PHASES]]


def format_line(step: int, total: int, metrics: dict[str, Any], ms_per_iteration: float, mem_gib: float,
                mode: str, now: float | None = None) -> str:
    """One Megatron-style progress line. `metrics` without prefix; `mode` "rl" or another stage (SFT).

    >>> line = format_line(10, 1200, {"consumed_samples": 80, "lr": 1e-4, "loss": 2.345, "grad_norm": 1.2345},
    ...                    812.34, 1.5, "sft", now=0)
    >>> line.split(" | ")
    [' [1970-01-01 00:00:00] iteration   10/1200', 'consumed samples: 80', 'elapsed time per iteration (ms): 812.3', \
'learning rate: 1.000E-04', 'lm loss: 2.345000E+00', 'grad norm: 1.234', 'mem: 1.50 GiB']
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() if now is None else now))
    width = len(str(total))
    parts = [f" [{stamp}] iteration {step:>{width}}/{total:>{width}}" if total else f" [{stamp}] iteration {step}"]
    consumed = "consumed_prompts" if mode == "rl" else "consumed_samples"
    parts.append(_field(consumed.replace("_", " "), metrics.get(consumed), "{:.0f}"))
    parts.append(_field("elapsed time per iteration (ms)", ms_per_iteration, "{:.1f}"))
    if mode == "rl":
        parts += _rl_fields(metrics)
    else:
        parts += [_field(label, metrics.get(name), fmt) for name, label, fmt in SFT_FIELDS]
    parts.append(_field("mem", mem_gib, "{:.2f} GiB"))
    return " | ".join(p for p in parts if p is not None)


def _import_optional(module: str, extra: str, key: str):
    """Import an optional backend, or fail with the way to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{key}=true needs the `{module}` package: pip install 'nemo_vtp[{extra}]' "
                          f"(or pip install {extra}); {err}") from None


class _Wandb:
    def __init__(self, cfg, out_dir: Path, run_config: dict | None):
        wandb = _import_optional("wandb", "wandb", "logging.wandb.enabled")
        self.run = wandb.init(project=cfg.project, name=cfg.name, mode=cfg.mode, dir=str(out_dir),
                              config=run_config)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class _Mlflow:
    def __init__(self, cfg, run_name: str, run_config: dict | None):
        self.mlflow = _import_optional("mlflow", "mlflow", "logging.mlflow.enabled")
        if cfg.tracking_uri:
            self.mlflow.set_tracking_uri(cfg.tracking_uri)
        self.mlflow.set_experiment(cfg.experiment)
        self.mlflow.start_run(run_name=run_name)
        if run_config:
            self.mlflow.log_params(_flatten(run_config))

    def log(self, step: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def _flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}: a nested config as MLflow parameters (strings, at most 6000 chars)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:6000]
    return out


class MetricsLogger:
    """Writes metrics to `<out_dir>/metrics.jsonl`, `<out_dir>/tb`, the console and the enabled
    trackers; a no-op on ranks other than 0.

    `log(step, {"loss": 1.2, ...}, prefix="train")` writes `train/loss`. Non-finite values are
    written to JSONL as null and skipped in TensorBoard and the trackers (never silently turned into
    numbers). A `train` or `rl` record also prints the console line unless the progress bar shows;
    a `val` record prints a validation line.
    """

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, jsonl: bool = True,
                 progress_total: int | None = None, progress_bar: bool = True, desc: str = "train",
                 wandb=None, mlflow=None, run_config: dict | None = None):
        self.enabled = is_rank_zero()
        self.out_dir = Path(out_dir)
        self.total = progress_total or 0
        self.mode = desc
        self._tb = None
        self._jsonl = None
        self._bar = None
        self._trackers: list = []
        self._last_line = (time.perf_counter(), None)  # (time, step) of the previous console line
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.out_dir / "tb"))
        if jsonl:
            self._jsonl = open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8")
        if progress_bar and progress_total and (os.environ.get("NEMO_VTP_PROGRESS") == "1" or sys.stderr.isatty()):
            from tqdm import tqdm

            self._bar = tqdm(total=progress_total, desc=desc, dynamic_ncols=True)
        if wandb is not None and wandb.enabled:
            self._trackers.append(_Wandb(wandb, self.out_dir, run_config))
        if mlflow is not None and mlflow.enabled:
            self._trackers.append(_Mlflow(mlflow, self.out_dir.name, run_config))

    @classmethod
    def for_stage(cls, cfg, total_steps: int, desc: str) -> MetricsLogger:
        """The logger of a training stage from its recipe (`cfg.logging`, `cfg.run`)."""
        lg = cfg.logging
        return cls(cfg.run.output_dir, lg.tensorboard, lg.jsonl, total_steps, lg.progress_bar, desc,
                   lg.wandb, lg.mlflow, cfg.model_dump(mode="json") if lg.wandb.enabled or lg.mlflow.enabled else None)

    def log(self, step: int, metrics: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step, "time": time.time()}
        finite: dict[str, float] = {}
        for name, value in metrics.items():
            key = f"{prefix}/{name}" if prefix else name
            scalar = _scalar(value)
            record[key] = scalar
            if scalar is not None:
                finite[key] = scalar
            if self._tb is not None and scalar is not None:
                self._tb.add_scalar(key, scalar, step)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        for tracker in self._trackers:
            tracker.log(step, finite)
        if self._bar is None:
            self._print(step, metrics, prefix)

    def _print(self, step: int, metrics: dict[str, Any], prefix: str) -> None:
        if prefix == "val":
            loss = _scalar(metrics.get("loss"))
            if loss is not None:
                print(f" validation loss at iteration {step} | lm loss value: {loss:.6E} | "
                      f"lm loss PPL: {math.exp(min(loss, 700.0)):.6E}", flush=True)
            return
        now, (then, last_step) = time.perf_counter(), self._last_line
        if last_step is None or step <= last_step:  # the first line of this process: the step's own time
            seconds = _scalar(metrics.get("step_time_s", metrics.get("time/step_s"))) or now - then
        else:  # wall time since the previous line, per iteration (evaluation and saving included)
            seconds = (now - then) / (step - last_step)
        print(format_line(step, self.total, metrics, 1000.0 * seconds, memory_gib(), self.mode), flush=True)
        self._last_line = (now, step)

    def advance(self, n: int = 1, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
        for tracker in self._trackers:
            tracker.close()
        self._trackers = []


def read_metrics(path: str | Path) -> list[dict]:
    """Read a metrics.jsonl back (for reports, plots and tests)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
