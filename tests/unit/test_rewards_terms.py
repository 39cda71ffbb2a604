"""Reward terms, one table per term, with expectations computed by hand from docs/rewards.md."""

import pytest

from nemo_vtp.config.rewards import RewardTags
from nemo_vtp.rewards.accuracy import accuracy
from nemo_vtp.rewards.consistency import consistency
from nemo_vtp.rewards.matching import coverage, coverage_level
from nemo_vtp.rewards.parsing import extract_sections, format_reward
from nemo_vtp.rewards.terms import overlong_penalty, repetition_penalty, response_length

# ---------------------------------------------------------------- R_fmt and section extraction
FMT_CASES = [
    ("<description>a</description><think>b</think><answer>c</answer>", 1.0),
    ("  <description>a</description>\n\n<think>b</think>\n<answer>c</answer>\n", 1.0),
    ("<description></description><think></think><answer></answer>", 1.0),  # format only; acc judges content
    ("Sure! <description>a</description><think>b</think><answer>c</answer>", 0.0),  # text before
    ("<description>a</description><think>b</think><answer>c</answer> done", 0.0),  # text after
    ("<description>a</description> so <think>b</think><answer>c</answer>", 0.0),  # text between
    ("<think>b</think><description>a</description><answer>c</answer>", 0.0),  # order
    ("<description>a</description><answer>c</answer>", 0.0),  # missing think
    ("<description>a</description><think>b</think><answer>c</answer><answer>d</answer>", 0.0),  # duplicated
    ("<description>a</description><think>b<think>x</think></think><answer>c</answer>", 0.0),  # nested
    ("<description>a</description><think>b</think><answer>c", 0.0),  # unclosed
    ("<description>a</description><thinkimg>b</thinkimg><answer>c</answer>", 0.0),  # wrong tag name
    ("<description>红色的圆</description><think>ü ≥ 3</think><answer>Ω</answer>", 1.0),  # unicode
]


@pytest.mark.parametrize(("response", "expected"), FMT_CASES)
def test_format_reward(response, expected):
    assert format_reward(response) == expected


def test_format_and_sections_with_renamed_tags():
    tags = RewardTags(description="perception", think="reasoning", answer="final")
    ok = "<perception>3 dots</perception><reasoning>so 3</reasoning><final>3</final>"
    assert format_reward(ok, tags) == 1.0
    assert format_reward(ok.replace("reasoning", "think"), tags) == 0.0
    assert extract_sections(ok, tags).think == "so 3"


SECTION_CASES = [
    # response, (description, think, answer)
    ("<description> d </description><think> t </think><answer> a </answer>", ("d", "t", "a")),
    ("no tags", ("", "", "")),
    ("<think>t</think>", ("", "t", "")),
    ("<answer>1</answer> wait <answer>2</answer>", ("", "", "2")),  # last answer wins
    ("<description>first</description><description>second</description>", ("first", "", "")),
    ("<think>a <think>b</think> c</think>", ("", "a <think>b", "")),  # first open to first close
    ("<answer>\n\n</answer>", ("", "", "")),
    ("<answer>a<answer>b</answer>", ("", "", "b")),  # the last block: from the last opening before it
    ("<answer>1</answer> and <answer>2", ("", "", "1")),  # an unclosed block is no block
    ("</think>x<think>", ("", "", "")),
]


def test_extraction_is_linear_on_degenerate_tags():
    import time

    response = "<answer><think><description>" * 20000 + "x" * 10000  # 560k chars, nothing closes
    start = time.perf_counter()
    sections = extract_sections(response)
    assert time.perf_counter() - start < 0.5  # a regex with .*? would rescan from every opening
    assert (sections.description, sections.think, sections.answer) == ("", "", "")
    assert format_reward(response) == 0.0


@pytest.mark.parametrize(("response", "expected"), SECTION_CASES)
def test_extract_sections(response, expected):
    s = extract_sections(response)
    assert (s.description, s.think, s.answer) == expected


