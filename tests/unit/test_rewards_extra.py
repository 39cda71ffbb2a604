"""`rewards.extra`: a user-defined term from a module named in the recipe is weighted into the total,
appears in the batch metrics. Bad terms (import, raise, hang): tests/faults/test_reward_extra.py."""

import pytest

from nemo_vtp.rewards import RewardConfig, batch_metrics, score, score_batch

SAMPLE = {"question": "How many circles?", "answer": "3"}
SHORT = "<answer>3</answer>"
LONG = "<think>one two three four five six</think><answer>3</answer>"
TERM = "tests.custom_reward_terms:answer_is_short"


def _cfg(*extra, workers=0) -> RewardConfig:
    return RewardConfig(schedule={"steps": 0}, extra=list(extra), pool={"num_workers": workers})


def test_extra_term_is_weighted_into_the_total():
    plain, with_term = _cfg(), _cfg({"function": TERM, "weight": 0.5})
    for response, value in ((SHORT, 1.0), (LONG, 0.0)):
        base, got = score(response, SAMPLE, plain), score(response, SAMPLE, with_term)
        assert got["answer_is_short"] == value
        assert got["total"] == pytest.approx(base["total"] + 0.5 * value)
    named = score(SHORT, SAMPLE, _cfg({"function": TERM, "weight": -2.0, "name": "brevity"}))
    assert named["brevity"] == 1.0 and named["total"] == pytest.approx(score(SHORT, SAMPLE, plain)["total"] - 2.0)


def test_extra_term_in_batch_metrics():
    rows = score_batch([SHORT, LONG, SHORT, SHORT], [SAMPLE] * 4, _cfg({"function": TERM, "weight": 0.5}))
    assert batch_metrics(rows)["answer_is_short"] == 0.75
    assert "answer_is_short" not in batch_metrics(score_batch([SHORT], [SAMPLE], _cfg()))
