"""What the policy learns, as plain data: reward-hacking signals over a step's scored responses, and
the records of `<output_dir>/rollouts/step_N.jsonl` (the top and bottom response of a few groups,
with the prompt and every reward term), written every `logging.rollout_interval` steps.

Signals (each a fraction or a mean over the step's scored responses):
  answer_words_mean              words inside the answer tag: hedged or padded answers grow it;
  noncanonical_answer_rate       answers not in the form the reference takes (see `is_canonical_answer`);
  perfect_perception_wrong_rate  R_vkey = R_tkey = 1 and R_acc = 0: perception credit without solving.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nemo_vtp.config.rewards import RewardTags
from nemo_vtp.rewards.accuracy import answer_text, single_number
from nemo_vtp.rewards.normalize import content_tokens, tokenize
from nemo_vtp.rewards.parsing import extract_sections
from nemo_vtp.rewards.terms import COUNTERS, TERMS

_BARE_LETTER_RE = re.compile(r"\(?[A-Za-z]\)?\.?")  # "B", "(b)", "B."


def is_canonical_answer(answer: str, sample: dict) -> bool:
    """Is the graded answer (its last box, else all of it) in the reference's form? A bare option
    letter for multiple choice; one number (units allowed) when the reference is one number; else no
    more content words than the reference. An empty answer is not canonical.

    >>> mc = {"answer": "B", "choices": ["3", "4"]}
    >>> is_canonical_answer("(B)", mc), is_canonical_answer("B. 4", mc), is_canonical_answer("", mc)
    (True, False, False)
    >>> is_canonical_answer(r"\\boxed{12 cm}", {"answer": "12"}), is_canonical_answer("3 or 4", {"answer": "3"})
    (True, False)
    >>> is_canonical_answer("red", {"answer": "blue"}), is_canonical_answer("red or blue", {"answer": "blue"})
    (True, False)
    """
    pred = answer_text(answer)
    if not pred:
        return False
    if sample.get("choices"):
        return _BARE_LETTER_RE.fullmatch(pred) is not None
    gold = answer_text(str(sample.get("answer", "")))
    if single_number(gold) is not None:
        return single_number(pred) is not None
    return len(content_tokens(tokenize(pred))) <= max(1, len(content_tokens(tokenize(gold))))


def hacking_signals(responses: list[str], samples: list[dict], scores: list[dict],
                    tags: RewardTags | None = None) -> dict[str, float]:
    """The three signals of the module docstring; all 0.0 for an empty step.

    >>> sample = {"answer": "3"}
    >>> perfect_wrong = {"vkey": 1.0, "tkey": 1.0, "acc": 0.0}
    >>> hacking_signals(["<answer>3</answer>", "<answer>3 or 4</answer>"], [sample] * 2,
    ...                 [{"vkey": 1.0, "tkey": 1.0, "acc": 1.0}, perfect_wrong])
    {'answer_words_mean': 2.0, 'noncanonical_answer_rate': 0.5, 'perfect_perception_wrong_rate': 0.5}
    """
    answers = [extract_sections(r, tags).answer for r in responses]
    n = max(len(answers), 1)
    perfect_wrong = [s["vkey"] == 1.0 and s["tkey"] == 1.0 and s["acc"] == 0.0 for s in scores]
    return {"answer_words_mean": sum(len(a.split()) for a in answers) / n,
            "noncanonical_answer_rate": sum(not is_canonical_answer(a, s) for a, s in zip(answers, samples)) / n,
            "perfect_perception_wrong_rate": sum(perfect_wrong) / n}


def group_records(step: int, group_index: int, prompt_text: str, sample: dict, texts: list[str],
                  scores: list[dict], num_tokens: list[int], finish_reasons: list[str]) -> list[dict]:
    """The top and the bottom response of one group (by total reward; the first of equals), as two
    JSON-ready records with the prompt, the reference and every reward term."""
    order = sorted(range(len(texts)), key=lambda i: scores[i]["total"])
    records = []
    for rank, i in (("top", order[-1]), ("bottom", order[0])):
        records.append({
            "step": step, "group": group_index, "rank": rank, "prompt_id": sample.get("id", group_index),
            "prompt": prompt_text, "question": sample.get("question"), "reference": sample.get("answer"),
            "response": texts[i], "num_tokens": num_tokens[i], "finish_reason": finish_reasons[i],
            "rewards": {k: scores[i].get(k, 0.0) for k in (*TERMS, "total", *COUNTERS)},
            "group_total_mean": sum(s["total"] for s in scores) / len(scores),
        })
    return records


def write_rollouts(out_dir: str | Path, step: int, records: list[dict]) -> Path:
    """`<out_dir>/rollouts/step_N.jsonl`, one record per line (rewritten when a resumed run repeats N)."""
    path = Path(out_dir) / "rollouts" / f"step_{step}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