# ---------------------------------------------------------------- R_acc
ACC_CASES = [
    # answer tag content, sample, expected
    ("3", {"answer": "3"}, 1.0),
    ("three", {"answer": "3"}, 1.0),
    ("twenty-one", {"answer": "21"}, 1.0),
    ("So the count is \\boxed{3}.", {"answer": "3"}, 1.0),
    ("\\boxed{3} no wait \\boxed{4}", {"answer": "3"}, 0.0),  # the last box counts
    ("4", {"answer": "3"}, 0.0),
    ("\\frac{1}{2}", {"answer": "0.5"}, 1.0),
    ("0.3333", {"answer": "1/3"}, 1.0),  # within the 1e-3 relative tolerance
    ("0.33", {"answer": "1/3"}, 0.0),  # outside it
    ("12 cm", {"answer": "12"}, 1.0),  # units ignored by the single-number check
    ("1,000", {"answer": "1000"}, 1.0),
    ("5%", {"answer": "5 percent"}, 1.0),
    ("0.5", {"answer": "½"}, 1.0),  # NFKC: ½ -> 1/2
    ("2", {"answer": "\\sqrt{2}"}, 0.0),  # LaTeX commands are not dropped
    ("\\frac{\\sqrt{8}}{2}", {"answer": "\\sqrt{2}"}, 1.0),  # math-verify
    ("(x+1)^2", {"answer": "x^2+2x+1"}, 1.0),  # math-verify
    ("x^2+1", {"answer": "x^2+2x+1"}, 0.0),
    ("Left.", {"answer": "left"}, 1.0),  # short text: case and punctuation
    ("right", {"answer": "left"}, 0.0),
    ("ba", {"answer": "ab"}, 0.0),  # plain words never go to math-verify (a*b == b*a)
    ("B", {"answer": "4 cm", "choices": ["3 cm", "4 cm"]}, 1.0),
    ("(b)", {"answer": "B", "choices": ["3 cm", "4 cm"]}, 1.0),
    ("4 centimeters", {"answer": "B", "choices": ["3 cm", "4 cm"]}, 1.0),  # option text
    ("B. 4 cm", {"answer": "B", "choices": {"A": "3 cm", "B": "4 cm"}}, 1.0),
    ("A", {"answer": "B", "choices": ["3 cm", "4 cm"]}, 0.0),
    ("4", {"answer": "B", "choices": ["3 cm", "4 cm"]}, 1.0),  # the one option holding that number
    ("4", {"answer": "A", "choices": ["4 cm", "4 m"]}, 0.0),  # ambiguous: no letter
    ("A triangle", {"answer": "A", "choices": ["square", "triangle"]}, 0.0),  # article, not a letter
    ("C", {"answer": "B", "choices": ["3 cm", "4 cm"]}, 0.0),  # out of range
    ("", {"answer": "3"}, 0.0),  # empty answer
    ("3", {"answer": ""}, 0.0),  # empty gold never matches
    ("7", {"answer": 7}, 1.0),  # non-string gold
]


@pytest.mark.parametrize(("answer", "sample", "expected"), ACC_CASES)
def test_accuracy(answer, sample, expected):
    assert accuracy(answer, sample) == expected


# ---------------------------------------------------------------- R_vkey / R_tkey matching
FACTS = ["3 red circles", "the blue bar is 7", "the clock shows 4:30", "total = 12 cm", "a gray square"]
COVERAGE_CASES = [
    # text, hand count of FACTS stated -> coverage
    ("Three red circles. The blue bar reaches 7. Clock reads 4:30. Total 12 centimeters. A grey square.", 5),
    ("Three red circles. The blue bar reaches 7. Clock reads 4:30. Total 12 centimeters.", 4),
    ("Three red circles. The blue bar reaches 7. Clock reads 4:30.", 3),
    ("3 red circles; the blue bar is 7.", 2),
    ("3 red circles", 1),
    ("3 blue circles and 2 red squares; the blue bar is 8; 4:35; total 13 cm", 0),
    ("", 0),
]


@pytest.mark.parametrize(("text", "stated"), COVERAGE_CASES)
def test_coverage_counts_stated_facts(text, stated):
    assert coverage(FACTS, text) == pytest.approx(stated / len(FACTS))


FACT_CASES = [
    # fact, text, found?
    ("3 red circles", "three circles, all of them red", True),
    ("3 red circles", "3 circles: blue, red", False),  # a foreign colour inside the window
    ("3 red circles", "3 squares " + "filler " * 30 + "red circles", False),  # too far apart
    ("21 dots", "twenty-one dots", True),
    ("half is 1/2", "half is 0.5", True),
    ("pi is about 3.1416", "pi is about 3.14", True),
    ("AB = 5 cm", "ab is 5 centimetres", True),
    ("AB = 5 cm", "ab is 6 cm", False),
    ("gray triangles", "a grey triangle", True),
    ("the circle is circular", "circle", True),  # circular -> circle
    ("the angle is 90°", "the angle is 90 degrees", True),
    ("Ｔｈｒｅｅ ｒｅｄ ｃｉｒｃｌｅｓ", "3 red circles", True),  # fullwidth unicode
    ("the cat is above the dog", "the cat is over the dog", True),
    ("the cat is above the dog", "the cat is below the dog", False),
]


@pytest.mark.parametrize(("fact", "text", "found"), FACT_CASES)
def test_fact_matching(fact, text, found):
    assert coverage([fact], text) == (1.0 if found else 0.0)


@pytest.mark.parametrize(("cov", "level"), [(1.0, 1.0), (0.8, 1.0), (0.79, 0.5), (0.4, 0.5), (0.39, 0.0), (0.0, 0.0)])
def test_coverage_levels(cov, level):
    assert coverage_level(cov, tau_hi=0.8, tau_lo=0.4) == level


def test_no_facts_gives_zero_coverage():
    assert coverage([], "anything") == 0.0


