"""Hacking signals and rollout records (nemo_vtp/rl/rollout_log.py): pure functions on plain data."""

import doctest
import json

import pytest

import nemo_vtp.rl.rollout_log as rollout_log
from nemo_vtp.config.rewards import RewardTags
from nemo_vtp.rl.rollout_log import group_records, hacking_signals, is_canonical_answer, write_rollouts

MC = {"answer": "B", "choices": ["3 cm", "4 cm", "5 cm"]}


@pytest.mark.parametrize("answer, sample, canonical", [
    ("B", MC, True),
    ("(c)", MC, True),
    ("4 cm", MC, False),  # right option, but in words: not the letter the format asks for
    ("B or C", MC, False),
    ("7", {"answer": "7"}, True),
    (r"\boxed{7}", {"answer": "7"}, True),
    ("7 cm", {"answer": "7"}, True),  # a unit may ride along with the number
    ("7 apples", {"answer": "7"}, False),  # a noun may not
    ("7 or 8", {"answer": "7"}, False),
    ("the answer is seven because we counted", {"answer": "7"}, False),
    ("4:30", {"answer": "4:30"}, True),
    ("red", {"answer": "blue"}, True),  # wrong, but in the reference's form
    ("red, blue or green", {"answer": "blue"}, False),
    ("", {"answer": "7"}, False),
])
def test_canonical_answer_table(answer, sample, canonical):
    assert is_canonical_answer(answer, sample) is canonical


def test_signals_count_each_case():
    tags = RewardTags(answer="ans")
    responses = ["<ans>7</ans>", "<ans>7 or 8 or 9</ans>", "no tag at all", "<ans>8</ans>"]
    scores = [{"vkey": 1.0, "tkey": 1.0, "acc": 1.0}, {"vkey": 1.0, "tkey": 1.0, "acc": 0.0},
              {"vkey": 0.5, "tkey": 1.0, "acc": 0.0}, {"vkey": 1.0, "tkey": 1.0, "acc": 0.0}]
    got = hacking_signals(responses, [{"answer": "7"}] * 4, scores, tags)
    assert got == {"answer_words_mean": (1 + 5 + 0 + 1) / 4, "noncanonical_answer_rate": 2 / 4,
                   "perfect_perception_wrong_rate": 2 / 4}
    assert hacking_signals([], [], []) == {"answer_words_mean": 0.0, "noncanonical_answer_rate": 0.0,
                                           "perfect_perception_wrong_rate": 0.0}


def test_group_records_pick_top_and_bottom_and_write_jsonl(tmp_path):
    terms = {"acc": 0.0, "fmt": 1.0, "vkey": 0.5, "tkey": 0.0, "cons": 0.0, "rep": 0.0, "overlong": 0.0}
    scores = [{**terms, "total": t} for t in (0.3, 1.2, -0.4, 1.2)]
    sample = {"id": "q7", "question": "How many?", "answer": "3"}
    records = group_records(5, 0, "<|im_start|>user ...", sample, ["a", "b", "c", "d"], scores, [4, 5, 6, 7],
                            ["stop", "stop", "length", "stop"])
    assert [(r["rank"], r["response"], r["num_tokens"], r["finish_reason"]) for r in records] == [
        ("top", "d", 7, "stop"), ("bottom", "c", 6, "length")]
    assert records[0]["rewards"]["total"] == 1.2 and records[0]["rewards"]["judge_failures"] == 0.0
    assert records[0]["group_total_mean"] == pytest.approx(0.575)
    assert (records[0]["prompt_id"], records[0]["reference"], records[0]["step"]) == ("q7", "3", 5)
    path = write_rollouts(tmp_path, 5, records)
    assert path == tmp_path / "rollouts" / "step_5.jsonl"
    assert [json.loads(line) for line in path.read_text().splitlines()] == records


def test_docstring_examples_run():
    assert doctest.testmod(rollout_log).failed == 0
