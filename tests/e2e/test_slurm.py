"""The sbatch files on a real Slurm: a loopback-only cluster of two CPU nodes (two slurmds on this
host) brought up by scripts/slurm_up.sh (Debian's slurm-wlm and munge), jobs submitted with `sbatch` and
followed with `scontrol show job` under a bounded timeout. A failing test prints the job's log.

Skipped (with the reason) only when the packages are missing and apt cannot reach its registry.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemo_vtp.training.checkpoint_files import TRACKER, step_name
from tests.e2e.stages import console_lines

ROOT = Path(__file__).resolve().parents[2]
JOBS = Path(__file__).resolve().parent / "slurm_jobs"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
APT_UNREACHABLE = 3  # scripts/slurm_up.sh's exit status when apt cannot install the packages

pytestmark = pytest.mark.slow


def _run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    # stdin closed and output captured: the daemons started below never hold a pipe of ours open.
    return subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, **kw)


def _responds(cmd: list[str]) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    try:
        return _run(cmd, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running two-node Slurm; stopped at the end when this session started it."""
    slurm_was_up = _responds(["scontrol", "ping"])
    munge_was_up = _responds(["munge", "-n"])
    up = _run(["bash", str(ROOT / "scripts/slurm_up.sh")], timeout=900)
    if up.returncode == APT_UNREACHABLE:
        pytest.skip(f"Slurm is not installed and apt cannot install it: {up.stderr.strip()}")
    assert up.returncode == 0, f"scripts/slurm_up.sh failed ({up.returncode}):\n{up.stdout}\n{up.stderr}"
    yield
    if not slurm_was_up:
        down = ["bash", str(ROOT / "scripts/slurm_down.sh")] + ([] if munge_was_up else ["--all"])
        _run(down, timeout=120)


