"""Faults in user-defined reward terms (`rewards.extra`): a term that raises is a counted error, a
term that hangs a counted timeout (its worker is killed); the other samples and terms are scored."""

from nemo_vtp.rewards import RewardConfig, RewardPool, batch_metrics, score_batch

SAMPLE = {"question": "How many circles?", "answer": "3"}
OK = "<answer>3</answer>"


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
