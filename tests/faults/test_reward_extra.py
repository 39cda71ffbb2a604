"""Faults in user-defined reward terms (`rewards.extra`): a function that cannot be used fails the
recipe at load, naming the line; a term that raises is a counted error, a term that hangs a counted
timeout (its worker is killed); the other samples and terms are scored."""

import pytest

from nemo_vtp.config import ConfigError, load_config
from nemo_vtp.rewards import RewardConfig, RewardPool, batch_metrics, score_batch

SAMPLE = {"question": "How many circles?", "answer": "3"}
OK = "<answer>3</answer>"
TERM = "tests.custom_reward_terms:answer_is_short"


def _cfg(function: str) -> RewardConfig:
    return RewardConfig(schedule={"steps": 0}, extra=[{"function": f"tests.custom_reward_terms:{function}",
                                                       "weight": 1.0}],
                        pool={"num_workers": 1, "sample_timeout_s": 3.0})


def test_raising_extra_term_is_a_counted_error():
    cfg = _cfg("raises")
    with RewardPool(cfg) as pool:
        rows = score_batch([OK, OK], [SAMPLE] * 2, cfg, pool=pool)
    assert [r["errors"] for r in rows] == [1.0, 1.0]
    assert [(r["raises"], r["acc"]) for r in rows] == [(0.0, 1.0), (0.0, 1.0)]  # built-in terms still scored
    assert batch_metrics(rows)["errors"] == 2.0


def test_hanging_extra_term_is_a_counted_timeout_and_the_batch_goes_on():
    cfg = _cfg("hangs_on_marker")
    with RewardPool(cfg) as pool:
        rows = score_batch([OK, "HANG " + OK, OK], [SAMPLE] * 3, cfg, pool=pool)
    assert [r["timeouts"] for r in rows] == [0.0, 1.0, 0.0]
    assert [r["hangs_on_marker"] for r in rows] == [1.0, 0.0, 1.0]
    assert rows[2]["total"] == rows[0]["total"] and rows[0]["total"] > rows[1]["total"]


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


@pytest.mark.parametrize(("terms", "taken"), [
    ([{"function": TERM, "name": "acc"}], "acc"),
    ([{"function": TERM}, {"function": TERM}], "answer_is_short"),
], ids=["builtin-name", "twice"])
def test_extra_term_name_must_be_free(terms, taken):
    with pytest.raises(ValueError, match=f"name '{taken}' is taken"):
        RewardConfig(extra=terms)