class Job:
    """One submitted batch job: its id, log file, and a bounded wait for a state."""

    def __init__(self, job_id: str, log: Path):
        self.id, self.log = job_id, log

    def info(self) -> dict[str, str]:
        out = _run(["scontrol", "show", "job", "-o", self.id]).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else f"(no log at {self.log})"

    def wait(self, states: set[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.info()
            if info.get("JobState") in states:
                return info
            time.sleep(0.5)
        pytest.fail(f"job {self.id} still {info.get('JobState')} after {timeout:.0f} s "
                    f"(waiting for {sorted(states)}); log:\n{self.text()}")

    def wait_log(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text(), re.MULTILINE):
                return
            time.sleep(0.3)
        pytest.fail(f"job {self.id}: no line matching {pattern!r} after {timeout:.0f} s; log:\n{self.text()}")


def _sbatch(script: Path, *args: str, log: Path, sbatch_opts: tuple[str, ...] = (), env: dict | None = None) -> Job:
    """Submit from the checkout's root, as a user does; the job's log goes to `log`."""
    run_env = {**os.environ, "NEMO_VTP_PYTHON": sys.executable, "NEMO_VTP_ROOT": str(ROOT), **(env or {})}
    cmd = ["sbatch", "--parsable", f"--output={log}", *sbatch_opts, str(script), *args]
    out = _run(cmd, cwd=ROOT, env=run_env)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stderr}"
    return Job(out.stdout.strip().split(";")[0], log)


@pytest.fixture
def submit(slurm_cluster, tmp_path):
    """submit(script, *args, sbatch_opts=(), env={}) -> Job; cancels its jobs at the end of the test."""
    jobs: list[Job] = []

    def _submit(script: Path, *args: str, sbatch_opts: tuple[str, ...] = (), env: dict | None = None) -> Job:
        jobs.append(_sbatch(script, *args, log=tmp_path / f"{script.stem}-{len(jobs)}.out", sbatch_opts=sbatch_opts,
                            env=env))
        return jobs[-1]

    yield _submit
    for job in jobs:
        _run(["scancel", job.id])


def _write_batch(tmp_path: Path, name: str, command: str, extra_sbatch: str = "") -> Path:
    """A batch script that goes through slurm/common.sh exactly as slurm/*.sbatch do."""
    script = tmp_path / f"{name}.sbatch"
    script.write_text(
        "#!/bin/bash\n#SBATCH --nodes=1\n#SBATCH --ntasks-per-node=2\n#SBATCH --open-mode=append\n"
        f"{extra_sbatch}set -euo pipefail\n"
        'source "${NEMO_VTP_ROOT:-$SLURM_SUBMIT_DIR}/slurm/common.sh"\n'
        f"{command}\n"
    )
    return script


@pytest.mark.parametrize("launch", ["srun", "torchrun"])
def test_two_task_gloo_allreduce(submit, tmp_path, launch):
    """Both launch modes give 2 ranks a working rendezvous: a gloo all-reduce sums over both."""
    script = _write_batch(tmp_path, "allreduce", f"nemo_vtp_launch {JOBS / 'allreduce.py'}")
    job = submit(script, env={"NEMO_VTP_LAUNCH": launch})
    info = job.wait(TERMINAL, timeout=120)
    log = job.text()
    assert info["JobState"] == "COMPLETED", f"job {job.id} ended {info['JobState']}; log:\n{log}"
    lines = re.findall(r"allreduce rank=(\d) world=(\d) local_rank=(\d) sum=(\S+) expected=(\S+)", log)
    assert sorted(r for r, *_ in lines) == ["0", "1"], log
    for rank, world, local_rank, total, expected in lines:
        assert (world, local_rank, total, expected) == ("2", rank, "3", "3"), log
    assert re.search(rf"2 task\(s\), 0 GPU\(s\)/node, launch={launch}, rendezvous \S+:\d+", log), log


@pytest.mark.parametrize("how, launch", [("usr1", "srun"), ("scontrol_requeue", "srun"), ("usr1", "torchrun")])
def test_preempted_job_is_requeued_and_resumes(submit, tmp_path, how, launch):
    """USR1 (what --signal=USR1@300 sends before the time limit) or an outside `scontrol requeue`
    (SIGTERM): the ranks save the step they finished and exit; the job comes back with
    SLURM_RESTART_COUNT=1 and resumes at the next step, in the same (appended) log. Under torchrun
    the agent must survive USR1 while its workers save."""
    ckpt, total = tmp_path / "ckpt.txt", 8
    script = _write_batch(tmp_path, "preempt", f'nemo_vtp_launch {JOBS / "preempt_loop.py"} "$@"',
                          "#SBATCH --signal=USR1@300\n#SBATCH --requeue\n")
    job = submit(script, str(ckpt), str(total), "0.5", env={"NEMO_VTP_LAUNCH": launch})
    job.wait_log(r"^step 1 rank=0$", timeout=60)
    if how == "usr1":
        cmd = ["scancel", "--signal=USR1", job.id]
    else:
        cmd = ["scontrol", "requeue", job.id]
    assert _run(cmd).returncode == 0
    job.wait_log(r"^saved step=\d+", timeout=30)
    info = job.wait(TERMINAL, timeout=120)
    log = job.text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}; log:\n{log}"

    saved = {int(s) for s in re.findall(r"^saved step=(\d+) signal=SIG(?:USR1|TERM) rank=\d", log, re.MULTILINE)}
    assert len(saved) == 1, log
    stopped_at = saved.pop()
    assert 1 <= stopped_at < total - 1, log
    resumed = re.findall(r"^resume step=(\d+) restart=(\d+) rank=\d", log, re.MULTILINE)
    assert sorted(resumed) == sorted([("0", "0")] * 2 + [(str(stopped_at + 1), "1")] * 2), log
    # Every step ran exactly once per rank: nothing lost, nothing repeated across the requeue.
    for rank in ("0", "1"):
        steps = [int(s) for s in re.findall(rf"^step (\d+) rank={rank}$", log, re.MULTILINE)]
        assert steps == list(range(total)), f"rank {rank} ran steps {steps}; log:\n{log}"
    assert ckpt.read_text().strip() == str(total - 1)
    if how == "usr1":
        assert "stopped early by USR1: requeueing" in log, log


