"""Stage II end to end on CPU: rollouts, rewards, the DAPO update and the refit run together; the
engine stays in sync with the trainer; TP=2 gives the first-step loss of TP=1; a stopped run resumes,
also from a checkpoint written before the first optimizer update."""

from __future__ import annotations

import json
import math

import pytest

from nemo_vtp.training.checkpoint_files import TRACKER
from tests.e2e.stages import TINY_RL, console_lines, metrics, run

# From a briefly fine-tuned checkpoint: small groups, responses long enough to finish.
FAST_RL = ["generation.sampling.n=4", "rl.num_prompts=4", "rl.mini_batch_size=8", "rl.micro_batch_size=8",
           "generation.sampling.max_new_tokens=96", "rewards.overlong_cache_tokens=16",
           "rewards.pool.num_workers=0", "logging.progress_bar=false"]
EXTRA_TERM = 'function: "tests.custom_reward_terms:answer_is_short"'


def _args(tmp, world, init, *extra):
    return [f"run.output_dir={tmp}", f"data.train_path={world / 'train.jsonl'}", f"checkpoint.load={init}",
            *FAST_RL, *extra]


def test_two_steps_train_and_keep_the_engine_in_sync(tmp_path, tiny_world, tiny_sft):
    proc = run("rl", TINY_RL, _args(tmp_path, tiny_world, tiny_sft, "rl.rollout_steps=2",
                                    "rl.dynamic_sampling.enabled=false", "logging.rollout_interval=2",
                                    "logging.rollout_groups=3", f"rewards.extra=[{{{EXTRA_TERM}, weight: 0.0}}]"))
    assert sorted(metrics(tmp_path, "rl/reward/total")) == [1, 2]
    _assert_rollout_dump(tmp_path, step=2, groups=3)
    # the user-defined term (weight 0: the run's rewards stay those of the built-in terms) is logged like them
    extra = metrics(tmp_path, "rl/reward/answer_is_short")
    assert sorted(extra) == [1, 2] and all(0.0 <= v <= 1.0 for v in extra.values())
    assert metrics(tmp_path, "rl/reward/errors") == {1: 0.0, 2: 0.0}
    lines = console_lines(proc.stdout)  # stdout is a pipe: one line per rollout step
    assert [(x["iteration"], x["total"]) for x in lines] == [("1", "2"), ("2", "2")]
    for step, line in enumerate(lines, start=1):
        for term in ("total", "acc", "fmt", "vkey", "tkey", "cons", "rep", "overlong", "answer_is_short"):
            assert float(line[f"reward/{term}"]) == pytest.approx(metrics(tmp_path, f"rl/reward/{term}")[step],
                                                                   abs=1e-3), term
        for phase in ("rollout", "generate", "score", "train", "refit"):
            assert float(line[f"{phase} (s)"]) >= 0, phase
        assert float(line["grad norm"]) > 0
    assert 0 < int(lines[0]["consumed prompts"]) < int(lines[1]["consumed prompts"])
    for key in ("rl/loss/pg_loss", "rl/loss/entropy", "rl/loss/grad_norm", "rl/refit/seconds", "rl/time/rollout_s",
                "rl/time/generate_s", "rl/time/score_s", "rl/time/old_logprob_s", "rl/time/update_s"):
        values = metrics(tmp_path, key)
        assert sorted(values) == [1, 2] and all(math.isfinite(v) for v in values.values()), key
    assert all(v > 0 for v in metrics(tmp_path, "rl/loss/grad_norm").values())
    t = {k: metrics(tmp_path, f"rl/time/{k}") for k in ("rollout_s", "generate_s", "score_s", "train_s",
                                                         "old_logprob_s", "update_s", "step_s")}
    for step in (1, 2):  # the phases add up inside their parents
        assert t["generate_s"][step] + t["score_s"][step] <= t["rollout_s"][step] + 1e-3, t
        assert t["old_logprob_s"][step] + t["update_s"][step] <= t["train_s"][step] + 1e-3, t
        assert t["rollout_s"][step] + t["train_s"][step] <= t["step_s"][step] + 1e-3, t
    # The engine's rollout log-probs equal the trainer's: after the step-1 update the refit carried the new
    # weights into the engine, which generated step 2 (random weights would differ by ~1 nat).
    mismatch = metrics(tmp_path, "rl/loss/rollout_logprob_abs_diff")
    assert mismatch[2] < 1e-4, mismatch
    assert metrics(tmp_path, "rl/refit/tensors")[2] > 0
    assert (tmp_path / "checkpoints" / TRACKER).read_text() == "2"


