"""`score`: composition with weights, switches and the perception-first schedule; edge cases; the
config in the recipe schema; docstring examples; import purity."""

import doctest
import importlib
import pkgutil
import subprocess
import sys
import time

import pytest
from pydantic import ValidationError

import nemo_vtp.rewards
from nemo_vtp.config import load_config
from nemo_vtp.config.schema import RecipeConfig
from nemo_vtp.rewards import COUNTERS, TERMS, RewardConfig, batch_metrics, score, weights_at

SAMPLE = {
    "question": "How many circles are there in total?",
    "answer": "5",
    "key_info": {
        "visual": ["3 red circles", "2 blue circles", "1 green square"],
        "textual": ["total = 5", "add the red and blue circles"],
    },
}
GOOD = ("<description>There are 3 red circles, 2 blue circles and 1 green square.</description>"
        "<think>Add the red and blue circles: 3 + 2 = 5, so the total = 5.</think><answer>5</answer>")
NO_SCHEDULE = RewardConfig(schedule={"steps": 0})


def test_good_response_scores_every_term():
    r = score(GOOD, SAMPLE, NO_SCHEDULE)
    assert set(r) == {*TERMS, *COUNTERS, "total"}
    assert all(isinstance(v, float) for v in r.values())
    expected = {"acc": 1.0, "fmt": 1.0, "vkey": 1.0, "tkey": 1.0, "rep": 0.0, "overlong": 0.0}
    assert {k: r[k] for k in expected} == expected
    # F = {red, circle, blue, 3, 2} (5 is derived): all in the description.
    assert r["cons"] == 1.0
    assert r["total"] == pytest.approx(1.0 + 0.1 + 0.4 + 0.3 + 0.3)


def test_total_is_the_weighted_sum_with_switches():
    cfg = RewardConfig(schedule={"steps": 0}, weights={"acc": 2.0, "fmt": 0.5, "vkey": 0.25, "tkey": 0.0},
                       enabled={"cons": False})
    response = GOOD.replace("<answer>5</answer>", "<answer>6</answer>")
    r = score(response, SAMPLE, cfg)
    assert r["acc"] == 0.0 and r["cons"] > 0  # cons is computed and logged even when switched off
    assert r["total"] == pytest.approx(2.0 * 0 + 0.5 * 1 + 0.25 * 1 + 0.0 * 1 + 1.0 * r["rep"] + r["overlong"])


SCHEDULE_CASES = [
    # step, expected multiplier of the perception weights, of the acc weight (start 2.0 / 0.5, over 40 steps)
    (0, 2.0, 0.5),
    (10, 1.75, 0.625),
    (20, 1.5, 0.75),
    (40, 1.0, 1.0),
    (400, 1.0, 1.0),
    (-5, 2.0, 0.5),
]


@pytest.mark.parametrize(("step", "perception", "acc"), SCHEDULE_CASES)
def test_perception_first_schedule(step, perception, acc):
    cfg = RewardConfig(schedule={"steps": 40, "perception_start_scale": 2.0, "acc_start_scale": 0.5})
    w = weights_at(cfg, step)
    final = cfg.weights
    assert w["vkey"] == pytest.approx(final.vkey * perception)
    assert w["tkey"] == pytest.approx(final.tkey * perception)
    assert w["cons"] == pytest.approx(final.cons * perception)
    assert w["acc"] == pytest.approx(final.acc * acc)
    assert (w["fmt"], w["rep"], w["overlong"]) == (final.fmt, final.rep, final.overlong)
    r = score(GOOD, SAMPLE, cfg, step=step)
    assert r["total"] == pytest.approx(sum(w[k] * r[k] for k in TERMS))


def test_schedule_off_gives_final_weights_at_step_zero():
    assert weights_at(NO_SCHEDULE, 0) == weights_at(NO_SCHEDULE, 10**6)


EDGE_CASES = [
    # name, response, expected subset of terms
    ("no tags", "The answer is 5.", {"fmt": 0.0, "acc": 0.0, "vkey": 0.0, "tkey": 0.0, "cons": 0.0}),
    ("empty", "", {"fmt": 0.0, "acc": 0.0, "rep": 0.0, "overlong": 0.0}),
    ("empty answer", GOOD.replace("<answer>5</answer>", "<answer></answer>"), {"fmt": 1.0, "acc": 0.0}),
    ("missing answer tag", GOOD.replace("<answer>5</answer>", "5"), {"fmt": 0.0, "acc": 0.0, "vkey": 1.0}),
    ("duplicated answer", GOOD + "<answer>6</answer>", {"fmt": 0.0, "acc": 0.0}),
    ("nested think", GOOD.replace("<think>", "<think><think>"), {"fmt": 0.0, "acc": 1.0}),
    ("boxed answer", GOOD.replace("<answer>5</answer>", "<answer>\\boxed{5}</answer>"), {"acc": 1.0}),
    ("unicode", GOOD.replace("3 red", "３ red").replace("There", "Là, there"), {"fmt": 1.0, "vkey": 1.0}),
]


