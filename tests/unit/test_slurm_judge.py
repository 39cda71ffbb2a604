"""slurm/common.sh's judge node without a cluster: fake `scontrol` and `srun` on PATH record what the
launcher asks for. With two nodes the judge step (vLLM) takes the last node whole and the trainers'
step is kept off it; the real single-node run is in tests/e2e/test_slurm.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] && printf 'gpu-a\\nlocalhost\\n'
"""
# Records its arguments; as the judge step it answers GET /health on the requested port instead.
FAKE_SRUN = """#!/bin/bash
printf '%s\\n' "$(printf '%s\\x1f' "$@")" >> "$FAKE_SRUN_LOG"
case " $* " in
  *" --job-name=nemo-vtp-judge "*)
    port=$(printf '%s\\n' "$@" | grep -A1 -x -- --port | tail -n 1)
    exec "$FAKE_PYTHON" -c '
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$port" ;;
esac
"""


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


@pytest.mark.parametrize("launch", ["srun", "torchrun"])
def test_two_node_job_gives_the_judge_the_last_node(tmp_path, launch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    port, log = _free_port(), tmp_path / "srun.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "NEMO_VTP_", "MASTER_"))}
    env.update({"PATH": f"{bin_dir}:{env['PATH']}", "FAKE_SRUN_LOG": str(log), "FAKE_PYTHON": sys.executable,
                "SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "gpu-a,localhost", "SLURM_JOB_NUM_NODES": "2",
                "SLURM_NTASKS_PER_NODE": "8", "SLURM_GPUS_ON_NODE": "8", "SLURM_CPUS_ON_NODE": "96",
                "NEMO_VTP_ROOT": str(ROOT), "NEMO_VTP_PYTHON": sys.executable, "NEMO_VTP_LAUNCH": launch,
                "NEMO_VTP_JUDGE_MODEL": "/models/judge-7b", "NEMO_VTP_JUDGE_PORT": str(port),
                "NEMO_VTP_REQUEUE_FLAG": str(tmp_path / "requeue")})
    script = ('source slurm/common.sh; nemo_vtp_start_judge; trap nemo_vtp_stop_judge EXIT; '
              'echo "url=$NEMO_VTP_JUDGE_URL exclude=$NEMO_VTP_TRAIN_EXCLUDE"; nemo_vtp_run rl recipe.yaml')
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"url=http://localhost:{port} exclude=localhost" in out.stdout, out.stdout
    judge, train = [line.rstrip("\x1f").split("\x1f") for line in log.read_text().splitlines()]
    assert {"--nodelist=localhost", "--exclusive", "--cpus-per-task=96", "--mem=0"} <= set(judge), judge
    command = judge[judge.index(sys.executable):]
    assert command[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"], command
    flags = dict(zip(command[3::2], command[4::2]))
    assert flags == {"--model": "/models/judge-7b", "--served-model-name": "judge", "--host": "0.0.0.0",
                     "--port": str(port), "--tensor-parallel-size": "8"}, json.dumps(command)
    assert "--exclude=localhost" in train, train
    if launch == "srun":  # one task per GPU of the one training node
        assert {"--nodes=1", "--ntasks=8"} <= set(train), train
    else:  # one torchrun agent on the one training node
        assert "--ntasks=1" in train[train.index("--ntasks=8") + 1:], train  # the later option wins
        assert "--nnodes=1" in train and "--nproc-per-node=8" in train, train
