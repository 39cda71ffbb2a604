"""Resume after a crash during a save, and after a torn checkpoint, with the real `nemo-vtp sft`: the run
takes the newest intact step folder and continues on the loss curve of an uninterrupted run. A fresh
start over an existing run's step folders is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from nemo_vtp.training.checkpoint_files import TRACKER
from tests.e2e.stages import FAST_SFT, ROOT, TINY_SFT, env, metrics, run

STEPS = ["training.train_steps=5", "training.eval_interval=0", "checkpoint.save_interval=2"]
KILLER = ROOT / "tests" / "e2e" / "kill_during_save.py"


def _args(out, world, init, *extra):
    return [f"run.output_dir={out}", f"data.train_path={world / 'train.jsonl'}", f"data.val_path={world / 'val.jsonl'}",
            f"checkpoint.load={init}", *FAST_SFT, *STEPS, *extra]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tiny_world, tiny_init):
    """The output folder of 5 uninterrupted steps (checkpoints at steps 2 and 4)."""
    out = tmp_path_factory.mktemp("straight")
    run("sft", TINY_SFT, _args(out, tiny_world, tiny_init))
    return out


@pytest.fixture(scope="module")
def straight(straight_run):
    """The losses of the uninterrupted run."""
    return metrics(straight_run, "train/loss")


@pytest.mark.parametrize("point, left, resumed", [
    ("shards", ".tmp-iter_0000004", "iter_0000002"),  # shards written, no trainer state yet
    ("before_rename", ".tmp-iter_0000004", "iter_0000002"),  # complete and flushed, not renamed
    ("before_tracker", "iter_0000004", "iter_0000004"),  # renamed, the tracker still names step 2
])
def test_kill_during_save_resumes_the_newest_intact_step(tmp_path, tiny_world, tiny_init, straight, point, left,
                                                         resumed):
    killed = subprocess.run([sys.executable, str(KILLER), point, "iter_0000004", "sft", str(TINY_SFT),
                             *_args(tmp_path, tiny_world, tiny_init)], env=env(), cwd=ROOT, capture_output=True,
                            text=True, timeout=600, start_new_session=True)
    assert killed.returncode == -9, killed.stderr[-3000:]
    ckpt = tmp_path / "checkpoints"
    assert (ckpt / left).is_dir() and (ckpt / TRACKER).read_text() == "2"
    again = run("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init))
    assert f"resumed from {ckpt / resumed} at step {int(resumed[-7:])}" in again.stderr
    assert metrics(tmp_path, "train/loss") == pytest.approx(straight, abs=1e-6)
    assert (ckpt / TRACKER).read_text() == "5" and not list(ckpt.glob(".tmp-*"))


def test_torn_newest_step_falls_back_and_continues_the_curve(tmp_path, tiny_world, tiny_init, straight):
    run("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init, "training.exit_after_steps=4"))
    shard = sorted((tmp_path / "checkpoints" / "iter_0000004").glob("*.distcp"))[-1]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 3)
    again = run("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init))
    assert f"{shard} is truncated" in again.stderr
    assert "falling back to the previous intact step iter_0000002" in again.stderr
    assert f"resumed from {tmp_path / 'checkpoints' / 'iter_0000002'} at step 2" in again.stderr
    assert metrics(tmp_path, "train/loss") == pytest.approx(straight, abs=1e-6)


def test_run_saved_with_old_step_names_resumes_and_saves_on_with_new_ones(tmp_path, tiny_world, tiny_init, straight):
    """A run saved before the Megatron-LM names (step_<N> folders, `latest`) continues the same curve."""
    run("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init, "training.exit_after_steps=4"))
    ckpt = tmp_path / "checkpoints"
    for folder in ckpt.glob("iter_*"):
        folder.rename(ckpt / folder.name.replace("iter_", "step_"))
    (ckpt / TRACKER).unlink()
    (ckpt / "latest").write_text("step_0000004")
    again = run("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init))
    assert f"resumed from {ckpt / 'step_0000004'} at step 4" in again.stderr
    assert metrics(tmp_path, "train/loss") == pytest.approx(straight, abs=1e-6)
    assert sorted(p.name for p in ckpt.iterdir()) == ["iter_0000005", TRACKER, "step_0000004"]  # keep_last: 2
    assert (ckpt / TRACKER).read_text() == "5"


def test_fresh_start_over_a_run_is_refused(straight_run, tiny_world, tiny_init):
    ckpt = straight_run / "checkpoints"
    before = {p: p.stat().st_mtime_ns for p in ckpt.rglob("*")}
    refused = run("sft", TINY_SFT, _args(straight_run, tiny_world, tiny_init, "checkpoint.resume=false"), expect=2)
    assert f"{ckpt} already holds iter_0000005, iter_0000004 and checkpoint.resume=false" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in ckpt.rglob("*")} == before


def test_no_usable_step_stops_before_training(tmp_path, straight_run, tiny_world, tiny_init):
    ckpt = shutil.copytree(straight_run / "checkpoints", tmp_path / "checkpoints")
    for step in ckpt.glob("iter_*"):
        (step / "trainer_state.json").write_text("{")
    refused = run("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init), expect=2)
    assert f"{ckpt} holds step folders but none can be resumed" in refused.stderr
    assert "iter_0000005: " in refused.stderr and "iter_0000004: " in refused.stderr
    assert not (tmp_path / "metrics.jsonl").exists() and sorted(p.name for p in ckpt.iterdir()) == [
        "iter_0000004", "iter_0000005", TRACKER]
