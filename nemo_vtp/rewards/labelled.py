"""Labelled reward cases: load them, score them with the rule matcher or R_acc, and count
precision and recall. Used by the adversarial suite's test and by bench/reward_matching.py.

A matching case is `{"fact", "text", "covered", "kind", "domain"}` (is `fact` stated in `text`?);
an accuracy case is `{"answer", "gold", "choices"?, "correct", "kind"}`. One JSON object a line.
"""

from __future__ import annotations

import json
from pathlib import Path

from nemo_vtp.rewards.accuracy import accuracy
from nemo_vtp.rewards.matching import IndexedText, fact_in_text


def load_cases(path: str | Path) -> list[dict]:
    """The cases of a JSON-lines file (blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def rule_verdicts(cases: list[dict], slack: int = 3) -> list[bool]:
    """The rule matcher's verdict for each matching case."""
    return [fact_in_text(c["fact"], IndexedText.build(c["text"]), slack) for c in cases]


def accuracy_verdicts(cases: list[dict]) -> list[bool]:
    """R_acc == 1 for each accuracy case."""
    out = []
    for case in cases:
        sample = {"answer": case["gold"], **({"choices": case["choices"]} if "choices" in case else {})}
        out.append(accuracy(case["answer"], sample) == 1.0)
    return out


def precision_recall(predicted: list[bool], labels: list[bool]) -> tuple[float, float]:
    """(precision, recall) of `predicted` against `labels`; 1.0 where the denominator is 0.

    >>> precision_recall([True, True, False, False], [True, False, True, False])
    (0.5, 0.5)
    """
    tp = sum(p and y for p, y in zip(predicted, labels))
    fp = sum(p and not y for p, y in zip(predicted, labels))
    fn = sum(y and not p for p, y in zip(predicted, labels))
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)