def _assert_rollout_dump(out, step: int, groups: int) -> None:
    """rollouts/step_N.jsonl only at the interval: top and bottom response of each group, every reward
    term, totals ordered; the hacking signals are logged every step, within their ranges."""
    assert [p.name for p in (out / "rollouts").iterdir()] == [f"step_{step}.jsonl"]
    records = [json.loads(line) for line in (out / "rollouts" / f"step_{step}.jsonl").read_text().splitlines()]
    assert [(r["group"], r["rank"]) for r in records] == [(g, k) for g in range(groups) for k in ("top", "bottom")]
    for top, bottom in zip(records[::2], records[1::2]):
        assert top["prompt"] == bottom["prompt"] and "<|im_start|>" in top["prompt"] and top["question"]
        assert top["rewards"]["total"] >= top["group_total_mean"] >= bottom["rewards"]["total"]
        for r in (top, bottom):
            assert set(r["rewards"]) >= {"acc", "fmt", "vkey", "tkey", "cons", "rep", "overlong", "total"}
            assert r["step"] == step and isinstance(r["response"], str) and 0 <= r["num_tokens"] <= 96
            assert r["finish_reason"] in ("stop", "length") and r["reference"] is not None
    for key in ("answer_words_mean", "noncanonical_answer_rate", "perfect_perception_wrong_rate"):
        values = metrics(out, f"rl/hacking/{key}")
        assert sorted(values) == [1, 2], key
        assert all(0 <= v <= (96 if key == "answer_words_mean" else 1) for v in values.values()), (key, values)


def test_tp2_first_step_loss_equals_tp1(tmp_path, tiny_world, tiny_sft):
    common = ["rl.rollout_steps=1", "rl.dynamic_sampling.enabled=false"]
    run("rl", TINY_RL, _args(tmp_path / "tp1", tiny_world, tiny_sft, *common))
    run("rl", TINY_RL, _args(tmp_path / "tp2", tiny_world, tiny_sft, *common,
                             "parallel.tensor_model_parallel_size=2"), nproc=2)
    for key in ("rl/reward/total", "rl/loss/pg_loss", "rl/loss/entropy"):
        assert metrics(tmp_path / "tp2", key)[1] == pytest.approx(metrics(tmp_path / "tp1", key)[1], abs=1e-5), key


def test_resume_after_a_step_without_update(tmp_path, tiny_world, tiny_init):
    """One round and accuracy-based dynamic sampling on a random model: no group has variance, the
    step trains on nothing, and the checkpoint it leaves (no Adam state yet) must still resume."""
    base = _args(tmp_path, tiny_world, tiny_init, "rl.rollout_steps=2", "rl.dynamic_sampling.max_rounds=1",
                 "generation.sampling.max_new_tokens=16",
                 "rl.dynamic_sampling.criterion=accuracy")
    run("rl", TINY_RL, [*base, "training.exit_after_steps=1"])
    assert (tmp_path / "checkpoints" / TRACKER).read_text() == "1"
    run("rl", TINY_RL, base)
    assert sorted(metrics(tmp_path, "rl/reward/total")) == [1, 2]
    assert (tmp_path / "checkpoints" / TRACKER).read_text() == "2"


def test_packed_micro_batches_give_the_padded_first_step(tmp_path, tiny_world, tiny_sft):
    """rl.micro_batch_tokens packs the responses into token-budget rows (whole groups, a block-diagonal
    mask on the local spec): the first step's loss, entropy and gradient norm equal the padded run's."""
    common = ["rl.rollout_steps=1", "rl.dynamic_sampling.enabled=false"]
    run("rl", TINY_RL, _args(tmp_path / "padded", tiny_world, tiny_sft, *common))
    run("rl", TINY_RL, _args(tmp_path / "packed", tiny_world, tiny_sft, *common, "rl.micro_batch_tokens=1024"))
    for key in ("rl/loss/pg_loss", "rl/loss/entropy", "rl/loss/grad_norm", "rl/loss/rollout_logprob_abs_diff"):
        assert metrics(tmp_path / "packed", key)[1] == pytest.approx(metrics(tmp_path / "padded", key)[1],
                                                                     rel=1e-4, abs=1e-6), key
    assert metrics(tmp_path / "packed", "rl/train_tokens")[1] == metrics(tmp_path / "padded", "rl/train_tokens")[1] > 0
