"""MMMU open answers parsed as the authors' `eval_utils.py` parses them (parse_open_response,
extract_numbers, normalize_str, eval_open). Each expected value was worked out by hand from the
upstream code: its three number patterns run one after another over the text (all matches kept),
and its key-tail loop, where an empty tail replaces a longer one and is then replaced by any later
tail, and a sentence whose kept tail is empty gives no key response."""

import pytest

from nemo_vtp.eval.benchmarks.mmmu import eval_open, extract_numbers, parse_open

CASES = [
    # (response, gold, upstream's predictions, upstream's verdict)
    # Overlapping number fragments: the comma pattern takes "1,234", the simple one "234.5".
    ("The total is 1,234.5 dollars", "234.5", {"1,234.5 dollars", 1234.0, 234.5}, True),
    # Scientific notation: the simple pattern still finds "6" (before ".02e23") and "23".
    ("the value is 6.02e23", "23", {6.02e23, 6.0, 23.0}, True),
    # An empty tail after the final "=": no key in that sentence, so the whole response is searched.
    ("Step 1 gives 4\nthe answer is 6 =", "4", {"step 1 gives 4\nthe answer is 6 =", 1.0, 4.0, 6.0}, True),
    ("The result is 8 =", "the result", {"the result is 8 =", 8.0}, True),
    # Indicator order: "is " leaves an empty tail, then "final " replaces it although it is longer.
    ("final so 7 is \nok", "so 7", {"so 7 is", 7.0}, True),
    ("Therefore, the speed is 3.5 m/s.", "3.5", {"3.5 m/s", 3.5}, True),
    ("x = 5", "5", {5.0}, True),
    ("I think it is A", "a", {" a", "a "}, True),
    ("The answer is 12", "1.2", {12.0}, False),  # a numeric key is normalised to a number
]


@pytest.mark.parametrize(("response", "gold", "predictions", "correct"), CASES)
def test_parse_open_and_eval_open_follow_upstream(response, gold, predictions, correct):
    got = parse_open(response)
    assert set(got) == predictions and len(got) == len(predictions)
    assert eval_open([gold], got) is correct


def test_extract_numbers_runs_the_three_patterns_separately():
    assert extract_numbers("1,234.5 and 3e5") == ["1,234", "3e5", "234.5", "5"]
    assert extract_numbers("-2,000,000 or -.5") == ["-2,000,000", "000", "-.5"]  # the last group again
    assert extract_numbers("no digits") == []
