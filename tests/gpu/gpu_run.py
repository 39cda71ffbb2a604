"""Run a GPU worker or a CLI stage in a child process and collect its `RESULT {json}` lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_child(args: list[str], timeout: float, env: dict[str, str] | None = None,
              torchrun: bool = False, nproc: int = 1) -> tuple[list[dict], str]:
    """Run `python ARGS` (or `torchrun --nproc-per-node=NPROC ARGS`) from the repository root.

    Returns (RESULT dicts, combined output). Raises AssertionError with the output tail on a non-zero exit.
    """
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    # The child writes to a file, so that a child killed at its time limit still leaves its log behind.
    with tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
        log.seek(0)
        out = log.read()
    print(out[-6000:])  # visible with -s and in the failure report
    results = [json.loads(line.split("RESULT ", 1)[1]) for line in out.splitlines() if line.startswith("RESULT ")]
    assert rc is not None, f"{' '.join(cmd)} ran past {timeout} s:\n{out[-4000:]}"
    assert rc == 0, f"{' '.join(cmd)} exited {rc}:\n{out[-4000:]}"
    return results, out


def metrics(jsonl: Path, prefix: str = "train") -> list[dict]:
    """The metric records of one run (`<output_dir>/metrics.jsonl`) with the given prefix, in step order."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return [r for r in rows if any(k.startswith(f"{prefix}/") for k in r)]
