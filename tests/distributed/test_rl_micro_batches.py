"""RL micro-batch layouts give the same step (tiny model, float32, torchrun/gloo) at TP=1, TP=2 and PP=2:
the vision tower once per prompt instead of once per response, and packed micro-batches formed by a
token budget, equal the padded once-per-response path in old log-probs, the DAPO loss, the entropy,
the global response-token count and every gradient (vision tower included)."""

import pytest

from tests.distributed.launch import torchrun_json
from tests.distributed.rl_update_worker import GRIDS, GROUP

RUNS = {"tp1": (1, []), "tp2": (2, ["--tp", "2"]), "pp2": (2, ["--pp", "2"])}
PER_PROMPT = sum(t * h * w for t, h, w in GRIDS)  # patches of the two prompts' images


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl_micro_batches")
    return {name: torchrun_json("rl_update_worker.py", nproc, args, root / f"{name}.json", timeout=600)
            for name, (nproc, args) in RUNS.items()}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("layout", ["shared", "packed_split", "packed_whole"])
def test_layout_equals_the_per_response_path(results, run, layout):
    ref, r = results[run]["per_response"], results[run][layout]
    assert r["tokens"] == ref["tokens"] == 30  # of 45 response tokens: one filtered response, one with a placeholder
    assert r["num_logprobs"] == ref["num_logprobs"] == ref["tokens"]
    assert r["old_logprob_max_diff"] <= 1e-5, r
    assert r["pg_loss"] == pytest.approx(ref["pg_loss"], rel=1e-5) and abs(ref["pg_loss"]) > 1e-3
    assert r["entropy"] == pytest.approx(ref["entropy"], rel=1e-6)
    assert r["grad_max_diff"] <= 1e-5 * r["grad_max_abs"], r
    assert r["vision_grad_max_abs"] > 1e-4  # the tower is trained: its gradient flows through the shared image


@pytest.mark.parametrize("run", list(RUNS))
def test_the_vision_tower_encodes_each_prompt_once_per_micro_batch(results, run):
    r = {name: row["patches_encoded"] for name, row in results[run].items()}
    passes = 2  # old log-probs, then the update
    assert r["per_response"] == passes * GROUP * PER_PROMPT
    assert r["packed_whole"] == passes * PER_PROMPT  # one micro-batch holds both groups
    # micro-batches of 2 responses over groups of 3: prompt 1, prompts 1+2, prompt 2
    assert r["shared"] == passes * (PER_PROMPT + GRIDS[0][1] * GRIDS[0][2] + GRIDS[1][1] * GRIDS[1][2])
    assert r["packed_whole"] < r["packed_split"] < r["per_response"]