def test_sbatch_without_recipe_fails_with_usage(submit):
    """A job submitted without its recipe fails at once with a usage line, not deep in python."""
    job = submit(ROOT / "slurm/sft.sbatch", sbatch_opts=("--gpus-per-node=0", "--ntasks-per-node=1"))
    info = job.wait(TERMINAL, timeout=60)
    assert info["JobState"] == "FAILED", job.text()
    assert "usage: sbatch slurm/sft.sbatch" in job.text()


def test_shellcheck_passes_on_every_script(request):
    if shutil.which("shellcheck") is None:
        request.getfixturevalue("slurm_cluster")  # scripts/slurm_up.sh installs shellcheck with the cluster
    files = sorted({*ROOT.glob("slurm/*.sh"), *ROOT.glob("slurm/*.sbatch"), *ROOT.glob("scripts/*.sh"),
                    ROOT / ".ci/run"})
    out = _run(["shellcheck", "-x", *map(str, files)], cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_eval_sbatch_two_ranks_equal_a_single_process(submit, tmp_path):
    """slurm/eval.sbatch as a user submits it (CPU mode, 2 ranks), scoring saved responses: each
    rank scores its shard and the summary equals the one a single process writes on a laptop."""
    fixture = ROOT / "tests/fixtures/eval/mathvista"
    recipe = "recipes/eval/eval-qwen25vl-7b-mathvista-1n8g-dp8.yaml"
    overrides = [f"eval.data_dir={fixture}", f"eval.responses_file={fixture / 'responses.jsonl'}",
                 "eval.batch_size=2", "logging.progress_bar=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE") and not k.startswith("SLURM_")}
    laptop = _run([sys.executable, "-m", "nemo_vtp.cli", "eval", recipe, *overrides,
                   f"eval.output_dir={tmp_path / 'laptop'}"], cwd=ROOT, env=env, timeout=300)
    assert laptop.returncode == 0, laptop.stdout + laptop.stderr

    job = submit(ROOT / "slurm/eval.sbatch", recipe, *overrides, f"eval.output_dir={tmp_path / 'slurm'}",
                 sbatch_opts=("--gpus-per-node=0", "--ntasks-per-node=2"))
    info = job.wait(TERMINAL, timeout=300)
    log = job.text()
    assert info["JobState"] == "COMPLETED", f"job {job.id} ended {info['JobState']}; log:\n{log}"
    assert "eval rank 0/2" in log and "eval rank 1/2" in log, log
    assert sorted(p.name for p in (tmp_path / "slurm").glob("samples.rank*.jsonl")) == [
        "samples.rank0.jsonl", "samples.rank1.jsonl"]
    on_slurm = json.loads((tmp_path / "slurm/summary.json").read_text())
    on_laptop = json.loads((tmp_path / "laptop/summary.json").read_text())
    assert on_slurm["overall"] == on_laptop["overall"] and on_slurm["groups"] == on_laptop["groups"], log
    assert on_slurm["overall"]["n"] > 0


