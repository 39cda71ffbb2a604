"""Settings the paper states, checked where the recipes and the loop carry them."""

from nemo_vtp.config import load_config
from nemo_vtp.dapo import takes_step
from tests.conftest import ROOT

PAPER_PER_DEVICE_BATCH, PAPER_ACCUMULATION, PAPER_GPUS = 1, 8, 8  # Stage I SFT, per device, on one 8-GPU node


def test_7b_sft_recipe_global_batch_is_the_papers():
    cfg = load_config(ROOT / "recipes" / "sft" / "sft-qwen25vl-7b-vtp12k-1n8g-tp2.yaml", [])
    t, p = cfg.training, cfg.parallel
    dp = PAPER_GPUS // (p.tensor_model_parallel_size * p.pipeline_model_parallel_size)
    assert t.global_batch_size == PAPER_PER_DEVICE_BATCH * PAPER_ACCUMULATION * PAPER_GPUS == 64
    assert t.micro_batch_size == PAPER_PER_DEVICE_BATCH
    assert t.global_batch_size // (t.micro_batch_size * dp) == 16  # accumulation steps per DP rank at TP=2


def test_a_mini_batch_without_loss_tokens_takes_no_step():
    assert not takes_step(0.0) and takes_step(1.0)