# ---------------------------------------------------------------- R_cons
DESC = "3 red circles and 2 blue squares. The blue bar is 7. The clock shows 4:30."
CONS_CASES = [
    # think, answer, question, expected; F and E counted by hand in the comments
    # F: colour red, circle, colour blue, square, numbers 3, 2 (5 derived) -> all in E
    ("3 red circles and 2 blue squares: 3 + 2 = 5", "5", "How many shapes?", 1.0),
    # conflict: (red, circle) bound to 4 in F and 3 in E
    ("4 red circles and 2 blue squares", "6", "How many shapes?", 0.0),
    # conflict: circle is blue in F, red in E
    ("the blue circle is larger", "yes", "", 0.0),
    # conflict: (blue, bar) = 5 vs 7
    ("the blue bar is 5", "5", "", 0.0),
    # conflict: clock bound to 5:30 vs 4:30
    ("the clock shows 5:30", "5:30", "", 0.0),
    # F: red, circle, green, triangle, numbers 3, 1 -> grounded: red, circle, 3 -> 3/6
    ("3 red circles and 1 green triangle", "3", "", 0.5),
    # F: circle (count binding), numbers 3, 5 (15 derived); 5 is grounded by the question only
    ("3 circles each weigh 5 kg: 3 * 5 = 15", "15", "Each circle weighs 5 kg.", 1.0),
    ("3 circles each weigh 5 kg: 3 * 5 = 15", "15", "", 2 / 3),
    # F: circle, square (count bindings), numbers 3, 2; the answer 5 is a result missing from E: no item
    ("3 circles and 2 squares", "5", "", 1.0),
    # the answer 3 is a result, but E holds it: an item, grounded. F = {circle, dot, 3, 9}: 2 grounded
    ("3 circles and 9 dots", "3", "", 0.5),
    # "the answer is 8" binds nothing: F = {2} (8 is a result missing from E) -> 1.0
    ("2 squares, so the answer is 8", "8", "", 1.0),
    # times: F = {4:30, 30, clock (bound to 4:30 in its clause)}; 5:00 follows `=` and is missing
    # from E, so it is no item (else 2/4)
    ("the clock shows 4:30, + 30 min = 5:00", "5:00", "", 2 / 3),
    # "= 5 shapes" binds a computed value: shape is no item; F = {red, circle, blue, square, 3, 2}
    ("3 red circles and 2 blue squares: 3 + 2 = 5 shapes", "5", "", 1.0),
    # F = {shape} (5 is the answer: a result missing from E); the question mentions shapes
    ("there are 5 shapes", "5", "How many shapes are there?", 1.0),
    ("there are 5 shapes and 9 dots", "5", "How many shapes are there?", 1 / 3),  # + dot, 9: ungrounded
    ("there are 5 shapes", "5", "", 0.0),
    ("", "", "", 0.0),  # nothing to ground: |F| = 0 -> 0 / max(1, 0)
]


@pytest.mark.parametrize(("think", "answer", "question", "expected"), CONS_CASES)
def test_consistency(think, answer, question, expected):
    assert consistency(think, answer, DESC, question) == pytest.approx(expected)


# ---------------------------------------------------------------- R_rep and R_overlong
REP_CASES = [
    # response, n, expected
    ("a b c a b c a b c", 3, -2.0 * (1 - 3 / 7)),  # 7 trigrams, 3 distinct
    ("A b C a B c", 3, -2.0 * (1 - 3 / 4)),  # lowercased: 4 trigrams, 3 distinct
    (" ".join(f"w{i}" for i in range(25)), 20, 0.0),  # 6 distinct 20-grams
    ("word " * 100, 20, -2.0 * (1 - 1 / 81)),  # 81 identical 20-grams
    ("too short", 20, 0.0),
    ("", 20, 0.0),
]


@pytest.mark.parametrize(("response", "n", "expected"), REP_CASES)
def test_repetition_penalty(response, n, expected):
    assert repetition_penalty(response, n=n, penalty=-2.0) == pytest.approx(expected)


OVERLONG_CASES = [(0, 0.0), (80, 0.0), (81, -0.05), (90, -0.5), (100, -1.0), (150, -1.0)]


@pytest.mark.parametrize(("tokens", "expected"), OVERLONG_CASES)
def test_overlong_penalty(tokens, expected):
    assert overlong_penalty(tokens, max_tokens=100, cache_tokens=20) == pytest.approx(expected)


def test_overlong_without_cache_is_a_hard_cliff():
    assert overlong_penalty(100, 100, 0) == 0.0
    assert overlong_penalty(101, 100, 0) == -1.0


def test_response_length_prefers_token_counts():
    assert response_length("a b  c\nd", None) == 4
    assert response_length("a b c d", 17) == 17


def test_repetition_penalty_matches_a_naive_reference():
    import random

    rng = random.Random(0)
    for n in (1, 2, 3, 20):
        for _ in range(20):
            words = [rng.choice(["a", "bb", "c", "dd"]) for _ in range(rng.randint(0, 60))]
            grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
            want = -2.0 * (1 - len(set(grams)) / len(grams)) if len(words) >= n else 0.0
            assert repetition_penalty(" ".join(words), n=n) == pytest.approx(want)
