"""The labelled adversarial suite: (fact, text, covered?) cases a reward-hacking policy would try
(wrong entity, negation, reversed comparison, wrong unit, off by a digit, a value bound across a
clause, another colour/year/label, counterfactuals, hedges, candidate lists) and faithful
paraphrases; and R_acc cases. The rule matcher must reach the precision/recall targets; the judge
path must send the same rules, use the verdicts and fall back on malformed ones."""

import re
from collections import Counter
from pathlib import Path

import pytest

from nemo_vtp.config.rewards import JudgeConfig
from nemo_vtp.rewards import RewardConfig, score
from nemo_vtp.rewards.compose import apply_judge
from nemo_vtp.rewards.judge import SYSTEM_PROMPT, JudgeClient
from nemo_vtp.rewards.labelled import accuracy_verdicts, load_cases, precision_recall, rule_verdicts
from nemo_vtp.rewards.matching import RULES, coverage, coverage_level
from nemo_vtp.rewards.terms import merge_terms

HERE = Path(__file__).parent
MATCHING = load_cases(HERE / "matching.jsonl")
ACCURACY = load_cases(HERE / "accuracy.jsonl")
NEGATIVE_KINDS = {"wrong_entity", "negation", "reversed_comparison", "wrong_unit", "off_by_digit", "cross_clause",
                  "other_colour", "other_year", "other_label", "counterfactual", "hedge", "enumeration"}


def test_suite_is_large_balanced_and_covers_every_attack():
    assert len(MATCHING) >= 200
    negatives = sum(not c["covered"] for c in MATCHING)
    assert 0.4 <= negatives / len(MATCHING) <= 0.6
    kinds = Counter(c["kind"] for c in MATCHING if not c["covered"])
    assert NEGATIVE_KINDS <= set(kinds), NEGATIVE_KINDS - set(kinds)
    assert all(c["kind"] == "paraphrase" for c in MATCHING if c["covered"])
    domains = {c["domain"] for c in MATCHING}
    assert {"shapes", "bars", "digits", "clock", "ruler", "geometry", "chart", "table"} <= domains


def test_rule_matcher_meets_precision_and_recall_targets():
    predicted = rule_verdicts(MATCHING)
    labels = [c["covered"] for c in MATCHING]
    precision, recall = precision_recall(predicted, labels)
    false_pos = [(c["fact"], c["text"]) for c, p in zip(MATCHING, predicted) if p and not c["covered"]]
    assert precision >= 0.98, false_pos
    assert recall >= 0.90


def test_accuracy_cases():
    wrong = [(c["answer"][:40], c["gold"]) for c, v in zip(ACCURACY, accuracy_verdicts(ACCURACY)) if v != c["correct"]]
    assert wrong == []
    assert sum(not c["correct"] for c in ACCURACY) >= 20


def test_judge_prompt_carries_the_matcher_rules():
    for rule in RULES:
        assert rule in SYSTEM_PROMPT
    for phrase in ["inside one clause", "Negation flips", "keep their direction", "units must agree",
                   "hypothetical", "several different values"]:
        assert phrase in SYSTEM_PROMPT
    doc = (HERE.parents[2] / "docs" / "rewards.md").read_text()
    for rule in RULES:  # the documented rules are the same text
        assert rule in doc


_FACT_RE = re.compile(r"<info(\d+)>(.*?)</info\1>")


class ScriptedEndpoint:
    """Stands in for the HTTP endpoint: checks the request carries the rules, reads the facts and
    the text back out of the prompt, and answers with `reply(facts, text)`."""

    def __init__(self, reply):
        self.reply, self.calls = reply, 0

    def post(self, body, deadline=None):
        self.calls += 1
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        assert system == SYSTEM_PROMPT
        facts_part, text = user.split("\n\nText:\n", 1)
        facts = [f for _, f in _FACT_RE.findall(facts_part)]
        content = self.reply(facts, text)
        return content if isinstance(content, dict) else {"choices": [{"message": {"content": content}}]}


LABELS = {(c["fact"], c["text"]): c["covered"] for c in MATCHING}


def _from_labels(facts, text):
    return "".join(f"<info{k}>{int(LABELS[(f, text)])}</info{k}>" for k, f in enumerate(facts, 1))


def _run_judge(reply, cases):
    cfg = RewardConfig(matcher="judge", judge={"base_url": "http://judge.invalid", "max_retries": 0, "backoff_s": 0})
    client = JudgeClient(JudgeConfig(**cfg.judge.model_dump()))
    client.endpoint = ScriptedEndpoint(reply)
    responses = [f"<description>{c['text']}</description><think>t</think><answer>a</answer>" for c in cases]
    samples = [{"key_info": {"visual": [c["fact"]]}} for c in cases]
    rule = [coverage_level(coverage([c["fact"]], c["text"])) for c in cases]
    results = [merge_terms({"vkey": r}) for r in rule]
    apply_judge(results, responses, samples, cfg, client)
    return results, rule, client.endpoint.calls


def test_judge_path_uses_the_verdicts_on_the_whole_suite():
    results, _, calls = _run_judge(_from_labels, MATCHING)
    assert calls == len(MATCHING)
    assert [r["vkey"] for r in results] == [float(c["covered"]) for c in MATCHING]
    assert sum(r["judge_failures"] for r in results) == 0


@pytest.mark.parametrize("reply", [
    "<info1>yes</info1>",  # not 0/1
    "The fact is stated.",  # no tags
    "<info1>1</info1><info1>0</info1>",  # two verdicts for one fact
    "<info1>1</info1><info2>1</info2>",  # a verdict for a fact not asked
    "",  # empty
    {"choices": []},  # no message at all
    {"choices": [{"message": {}}]},  # no content
], ids=["not-binary", "no-tags", "two-verdicts", "extra-fact", "empty", "no-choices", "no-content"])
def test_malformed_verdicts_fall_back_to_the_rule_matcher(reply):
    cases = [c for c in MATCHING if c["kind"] in ("negation", "paraphrase")][:6]
    results, rule, _ = _run_judge(lambda facts, text: reply, cases)
    assert [r["vkey"] for r in results] == rule  # the rule level is kept ...
    assert [r["judge_failures"] for r in results] == [1.0] * len(cases)  # ... and each failure counted


@pytest.mark.parametrize(("fact", "description"), [
    ("EF = 12", "DE = 12 and EF = 9."),
    ("the square is shaded", "The square is not shaded."),
    ("the top bar is longer than the bottom bar", "The bottom bar is longer than the top bar."),
    ("the 2019 bar is 40", "The 2020 bar is 40."),
], ids=["value-of-another-entity", "negation", "reversed-comparison", "another-year"])
def test_reported_cases_earn_no_visual_key_reward(fact, description):
    cfg = RewardConfig(schedule={"steps": 0})
    sample = {"question": "q", "answer": "1", "key_info": {"visual": [fact]}}
    response = f"<description>{description}</description><think>t</think><answer>1</answer>"
    assert score(response, sample, cfg)["vkey"] == 0.0
    honest = f"<description>{next(c['text'] for c in MATCHING if c['fact'] == fact and c['covered'])}</description>" \
        "<think>t</think><answer>1</answer>"
    assert score(honest, sample, cfg)["vkey"] == 1.0  # the same fact stated faithfully keeps its credit


def test_an_answer_of_309_digits_is_not_every_number():
    sample = {"question": "q", "answer": "7"}
    assert score("<description>d</description><think>t</think><answer>" + "9" * 309 + "</answer>", sample)["acc"] == 0.0
