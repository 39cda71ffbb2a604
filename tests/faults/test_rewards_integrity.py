"""Bad inputs to the reward terms that a policy can produce to earn reward without correct
perception: each must score 0 for the gamed term, never raise, and leave the other terms intact."""

import pytest

from nemo_vtp.rewards import RewardConfig, score

CFG = RewardConfig(schedule={"steps": 0})
SAMPLE = {"question": "What is the value of the blue bar?", "answer": "7",
          "key_info": {"visual": ["the blue bar is 7", "the red bar is 5"], "textual": ["7"]}}


def _response(description: str, answer: str, think: str = "The blue bar is 7.") -> str:
    return f"<description>{description}</description><think>{think}</think><answer>{answer}</answer>"


@pytest.mark.parametrize("answer", [
    "9" * 309,  # parses to infinity
    "1" * 5000,  # far longer than the gold
    "nan",
    "7 or 8",  # two candidates
    "6, 7, 8",  # every candidate
    "\\boxed{7 \\text{ or } 8}",
    "7.000000000000000000000000000000001",  # padded far beyond the gold's digits
], ids=["309-digits", "5000-digits", "nan", "two-candidates", "all-candidates", "boxed-or", "padded"])
def test_gamed_answer_scores_no_accuracy(answer):
    r = score(_response("The blue bar is 7, the red bar is 5.", answer), SAMPLE, CFG)
    assert r["acc"] == 0.0 and r["errors"] == 0.0
    assert r["vkey"] == 1.0 and r["fmt"] == 1.0  # the honest description keeps its credit


@pytest.mark.parametrize("description", [
    "The blue bar is 5 and the red bar is 7.",  # values swapped between entities
    "The blue bar is not 7, the red bar is not 5.",  # negated
    "If the blue bar were 7, the red bar would be 5.",  # counterfactual
    "The blue bar is 6 or 7 or 8, the red bar is 4 or 5 or 6.",  # candidate lists
    "The blue bar is 6. The blue bar is 7. The red bar is 4. The red bar is 5.",  # enumeration
    "The red bar is 7, 5 is the blue bar.",  # values bound across clauses to the wrong bars
], ids=["swapped", "negated", "counterfactual", "candidates", "enumeration", "cross-clause"])
def test_gamed_description_earns_no_visual_key_credit(description):
    r = score(_response(description, "7"), SAMPLE, CFG)
    assert r["vkey"] == 0.0 and r["errors"] == 0.0
    assert r["acc"] == 1.0


def test_hostile_long_description_is_scored_and_gets_nothing():
    description = " ".join(f"the blue bar is {v} or the red bar is {v}, if not more than {v}." for v in range(2000))
    r = score(_response(description, "7"), SAMPLE, CFG)
    assert r["vkey"] == 0.0 and r["errors"] == 0.0
