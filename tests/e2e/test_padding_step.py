"""A rollout step whose batch is all padding groups takes no optimizer step."""

from __future__ import annotations

from tests.e2e.stages import TINY_RL, metrics, run
from tests.e2e.test_rl import FAST_RL


def test_padding_only_mini_batches_take_no_step(tmp_path, tiny_world, tiny_init):
    """A random model answers nothing right: with accuracy-based dynamic sampling no group has
    variance, one round runs out and `pad` fills the batch with padding groups only. Every
    mini-batch is then skipped; before, AdamW stepped on zero gradients (weight decay 0.1 shrank
    every weight) and advanced the LR schedule."""
    run("rl", TINY_RL, [f"run.output_dir={tmp_path}", f"data.train_path={tiny_world / 'train.jsonl'}",
                        f"checkpoint.load={tiny_init}", *FAST_RL, "rl.rollout_steps=1",
                        "rl.dynamic_sampling.max_rounds=1", "rl.dynamic_sampling.criterion=accuracy",
                        "rl.dynamic_sampling.on_exhausted=pad", "generation.sampling.max_new_tokens=16",
                        "optimizer.weight_decay=0.1"])
    assert metrics(tmp_path, "rl/dynamic_sampling/groups_padded")[1] == 4
    assert metrics(tmp_path, "rl/loss/mini_batches_skipped")[1] == 2  # 16 responses, mini-batches of 8
    assert metrics(tmp_path, "rl/loss/grad_norm") == {}  # no optimizer step ran
