"""Stage I end to end on CPU: the loss falls, TP=2 and PP=2 equal TP=1, SIGKILL + resume continues the
same loss curve, SIGTERM leaves a complete checkpoint, bad input fails before the first step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from nemo_vtp.training.checkpoint_files import TRACKER, step_name
from tests.e2e.stages import FAST_SFT, ROOT, TINY_SFT, command, console_lines, env, metrics, run


def _args(tmp, world, init, *extra):
    return [f"run.output_dir={tmp}", f"data.train_path={world / 'train.jsonl'}", f"data.val_path={world / 'val.jsonl'}",
            f"checkpoint.load={init}", *FAST_SFT, *extra]


def test_loss_falls_and_val_loss_logged(tmp_path, tiny_world, tiny_init):
    proc = run("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init, "training.train_steps=40",
                                      "training.eval_interval=20", "logging.progress_bar=true"))
    loss = metrics(tmp_path, "train/loss")
    assert len(loss) == 40
    # stdout is a pipe, as in a batch job: one flushed line per step and no progress bar
    lines = console_lines(proc.stdout)
    assert [int(x["iteration"]) for x in lines] == list(range(1, 41)) and {x["total"] for x in lines} == {"40"}
    for step, line in enumerate(lines, start=1):
        assert float(line["lm loss"]) == pytest.approx(loss[step], rel=1e-5)
        assert int(line["consumed samples"]) == 8 * step
        assert float(line["elapsed time per iteration (ms)"]) > 0 and float(line["tokens/s"]) > 0
        assert float(line["learning rate"]) > 0 and float(line["grad norm"]) > 0
        assert float(line["mem"].removesuffix(" GiB")) > 0
    assert proc.stdout.count(" validation loss at iteration ") == 2
    assert "it/s]" not in proc.stderr and "\r" not in proc.stderr
    first, last = sum(loss[s] for s in range(1, 4)) / 3, sum(loss[s] for s in range(38, 41)) / 3
    assert last < 0.6 * first, (first, last)
    assert set(metrics(tmp_path, "val/loss")) == {20, 40}
    assert (tmp_path / "config.resolved.yaml").is_file()
    assert any((tmp_path / "tb").iterdir())
    assert (tmp_path / "checkpoints" / TRACKER).read_text() == "40"


@pytest.mark.parametrize("layout", [["parallel.tensor_model_parallel_size=2"],
                                    ["parallel.pipeline_model_parallel_size=2"]], ids=["tp2", "pp2"])
def test_parallel_layouts_match_tp1(tmp_path, tiny_world, tiny_init, layout):
    steps = ["training.train_steps=3", "training.eval_interval=0"]
    run("sft", TINY_SFT, _args(tmp_path / "tp1", tiny_world, tiny_init, *steps))
    run("sft", TINY_SFT, _args(tmp_path / "par", tiny_world, tiny_init, *steps, *layout), nproc=2)
    reference, parallel = metrics(tmp_path / "tp1", "train/loss"), metrics(tmp_path / "par", "train/loss")
    assert sorted(parallel) == [1, 2, 3]
    for step in reference:
        assert parallel[step] == pytest.approx(reference[step], abs=1e-5, rel=0), step


def _wait_for(predicate, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode}): {proc.stderr.read()[-4000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("timed out waiting for the run")


def test_sigkill_then_resume_gives_the_same_losses(tmp_path, tiny_world, tiny_init):
    steps = ["training.train_steps=8", "training.eval_interval=0", "checkpoint.save_interval=3"]
    run("sft", TINY_SFT, _args(tmp_path / "straight", tiny_world, tiny_init, *steps))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command("sft", TINY_SFT, _args(killed, tiny_world, tiny_init, *steps)), env=env(),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    tracker = killed / "checkpoints" / TRACKER
    _wait_for(lambda: tracker.is_file() and tracker.read_text() == "3", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job, helper processes included, as a scheduler would
    proc.wait()
    run("sft", TINY_SFT, _args(killed, tiny_world, tiny_init, *steps))
    assert metrics(killed, "train/loss") == pytest.approx(metrics(tmp_path / "straight", "train/loss"), abs=1e-6)


def test_sigterm_leaves_a_complete_checkpoint(tmp_path, tiny_world, tiny_init):
    proc = subprocess.Popen(command("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init, "training.train_steps=500",
                                                           "training.eval_interval=0")),
                            env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics_file = tmp_path / "metrics.jsonl"
    _wait_for(lambda: metrics_file.is_file() and len(metrics_file.read_text().splitlines()) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    step_dir = tmp_path / "checkpoints" / step_name(int((tmp_path / "checkpoints" / TRACKER).read_text()))
    state = json.loads((step_dir / "trainer_state.json").read_text())
    assert (step_dir / "metadata.json").is_file() and (step_dir / "rng" / "rank_00000.pt").is_file()
    assert state["step"] == max(metrics(tmp_path, "train/loss")) < 500
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def _other_model_config(tmp_path):
    """An HF config.json of a different (narrower MLP) model than the checkpoint's."""
    from nemo_vtp.data.tokenizer import load_tokenizer, special_token_ids
    from nemo_vtp.models.qwen25_vl.config import preset

    arch = preset("tiny", **special_token_ids(load_tokenizer())).replace(intermediate_size=96)
    path = tmp_path / "other_config.json"
    path.write_text(json.dumps(arch.to_hf_dict()))
    return path