@functools.cache
def _sft_missing_reason() -> str | None:
    """Why `nemo-vtp sft` cannot start in this checkout, or None when it can."""
    out = _run([sys.executable, "-c", "import nemo_vtp.sft"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = out.stderr.strip().splitlines()
    if out.returncode and lines and lines[-1].startswith("ModuleNotFoundError: No module named 'nemo_vtp."):
        return f"the SFT stage is not complete in this checkout: {lines[-1]}"
    return None


CPU_TWO_RANKS = ("--gpus-per-node=0", "--ntasks-per-node=2")


def _steps_logged(out: Path, key: str) -> list[int]:
    """Steps of metrics.jsonl records that carry `key` (one per training step)."""
    path = out / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r["step"] for r in records if r.get(key) is not None]


def _preempt_once(job: Job, out: Path, key: str, after_step: int,
                  how: tuple[str, ...] = ("scancel", "--signal=USR1")) -> tuple[dict[str, str], str]:
    """Run `how JOBID` (default: send USR1) once step `after_step` is in metrics.jsonl; wait for
    the end -> (job info, log)."""
    deadline = time.monotonic() + 600
    while not any(s >= after_step for s in _steps_logged(out, key)):
        if time.monotonic() > deadline or job.info().get("JobState") in TERMINAL:
            pytest.fail(f"job {job.id} never reached step {after_step}; log:\n{job.text()}")
        time.sleep(0.3)
    assert _run([*how, job.id]).returncode == 0
    return job.wait(TERMINAL, timeout=600), job.text()


def _assert_resumed_once(info: dict[str, str], log: str, out: Path, key: str, steps: int, unit: str,
                         usr1: bool = True) -> None:
    """Requeued once (by the job itself after a USR1, else by Slurm); every rank stopped after the
    same step and the second run resumed there; each step trained exactly once; the last checkpoint
    is complete, for both ranks."""
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}; log:\n{log}"
    assert ("stopped early by USR1: requeueing" in log) == usr1, log
    stopped = re.findall(rf"stopping at {unit} (\d+)", log)
    resumed = re.findall(rf"resumed from \S+ at {unit} (\d+)", log)
    assert len(set(stopped)) == 1 and set(resumed) == set(stopped), log  # every rank logs both lines
    assert 1 <= int(stopped[0]) < steps, log
    assert _steps_logged(out, key) == list(range(1, steps + 1)), log
    assert (out / "checkpoints" / TRACKER).read_text() == str(steps)
    ckpt = out / "checkpoints" / step_name(steps)
    trainer = json.loads((ckpt / "trainer_state.json").read_text())
    assert trainer["step"] == steps and trainer["world_layout"]["world_size"] == 2, trainer
    assert any(ckpt.glob("*.distcp")), sorted(p.name for p in ckpt.iterdir())
    assert any((out / "tb").iterdir())


@pytest.fixture(scope="module")
def slurm_sft(slurm_cluster, tmp_path_factory):
    """`sbatch slurm/sft.sbatch recipes/tiny/sft.yaml`, CPU mode, 2 ranks, sent USR1 after step 2.
    -> (job info, log, output dir, steps); its checkpoint also starts the RL test."""
    reason = _sft_missing_reason()
    if reason:
        pytest.skip(reason)
    out, steps = tmp_path_factory.mktemp("tiny_sft") / "run", 10
    overrides = [f"run.output_dir={out}", f"training.train_steps={steps}", "training.eval_interval=0",
                 "checkpoint.save_interval=0", "logging.progress_bar=false", "data.synth.num=128"]
    job = _sbatch(ROOT / "slurm/sft.sbatch", "recipes/tiny/sft.yaml", *overrides, log=out.parent / "sft.out",
                  sbatch_opts=CPU_TWO_RANKS)
    try:
        info, log = _preempt_once(job, out, "train/loss", after_step=2)
    finally:
        _run(["scancel", job.id])
    return info, log, out, steps


def test_sft_sbatch_two_ranks_preempted_by_usr1_resumes_and_finishes(slurm_sft):
    """The tiny SFT job, sent USR1 mid-run: every rank stops after the same step with a checkpoint,
    the job is requeued, the second run resumes from that checkpoint, trains each remaining step
    exactly once and ends with a complete checkpoint and one finite loss per step."""
    info, log, out, steps = slurm_sft
    _assert_resumed_once(info, log, out, "train/loss", steps, unit="step")
    assert f"nemo-vtp sft done: step {steps}/{steps}" in log, log
    # the job log shows progress as it goes: one iteration line per step, over both runs of the job
    assert sorted(int(x["iteration"]) for x in console_lines(log)) == list(range(1, steps + 1)), log
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if r.get("train/loss") is not None]
    assert all(0 < v < 100 for v in losses), losses


