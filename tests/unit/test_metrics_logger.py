"""The metrics logger: Megatron-style console lines when no progress bar shows (a batch job), never
both; Weights & Biases (offline) and MLflow (file store) receive the same records. A missing tracker
package: tests/faults/test_logging.py."""

import json
import struct
import time

import pytest

from nemo_vtp.config import load_config
from nemo_vtp.config.run import WandbConfig
from nemo_vtp.training.logging import MetricsLogger, read_metrics
from tests.e2e.stages import TINY_SFT, console_lines


def _sft_step(step: int) -> dict:
    return {"loss": 2.0 / step, "grad_norm": 0.5, "lr": 1e-4, "tokens_per_s": 1000.0, "mfu": float("nan"),
            "consumed_samples": 8 * step, "step_time_s": 0.25}


def test_console_lines_when_stderr_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NEMO_VTP_PROGRESS", raising=False)
    logger = MetricsLogger(tmp_path, tensorboard=False, progress_total=3, progress_bar=True, desc="sft")
    for step in (1, 2, 3):
        logger.log(step, _sft_step(step))
        logger.advance(1)
    logger.log(3, {"loss": 0.5}, prefix="val")
    logger.close()
    out = capsys.readouterr()
    lines = console_lines(out.out)
    assert [(x["iteration"], x["total"]) for x in lines] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert [float(x["lm loss"]) for x in lines] == [2.0, 1.0, pytest.approx(2 / 3)]
    assert lines[0]["elapsed time per iteration (ms)"] == "250.0"  # the first line: the step's own time
    assert lines[2]["consumed samples"] == "24" and lines[2]["tokens/s"] == "1000.0" and "MFU" not in lines[2]
    assert " validation loss at iteration 3 | lm loss value: 5.000000E-01 |" in out.out
    assert out.err == ""  # no bar
    assert [r["train/loss"] for r in read_metrics(tmp_path / "metrics.jsonl")[:3]] == [2.0, 1.0, pytest.approx(2 / 3)]


def test_a_forced_bar_replaces_the_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NEMO_VTP_PROGRESS", "1")
    logger = MetricsLogger(tmp_path, tensorboard=False, progress_total=2, progress_bar=True, desc="sft")
    for step in (1, 2):
        logger.log(step, _sft_step(step))
        logger.advance(1, loss=1.0)
    logger.close()
    out = capsys.readouterr()
    assert console_lines(out.out) == [] and "2/2" in out.err


def test_rl_line_has_reward_terms_and_phase_seconds(tmp_path, capsys):
    logger = MetricsLogger(tmp_path, tensorboard=False, jsonl=False, progress_total=5, progress_bar=False, desc="rl")
    logger.log(5, {"reward/total": 1.25, "reward/acc": 0.5, "reward/brevity": 1.0, "reward/timeouts": 2.0,
                   "reward/num_samples": 16.0, "time/rollout_s": 3.5, "time/train_s": 1.0, "time/step_s": 5.0,
                   "loss/grad_norm": 0.3, "lr": 1e-6, "consumed_prompts": 40}, prefix="rl")
    (line,) = console_lines(capsys.readouterr().out)
    assert (line["reward/total"], line["reward/acc"], line["reward/brevity"]) == ("1.250", "0.500", "1.000")
    assert line["reward/timeouts"] == "2" and "reward/num_samples" not in line
    assert (line["rollout (s)"], line["train (s)"], line["consumed prompts"]) == ("3.50", "1.00", "40")
    assert line["elapsed time per iteration (ms)"] == "5000.0" and "lm loss" not in line


def _wandb_history(run_file) -> list[dict]:
    """The history rows of an offline .wandb file: after a 7-byte file header, records framed as
    [crc 4][length 2, little-endian][type 1][protobuf Record]; a small file fits in one 32 KiB block."""
    from wandb.proto import wandb_internal_pb2

    data, rows, at = run_file.read_bytes(), [], 7
    assert data[:4] == b":W&B" and len(data) < 32768
    while at + 7 <= len(data):
        length = struct.unpack("<H", data[at + 4:at + 6])[0]
        if length == 0 or at + 7 + length > len(data):  # the end, or a record still being written
            break
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data[at + 7:at + 7 + length])
        at += 7 + length
        if record.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_wandb_offline_writes_the_run_under_the_output_dir(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'nemo_vtp[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = WandbConfig(enabled=True, project="nemo-vtp-test", name="tiny", mode="offline")
    logger = MetricsLogger(tmp_path, tensorboard=False, progress_bar=False, wandb=cfg, run_config={"run": {"seed": 1}})
    assert logger._trackers[0].run.config["run"] == {"seed": 1}
    for step in (1, 2):
        logger.log(step, _sft_step(step))
    logger.close()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    run_file, deadline = next(run_dir.glob("run-*.wandb")), time.monotonic() + 20
    while len(rows := _wandb_history(run_file)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the wandb-core process writes the file; finish() may return before it has
    assert [(r["_step"], r["train/loss"], r["train/consumed_samples"]) for r in rows] == [(1, 2.0, 8), (2, 1.0, 16)]
    assert all("train/mfu" not in r for r in rows)  # NaN is never sent as a number


def test_mlflow_file_store_receives_every_record(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'nemo_vtp[mlflow]')")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    uri = f"file:{tmp_path / 'mlruns'}"
    cfg = load_config(TINY_SFT, [f"run.output_dir={tmp_path / 'run-a'}", "logging.mlflow.enabled=true",
                                 f"logging.mlflow.tracking_uri={uri}", "logging.mlflow.experiment=tiny"])
    logger = MetricsLogger.for_stage(cfg, 3, desc="sft")  # as the stages build it
    for step in (1, 2, 3):
        logger.log(step, _sft_step(step))
    logger.close()
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.run_name == "run-a" and run.data.params["optimizer.lr"] == str(cfg.optimizer.lr)
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0), (3, pytest.approx(2 / 3))]
    assert client.get_metric_history(run.info.run_id, "train/mfu") == []  # NaN is never sent as a number
