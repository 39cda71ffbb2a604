"""Helpers of the stage tests: run `nemo-vtp` as a real process (or under torchrun), read metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY_SFT = ROOT / "recipes" / "tiny" / "sft.yaml"
TINY_RL = ROOT / "recipes" / "tiny" / "rl.yaml"

# Small and fast: a 300-sample world, short sequences, few steps.
FAST_SFT = ["data.synth.num=300", "training.global_batch_size=8", "training.micro_batch_size=4",
            "training.eval_batches=1", "logging.progress_bar=false"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(stage: str, recipe: Path, overrides: list[str], nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "nemo_vtp.cli", stage, str(recipe), *overrides]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
            "127.0.0.1", "--master-port", str(_free_port()), "-m", "nemo_vtp.cli", stage, str(recipe), *overrides]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    out.setdefault("OMP_NUM_THREADS", "1")
    return out


def run(stage: str, recipe: Path, overrides: list[str], nproc: int = 1, timeout: int = 600,
        expect: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(stage, recipe, overrides, nproc), env=env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != expect:
        raise AssertionError(f"nemo-vtp {stage} exited {proc.returncode} (expected {expect}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def metrics(run_dir: Path, key: str) -> dict[int, float]:
    """{step: value} of one metric; a step logged twice (a resumed run) keeps its last value."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get(key) is not None:
            out[row["step"]] = row[key]
    return out


def console_lines(stdout: str) -> list[dict[str, str]]:
    """The Megatron-style progress lines of a run's stdout, one dict per line: "iteration", "total",
    "time" and every `label: value` field as text."""
    out = []
    for line in stdout.splitlines():
        match = re.match(r" \[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] iteration +(\d+)/ *(\d+)((?: \| [^|:]+: [^|]+)*)$", line)
        if match:
            fields = dict(f.split(": ", 1) for f in match.group(4).split(" | ")[1:])
            out.append({"time": match.group(1), "iteration": match.group(2), "total": match.group(3), **fields})
    return out


def start_serve_process(model_dir, *extra: str, environ: dict[str, str] | None = None) -> subprocess.Popen:
    """`nemo-vtp serve --model MODEL_DIR --port 0 [EXTRA...]` as a user starts it (in `environ`, default: ours);
    its first stdout line names the address.

    A shell starts background jobs with SIGINT ignored and Python keeps an ignored SIGINT: the server gets
    the terminal's default, so that Ctrl-C (SIGINT) stops it also when the suite runs in the background."""
    return subprocess.Popen([sys.executable, "-m", "nemo_vtp.cli", "serve", "--model", str(model_dir), "--port", "0",
                             *extra], env=environ, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