def _tiny_rl_overrides(sft_out: Path, sft_steps: int, out: Path, steps: int) -> list[str]:
    """The tiny RL run from an SFT job's last checkpoint and data, with small rollouts."""
    return [f"checkpoint.load={sft_out}/checkpoints/{step_name(sft_steps)}",
            f"data.train_path={sft_out}/data/train.jsonl", f"run.output_dir={out}", "logging.progress_bar=false",
            f"rl.rollout_steps={steps}", "rl.num_prompts=2", "generation.sampling.n=4", "rl.mini_batch_size=8",
            "rl.micro_batch_size=4", "rl.dynamic_sampling.enabled=false", "generation.sampling.max_new_tokens=24",
            "rewards.overlong_cache_tokens=8", "checkpoint.save_interval=0"]


def test_rl_sbatch_two_ranks_from_the_sft_checkpoint_preempted_and_resumed(slurm_sft, submit, tmp_path):
    """`sbatch slurm/rl.sbatch recipes/tiny/rl.yaml` from the SFT job's checkpoint and data, CPU
    mode, 2 ranks, small rollouts; USR1 after the first rollout step: it is requeued, resumes and
    ends with every rollout step logged once and a complete checkpoint."""
    _, _, sft_out, sft_steps = slurm_sft
    out, steps = tmp_path / "rl", 6
    overrides = _tiny_rl_overrides(sft_out, sft_steps, out, steps)
    job = submit(ROOT / "slurm/rl.sbatch", "recipes/tiny/rl.yaml", *overrides, sbatch_opts=CPU_TWO_RANKS)
    info, log = _preempt_once(job, out, "rl/reward/total", after_step=1)
    _assert_resumed_once(info, log, out, "rl/reward/total", steps, unit="rollout step")
    assert f"nemo-vtp rl done: step {steps}/{steps}" in log, log
    assert sorted(int(x["iteration"]) for x in console_lines(log)) == list(range(1, steps + 1)), log


def test_convert_sbatch_exports_the_sft_checkpoint_and_verifies_it(slurm_sft, submit, tmp_path):
    """slurm/convert.sbatch: the SFT job's checkpoint -> an HF folder, then (a second job that
    waits on the first with --dependency=afterok) the logit check between the two passes."""
    _, _, sft_out, sft_steps = slurm_sft
    ckpt, hf = sft_out / "checkpoints" / step_name(sft_steps), tmp_path / "hf"
    export = submit(ROOT / "slurm/convert.sbatch", "megatron-to-hf", "--ckpt", str(ckpt), "--out", str(hf))
    verify = submit(ROOT / "slurm/convert.sbatch", "verify", "--hf-dir", str(hf), "--ckpt", str(ckpt),
                    sbatch_opts=(f"--dependency=afterok:{export.id}",))
    for job in (export, verify):
        info = job.wait(TERMINAL, timeout=300)
        assert info["JobState"] == "COMPLETED", f"job {job.id} ended {info['JobState']}; log:\n{job.text()}"
    assert (hf / "config.json").is_file() and any(hf.glob("*.safetensors"))
    assert re.search(r"^OK: max \|diff\| \S+ <= tolerance", verify.text(), re.MULTILINE), verify.text()
    assert "1 node(s) (" in verify.text() and ", 1 task(s)," in verify.text()


def _judge_step(job: Job) -> str | None:
    """The id (JOB.STEP) of the job's running judge step, or None."""
    out = _run(["squeue", "-h", "-s", "-j", job.id, "-o", "%i %j"]).stdout
    return next((line.split()[0] for line in out.splitlines() if line.endswith(" nemo-vtp-judge")), None)


def _metric(out: Path, key: str) -> dict[int, float]:
    path = out / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {r["step"]: r[key] for r in records if r.get(key) is not None}


