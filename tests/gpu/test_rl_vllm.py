"""A tiny RL run end to end on one GPU: `nemo-vtp sft` (5 steps) then `nemo-vtp rl` with
generation.engine=vllm (2 rollout steps, the `uni` vLLM executor in one process), on the synthetic world.

The model is the tiny recipe's with head dims of 32 (vLLM's attention kernels take no smaller), given
through `model.hf_config`; the token ids come from the synthetic world's tokenizer."""

import importlib.util
import math

import pytest

from nemo_vtp.training.checkpoint_files import TRACKER
from tests.gpu.gpu_run import ROOT, metrics, run_child
from tests.gpu.workers.common import SMALL_VLLM, write_small_hf_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
]
# bf16 with the local layer spec and the distributed optimizer: both runs end by saving the optimizer
# state, which broke while the local spec's norms stayed float32 (see test_model_params_dtype.py).
COMMON = ["run.device=cuda", "model.params_dtype=bfloat16", "logging.tensorboard=false",
          "logging.progress_bar=false", "checkpoint.save_interval=0"]


def test_tiny_rl_with_vllm_runs_end_to_end(tmp_path):
    from tests.gpu.workers.common import report

    hf = write_small_hf_config(tmp_path / "config.json")
    sft = tmp_path / "sft"
    run_child(["-m", "nemo_vtp.cli", "sft", str(ROOT / "recipes/tiny/sft.yaml"), f"run.output_dir={sft}",
               f"model.hf_config={hf}", "data.synth.num=200", "training.train_steps=5",
               "training.eval_interval=0", "training.eval_batches=1", *COMMON], timeout=300)
    ckpt = sorted((sft / "checkpoints").glob("iter_*"))[-1]
    rl = tmp_path / "rl"
    run_child(["-m", "nemo_vtp.cli", "rl", str(ROOT / "recipes/tiny/rl.yaml"), f"run.output_dir={rl}",
               f"model.hf_config={hf}", f"data.train_path={sft}/data/train.jsonl", f"checkpoint.load={ckpt}",
               "rl.rollout_steps=2", *SMALL_VLLM, "generation.vllm.distributed_executor_backend=uni", *COMMON],
              timeout=300)
    rows = metrics(rl / "metrics.jsonl", prefix="rl")
    keys = ("rl/time/rollout_s", "rl/time/train_s", "rl/time/refit_s", "rl/refit/seconds", "rl/refit/tensors")
    for row in rows:
        report("rl_step", **{k: row.get(k) for k in ("step", *keys, "rl/reward/total")})
    assert [r["step"] for r in rows] == [1, 2], rows
    assert (rl / "checkpoints" / TRACKER).read_text() == "2"  # with the optimizer state
    for row in rows:
        assert all(row.get(k) is not None and math.isfinite(row[k]) for k in keys), row
        assert row["rl/refit/tensors"] > 0, row