@pytest.mark.parametrize("case, message", [
    ("missing checkpoint", "no such checkpoint"),
    ("batch does not divide", "multiple of micro_batch_size"),
    ("another model", "different model"),
])
def test_bad_input_fails_before_the_first_step(tmp_path, tiny_world, tiny_init, case, message):
    override = {"missing checkpoint": "checkpoint.load=/nonexistent/ckpt",
                "batch does not divide": "training.global_batch_size=10",
                "another model": f"model.hf_config={_other_model_config(tmp_path)}"}[case]
    proc = run("sft", TINY_SFT, _args(tmp_path, tiny_world, tiny_init, "training.train_steps=2", override),
               expect=2, timeout=300)
    assert message in proc.stderr
    assert not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text()


def test_packed_rows_give_the_losses_of_padded_batches(tmp_path, tiny_world, tiny_init):
    """Several conversations in one row, attention kept inside each (block-diagonal causal mask on the
    local spec), positions restarting per conversation, no target across a boundary: the per-token
    loss of the global batch is the padded batch's, step after step."""
    steps = ["training.train_steps=3", "training.eval_interval=0"]
    run("sft", TINY_SFT, _args(tmp_path / "padded", tiny_world, tiny_init, *steps))
    run("sft", TINY_SFT, _args(tmp_path / "packed", tiny_world, tiny_init, *steps, "data.pack_sequences=true",
                               "data.max_seq_length=400"))
    padded, packed = metrics(tmp_path / "padded", "train/loss"), metrics(tmp_path / "packed", "train/loss")
    assert sorted(packed) == [1, 2, 3]
    assert packed == pytest.approx(padded, abs=1e-5)
    # the same response tokens; the 8 conversations of a step in rows of several (< 8 rows of one each)
    assert metrics(tmp_path / "packed", "train/response_tokens") == metrics(tmp_path / "padded", "train/response_tokens")
    packed_rows, padded_rows = metrics(tmp_path / "packed", "train/micro_batches"), metrics(tmp_path / "padded",
                                                                                         "train/micro_batches")
    assert all(padded_rows[s] < packed_rows[s] < 8 for s in packed_rows), (packed_rows, padded_rows)


def test_resume_at_another_parallel_layout(tmp_path, tiny_world, tiny_init):
    """Saved at TP=1, resumed at TP=2: model and Adam state reshard, and the loss curve continues as
    the uninterrupted TP=1 run's."""
    steps = ["training.eval_interval=0", "checkpoint.save_interval=3"]
    run("sft", TINY_SFT, _args(tmp_path / "straight", tiny_world, tiny_init, *steps, "training.train_steps=5"))
    moved = tmp_path / "moved"
    run("sft", TINY_SFT, _args(moved, tiny_world, tiny_init, *steps, "training.train_steps=5",
                               "training.exit_after_steps=3"))
    assert (moved / "checkpoints" / TRACKER).read_text() == "3"
    run("sft", TINY_SFT, _args(moved, tiny_world, tiny_init, *steps, "training.train_steps=5",
                               "parallel.tensor_model_parallel_size=2"), nproc=2)
    assert metrics(moved, "train/loss") == pytest.approx(metrics(tmp_path / "straight", "train/loss"), abs=1e-5)