def test_rl_sbatch_with_a_judge_server_that_is_killed_mid_run(submit, tmp_path, tiny_world, tiny_init, tiny_sft):
    """slurm/rl.sbatch with NEMO_VTP_JUDGE_MODEL starts `nemo-vtp serve` (a tiny random model) as the
    judge step and points the ranks at it (the policy: the e2e SFT checkpoint, which writes the tags the
    judge is asked about); the judge step is cancelled after step 2. The run finishes
    every step: requests reach the judge while it lives (its replies, from a random model, fail to parse:
    judge_failures > 0, judge_unreachable = 0), and afterwards fall back to the rule matcher as
    unreachable, counted in reward/judge_unreachable."""
    out, steps = tmp_path / "rl", 6
    overrides = [f"checkpoint.load={tiny_sft}", f"data.train_path={tiny_world / 'train.jsonl'}",
                 f"run.output_dir={out}", "logging.progress_bar=false", f"rl.rollout_steps={steps}",
                 "rl.num_prompts=2", "generation.sampling.n=4", "rl.mini_batch_size=8", "rl.micro_batch_size=4",
                 "rl.dynamic_sampling.enabled=false", "generation.sampling.max_new_tokens=96",
                 "rewards.overlong_cache_tokens=16", "checkpoint.save_interval=0", "rewards.matcher=judge",
                 "rewards.judge.base_url=${oc.env:NEMO_VTP_JUDGE_URL}", "rewards.judge.model=judge",
                 # One CPU judge behind a lock serves both ranks: a generous deadline, no retries of its
                 # (always unparsable) replies, few requests in flight, so that it is never late while it lives.
                 "rewards.judge.max_tokens=8", "rewards.judge.timeout_s=120", "rewards.judge.max_retries=0",
                 "rewards.judge.max_concurrency=2"]
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    env = {"NEMO_VTP_JUDGE_MODEL": str(tiny_init.parent / "hf"), "NEMO_VTP_JUDGE_SERVER": "nemo-vtp",
           "NEMO_VTP_JUDGE_PORT": str(port), "NEMO_VTP_JUDGE_START_TIMEOUT": "300"}
    job = submit(ROOT / "slurm/rl.sbatch", "recipes/tiny/rl.yaml", *overrides, sbatch_opts=CPU_TWO_RANKS, env=env)
    deadline = time.monotonic() + 600
    while not any(s >= 2 for s in _steps_logged(out, "rl/reward/total")):
        if time.monotonic() > deadline or job.info().get("JobState") in TERMINAL:
            pytest.fail(f"job {job.id} never reached step 2; log:\n{job.text()}")
        time.sleep(0.3)
    step = _judge_step(job)
    assert step is not None, _run(["squeue", "-s", "-j", job.id]).stdout + job.text()
    assert _run(["scancel", step]).returncode == 0
    info = job.wait(TERMINAL, timeout=600)
    log = job.text()
    assert info["JobState"] == "COMPLETED", f"job {job.id} ended {info['JobState']}; log:\n{log}"
    assert f"judge: healthy at http://127.0.0.1:{port} (served as 'judge')" in log, log
    assert f"nemo-vtp rl done: step {steps}/{steps}" in log, log
    unreachable, failures = _metric(out, "rl/reward/judge_unreachable"), _metric(out, "rl/reward/judge_failures")
    assert sorted(unreachable) == list(range(1, steps + 1)), log
    assert unreachable[1] == unreachable[2] == 0 and failures[1] + failures[2] > 0, (unreachable, failures)
    assert unreachable[steps] > 0 and unreachable[steps] == failures[steps], (unreachable, failures)
    assert all(math.isfinite(v) for v in _metric(out, "rl/reward/total").values())


# Two nodes: scripts/slurm_up.sh runs two slurmds on this host (nodes HOST-1 and HOST-2); one rank each.
CPU_TWO_NODES = ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0")


def _ranks_per_run(log: str) -> list[dict[int, str]]:
    """For each start of the job (first run, then each requeue): rank -> the Slurm node it ran on,
    from the lines slurm/rank.sh prints."""
    runs = re.split(r"^\[nemo_vtp/slurm [\d:]+\] job \d+ restart \d+:", log, flags=re.MULTILINE)[1:]
    return [{int(r): node for r, node in re.findall(r"\] rank (\d+)/\d+ \(local rank \d+\) on node (\S+)$", run,
                                                    re.MULTILINE)} for run in runs]


