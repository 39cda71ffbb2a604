"""Precision and recall of the rule-based key-fact matcher on the labelled adversarial suite, per
kind of case, and R_acc on the suite's accuracy table. Targets: precision >= 0.98, recall >= 0.90.

    PYTHONPATH=. python bench/reward_matching.py [--suite tests/unit/rewards_suite]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from nemo_vtp.rewards.labelled import accuracy_verdicts, load_cases, precision_recall, rule_verdicts

SUITE = Path(__file__).resolve().parents[1] / "tests" / "unit" / "rewards_suite"


def per_kind(cases: list[dict], predicted: list[bool]) -> dict[str, tuple[int, int]]:
    """kind -> (cases the matcher gets right, cases)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for case, pred in zip(cases, predicted):
        out[case["kind"]][0] += pred == case["covered"]
        out[case["kind"]][1] += 1
    return {kind: (right, n) for kind, (right, n) in sorted(out.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=SUITE)
    args = parser.parse_args()
    cases = load_cases(args.suite / "matching.jsonl")
    start = time.perf_counter()
    predicted = rule_verdicts(cases)
    elapsed = time.perf_counter() - start
    precision, recall = precision_recall(predicted, [c["covered"] for c in cases])
    negatives = sum(not c["covered"] for c in cases)
    print(f"{len(cases)} matching cases ({negatives} negative), {1e3 * elapsed / len(cases):.2f} ms/case")
    print(f"rule matcher: precision {precision:.3f}  recall {recall:.3f}  (targets 0.98 / 0.90)")
    for kind, (right, n) in per_kind(cases, predicted).items():
        print(f"  {kind:<20} {right:>3}/{n:<3} right")
    acc_cases = load_cases(args.suite / "accuracy.jsonl")
    verdicts = accuracy_verdicts(acc_cases)
    right = sum(v == c["correct"] for v, c in zip(verdicts, acc_cases))
    gamed = [c for c in acc_cases if not c["correct"]]
    credited = sum(v for v, c in zip(verdicts, acc_cases) if not c["correct"])
    print(f"R_acc: {right}/{len(acc_cases)} cases right; {credited}/{len(gamed)} wrong or gamed answers credited")


if __name__ == "__main__":
    main()
