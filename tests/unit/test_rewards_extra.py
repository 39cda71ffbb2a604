"""`rewards.extra`: a user-defined term from a module named in the recipe is weighted into the total,
appears in the batch metrics and is checked when the recipe loads."""

import pytest

from nemo_vtp.config import ConfigError, load_config
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


@pytest.mark.parametrize(("function", "message"), [
    ("tests.no_such_module:fn", "cannot import module 'tests.no_such_module'"),
    ("tests.custom_reward_terms:missing", "has no attribute 'missing'"),
    ("tests.custom_reward_terms:NOT_CALLABLE", "is a int, not a callable"),
    ("tests.custom_reward_terms", "is not of the form 'pkg.module:function'"),
], ids=["module", "attribute", "not-callable", "no-colon"])
def test_bad_function_names_the_recipe_line(tmp_path, function, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"run:\n  name: x\nrewards:\n  extra:\n    - function: {function}\n      weight: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert message in str(err.value) and f"{recipe}:4" in str(err.value) and "rewards.extra.0" in str(err.value)


def test_extra_term_name_must_not_shadow_a_builtin_term():
    with pytest.raises(ValueError, match="name 'acc' is taken"):
        _cfg({"function": TERM, "name": "acc"})
    with pytest.raises(ValueError, match="name 'answer_is_short' is taken"):
        _cfg({"function": TERM}, {"function": TERM})