def _assert_two_nodes(info: dict[str, str], log: str) -> None:
    """Both starts of the job ran ranks 0 and 1 on its two different nodes."""
    nodes = _run(["scontrol", "show", "hostnames", info["NodeList"]]).stdout.split()
    assert info["NumNodes"] == "2" and len(set(nodes)) == 2, info
    runs = _ranks_per_run(log)
    assert len(runs) == 2, log
    for ranks in runs:
        assert sorted(ranks) == [0, 1] and sorted(ranks.values()) == sorted(nodes), (ranks, nodes, log)
    assert "2 node(s) (" in log, log


@pytest.fixture(scope="module")
def slurm_sft_two_nodes(slurm_sft, tmp_path_factory):
    """`sbatch --nodes=2 slurm/sft.sbatch recipes/tiny/sft.yaml`, one rank per node, each node's torchrun
    meeting the other at the c10d rendezvous; `scontrol requeue` (SIGTERM) after step 2.
    The recipe and data are those of `slurm_sft` (2 ranks on one node), with fewer steps, all within
    the LR warmup, so the learning rate of a step does not depend on the run's length.
    -> (job info, log, output dir, steps)."""
    out, steps = tmp_path_factory.mktemp("tiny_sft_2n") / "run", 5
    overrides = [f"run.output_dir={out}", f"training.train_steps={steps}", "training.eval_interval=0",
                 "checkpoint.save_interval=0", "logging.progress_bar=false", "data.synth.num=128"]
    job = _sbatch(ROOT / "slurm/sft.sbatch", "recipes/tiny/sft.yaml", *overrides, log=out.parent / "sft.out",
                  sbatch_opts=CPU_TWO_NODES, env={"NEMO_VTP_LAUNCH": "torchrun"})
    try:
        info, log = _preempt_once(job, out, "train/loss", after_step=2, how=("scontrol", "requeue"))
    finally:
        _run(["scancel", job.id])
    return info, log, out, steps


def test_sft_sbatch_on_two_nodes_requeued_resumes_on_the_same_loss_curve(slurm_sft, slurm_sft_two_nodes):
    """The tiny SFT on a two-node allocation under torchrun (rank 0 and rank 1 on different Slurm
    nodes, gloo across them), requeued by `scontrol requeue` mid-run: Slurm brings it back, it resumes
    from its checkpoint, trains each remaining step once, and every step's loss equals the loss of the
    same step of the single-node run (same data, DP 2, same learning rate): one loss curve."""
    info, log, out, steps = slurm_sft_two_nodes
    _assert_resumed_once(info, log, out, "train/loss", steps, unit="step", usr1=False)
    _assert_two_nodes(info, log)
    assert "launch=torchrun" in log and f"nemo-vtp sft done: step {steps}/{steps}" in log, log
    two_nodes, one_node = _metric(out, "train/loss"), _metric(slurm_sft[2], "train/loss")
    assert sorted(two_nodes) == list(range(1, steps + 1)), two_nodes
    for step, loss in two_nodes.items():
        assert loss == pytest.approx(one_node[step], rel=1e-6), (step, two_nodes, one_node)


def test_rl_sbatch_on_two_nodes_from_the_two_node_sft_requeued_and_resumed(slurm_sft_two_nodes, submit, tmp_path):
    """`sbatch --nodes=2 slurm/rl.sbatch recipes/tiny/rl.yaml` from the two-node SFT checkpoint, one rank
    per node launched by srun; `scontrol requeue` after the first rollout step: Slurm requeues it, it
    resumes and ends with every rollout step logged once and a complete checkpoint."""
    _, _, sft_out, sft_steps = slurm_sft_two_nodes
    out, steps = tmp_path / "rl", 3
    overrides = _tiny_rl_overrides(sft_out, sft_steps, out, steps)
    job = submit(ROOT / "slurm/rl.sbatch", "recipes/tiny/rl.yaml", *overrides, sbatch_opts=CPU_TWO_NODES)
    info, log = _preempt_once(job, out, "rl/reward/total", after_step=1, how=("scontrol", "requeue"))
    _assert_resumed_once(info, log, out, "rl/reward/total", steps, unit="rollout step", usr1=False)
    _assert_two_nodes(info, log)
    assert "launch=srun" in log and f"nemo-vtp rl done: step {steps}/{steps}" in log, log