@pytest.mark.parametrize(("name", "response", "expected"), EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_edge_cases(name, response, expected):
    r = score(response, SAMPLE, NO_SCHEDULE)
    assert {k: r[k] for k in expected} == expected
    assert r["errors"] == 0.0


def test_very_long_response_is_scored_fast_and_penalised():
    loop = " ".join(["we count the circles again and again"] * 2000)  # 14k words, one repeated phrase
    response = f"<description>3 red circles</description><think>{loop}</think><answer>5</answer>"
    start = time.perf_counter()
    r = score(response, SAMPLE, NO_SCHEDULE, max_tokens=4096)
    assert time.perf_counter() - start < 5.0  # linear-time matchers: ~0.1 s here
    assert r["overlong"] == -1.0  # 14k words > L_max 4096
    assert r["rep"] < -1.9  # nearly every 20-gram repeats
    assert r["acc"] == 1.0


def test_num_tokens_overrides_the_whitespace_count():
    cfg = RewardConfig(schedule={"steps": 0}, overlong_cache_tokens=20)
    assert score(GOOD, SAMPLE, cfg, max_tokens=100)["overlong"] == 0.0  # ~30 words
    assert score(GOOD, SAMPLE, cfg, num_tokens=90, max_tokens=100)["overlong"] == pytest.approx(-0.5)
    assert score(GOOD, SAMPLE, cfg, num_tokens=9000)["overlong"] == 0.0  # no L_max given: no length cap known


def test_overlong_band_follows_the_rollout_cap():
    """L_max is the rollout's max_new_tokens; L_cache defaults to a quarter of it."""
    cfg = RewardConfig(schedule={"steps": 0})
    # L_max 2048, L_cache 512: 0 up to 1536, -0.5 at 1792, -1 at the cap (the cluster recipes' shape)
    got = [score(GOOD, SAMPLE, cfg, num_tokens=n, max_tokens=2048)["overlong"] for n in (1536, 1792, 2048)]
    assert got == [0.0, -0.5, -1.0]
    assert score(GOOD, SAMPLE, cfg, num_tokens=150, max_tokens=160)["overlong"] == pytest.approx(-0.75)  # 30 into a 40 band


def test_bad_sample_is_counted_not_raised():
    r = score(GOOD, {"question": "q"}, NO_SCHEDULE)  # no "answer": acc cannot be computed
    assert r["acc"] == 0.0 and r["errors"] == 1.0
    assert r["fmt"] == 1.0 and r["vkey"] == 0.0  # no key_info: coverage of nothing is 0


def test_batch_metrics_means_and_counts():
    rows = [score(GOOD, SAMPLE, NO_SCHEDULE), score("", SAMPLE, NO_SCHEDULE), score(GOOD, {"question": "q"})]
    rows[1]["timeouts"] = 1.0
    m = batch_metrics(rows)
    assert m["num_samples"] == 3.0
    assert m["acc"] == pytest.approx(1 / 3)
    assert m["fmt"] == pytest.approx(2 / 3)
    assert m["total"] == pytest.approx(sum(r["total"] for r in rows) / 3)
    assert (m["timeouts"], m["errors"], m["judge_failures"]) == (1.0, 1.0, 0.0)
    assert batch_metrics([])["num_samples"] == 0.0


def test_config_lives_in_the_recipe_schema(tmp_path):
    assert RecipeConfig().rewards == RewardConfig()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rewards:\n  tau_hi: 0.9\n  tags:\n    think: reasoning\n")
    cfg = load_config(recipe, ["rewards.weights.vkey=0.2", "rewards.enabled.cons=false"])
    assert (cfg.rewards.tau_hi, cfg.rewards.tags.think, cfg.rewards.weights.vkey) == (0.9, "reasoning", 0.2)
    assert cfg.rewards.enabled.cons is False


@pytest.mark.parametrize("bad", [
    {"tau_lo": 0.9, "tau_hi": 0.8},
    {"overlong_cache_tokens": -1},
    {"max_response_tokens": 4096},
    {"tags": {"think": "answer"}},
    {"tags": {"think": "a b"}},
    {"matcher": "gpt"},
    {"weights": {"acc": 1.0, "accuracy": 1.0}},
])
def test_bad_config_is_rejected(bad):
    with pytest.raises(ValidationError):
        RewardConfig(**bad)


def test_docstring_examples_run():
    modules = [importlib.import_module(f"nemo_vtp.rewards.{m.name}")
               for m in pkgutil.iter_modules(nemo_vtp.rewards.__path__)]
    attempted = 0
    for module in modules:
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 30


def test_rewards_import_no_megatron_vllm_or_torch():
    code = ("import sys, nemo_vtp.rewards; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'megatron', 'vllm', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_random_garbage_never_raises_and_stays_in_range():
    import random

    rng = random.Random(0)
    pieces = ["<description>", "</description>", "<think>", "</think>", "<answer>", "</answer>", "\\boxed{",
              "}", "3", "red", "circles", "=", "+", "4:30", "1/0", "½", "ℝ", "红", "\\frac{1}{", "-", ".", " ", "\n",
              "twenty", "-one", "is", "blue", "bar", "7", "$", "\\sqrt", "(B)", "cm", "%", "≈", "'"]
    sample = {"question": "Which side?", "answer": "left", "choices": None,
              "key_info": {"visual": ["3 red circles", "the blue bar is 7"], "textual": ["4:30", "½"]}}
    ranges = {"acc": (0, 1), "fmt": (0, 1), "vkey": (0, 1), "tkey": (0, 1), "cons": (0, 1), "rep": (-2, 0),
              "overlong": (-1, 0)}
    for _ in range(300):
        response = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 80)))
        r = score(response, sample, NO_SCHEDULE)
        assert r["errors"] == 0.0, response
        for name, (low, high) in ranges.items():
            assert low <= r[name] <= high, (name, r[name], response)
