"""R_acc: does the `<answer>` (or the last `\\boxed{}` in it) equal the ground truth?

Two guards first, against answers that game the checks below; either gives 0:
- several candidates: the answer lists two or more different candidates ("3 or 4", "A, B, C, D",
  "x = 3 or x = 4") while the gold answer is one;
- far too many digits: a number with more than `MAX_EXTRA_DIGITS` digits beyond the gold answer's
  longest ("3.0000000000000000000001", a 309-digit number that parses to infinity).
Non-finite numbers never equal anything (normalize.numbers_close). Then, cheapest first, the first
check that applies decides:
1. multiple choice (the sample has `choices`): both sides resolve to an option letter (the letter
   itself, "(B)", "B.", "Option B", or the option's text) and the letters are equal;
2. normalised text: equal canonical token sequences ("Three", "3"; "4:30 PM" vs "4:30 pm");
3. single numbers: both sides hold exactly one number (units ignored), equal within tolerance; an
   answer of plain words (no digits, LaTeX or operators) for a numeric gold is wrong;
4. math-verify `verify(parse(gold), parse(answer))`, only when the gold answer looks mathematical
   (digits, LaTeX, operators): for plain words it would call "ab" and "ba" equal (a*b = b*a).
"""

from __future__ import annotations

import re
import string
import threading

from nemo_vtp.rewards.normalize import UNITS, content_tokens, numbers_close, tokenize
from nemo_vtp.rewards.parsing import last_boxed

_LETTER_RE = re.compile(r"\(?([A-Za-z])\)?[.):]?")  # "B", "(b)", "B."
_NAMED_LETTER_RE = re.compile(  # "Option B", "the answer is (b)"
    r"(?:the\s+)?(?:answer|option|choice)\s*(?:is)?\s*:?\s*\(?([A-Za-z])\)?[.)]?", re.IGNORECASE)
_LETTER_TEXT_RE = re.compile(r"\(?([A-Za-z])[.):]\)?\s+(.+)", re.DOTALL)  # "B. 4 cm", "(B) 4 cm"
_MATHY_RE = re.compile(r"[\d\\^=+*/()\[\]{}]")
# Separators of alternatives: "or", "and", "either", commas (not thousands separators), semicolons,
# a slash between letters ("A/B"), LaTeX "\lor"/"\vee".
_ALTERNATIVES_RE = re.compile(
    r",(?!\d{3}(?!\d))|;|(?<=[A-Za-z)])\s*/\s*(?=[A-Za-z(])|\b(?:or|and|either)\b|\\lor\b|\\vee\b", re.IGNORECASE)
_DIGITS_RE = re.compile(r"\d[\d,.]*")
MAX_EXTRA_DIGITS = 16  # a float prints at most 17 significant digits: more than this beyond the gold is padding


def _choice_texts(choices) -> list[str]:
    """Option texts in letter order, from a list or a {letter: text} mapping."""
    if isinstance(choices, dict):
        return [str(choices[k]) for k in sorted(choices)]
    return [str(c) for c in choices]


def _canon(text: str) -> tuple[str, ...]:
    return tuple(t.text for t in tokenize(text) if t.kind != "sep")


def choice_letter(text: str, choices) -> str | None:
    """The option letter `text` names, or None. A letter followed by text ("B. 4 cm") counts only when
    the text is that option's, so "A triangle" is not option A.

    >>> opts = ["3 cm", "4 cm", "5 cm"]
    >>> [choice_letter(t, opts) for t in ["B", "(c)", "Option A", "B. 4 cm", "B. 5 cm", "5 centimeters", "D", "6"]]
    ['B', 'C', 'A', 'B', None, 'C', None, None]
    >>> choice_letter("4", opts), choice_letter("4", ["4 cm", "4 m"])  # a bare number: only if unambiguous
    ('B', None)
    """
    texts = _choice_texts(choices)
    stripped = text.strip()
    m = _LETTER_RE.fullmatch(stripped) or _NAMED_LETTER_RE.fullmatch(stripped)
    rest = ""
    if m is None:
        m = _LETTER_TEXT_RE.fullmatch(stripped)
        rest = m.group(2) if m else ""
    if m:
        index = string.ascii_uppercase.index(m.group(1).upper())
        if index < len(texts) and (not rest or _canon(rest) == _canon(texts[index])):
            return string.ascii_uppercase[index]
        if index < len(texts):
            return None  # "B. 5 cm" names option B but states another option's text: ambiguous
    canon = _canon(stripped)
    for i, option in enumerate(texts):
        if canon and canon == _canon(option):
            return string.ascii_uppercase[i]
    value = single_number(stripped)  # "4" for the option "4 cm", when exactly one option has that number
    if value is not None:
        hits = [i for i, option in enumerate(texts) if single_number(option) == value]
        if len(hits) == 1:
            return string.ascii_uppercase[hits[0]]
    return None


def single_number(text: str) -> float | None:
    """The value when `text` holds exactly one number and otherwise only units; else None.

    >>> single_number("12 cm"), single_number("1/2"), single_number("3 or 4"), single_number("x")
    (12.0, 0.5, None, None)
    """
    toks = [t for t in content_tokens(tokenize(text)) if not (t.kind == "word" and t.text in UNITS)]
    if len(toks) == 1 and toks[0].kind == "num":
        return toks[0].value
    return None


def candidates(text: str) -> set[tuple[str, ...]]:
    """The distinct answer-like parts of `text` (parts with a number, or a lone letter), split at
    the separators of alternatives.

    >>> sorted(candidates("3 or 4")), sorted(candidates("A, B")), candidates("1,000"), candidates("Yes, 4")
    ([('3',), ('4',)], [('a',), ('b',)], {('1000',)}, {('4',)})
    """
    out = set()
    for part in _ALTERNATIVES_RE.split(text):
        toks = tuple(t.text for t in tokenize(part) if t.kind != "sep")
        if any(t.kind in ("num", "time") for t in tokenize(part)) or (len(toks) == 1 and len(toks[0]) == 1):
            out.add(toks)
    return out


def _longest_number(text: str) -> int:
    """Digits in the longest number of `text`."""
    return max((sum(c.isdigit() for c in m) for m in _DIGITS_RE.findall(text)), default=0)


def gamed(pred: str, gold: str) -> bool:
    """The answer lists several different candidates for one gold answer, or pads a number far
    beyond the gold's digits (see the module docstring).

    >>> gamed("3 or 4", "4"), gamed("A, B, C, D", "B"), gamed("9" * 309, "7"), gamed("(3, 4)", "(3, 4)")
    (True, True, True, False)
    >>> gamed("0.3333333333333333", "1/3"), gamed("3.00000000000000000001", "3")
    (False, True)
    """
    if len(candidates(pred)) > 1 and len(candidates(gold)) <= 1:
        return True
    return _longest_number(pred) > _longest_number(gold) + MAX_EXTRA_DIGITS


def _math_verify(gold: str, pred: str, timeout_s: int) -> bool:
    from math_verify import (  # imported here: sympy costs ~1 s and most answers never need it
        parse,
        verify,
    )

    # math-verify's alarm only works in the main thread; elsewhere the worker pool's kill is the guard.
    t = timeout_s if timeout_s > 0 and threading.current_thread() is threading.main_thread() else None

    def wrap(s: str) -> str:
        return s if "$" in s or "\\(" in s or "\\[" in s else f"${s}$"

    return bool(verify(parse(wrap(gold), parsing_timeout=t), parse(wrap(pred), parsing_timeout=t), timeout_seconds=t))


def answer_text(answer: str) -> str:
    """The part of an `<answer>` that is graded: its last `\\boxed{}` when present, else all of it."""
    boxed = last_boxed(answer)
    return (boxed if boxed is not None else answer).strip()


def rule_accuracy(answer: str, sample: dict, rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> float | None:
    """Checks 1-3 of the module docstring (fast, bounded time): 0.0 or 1.0 when they decide, None
    when only math-verify can."""
    pred, gold = answer_text(answer), answer_text(str(sample["answer"]))
    if not pred or not gold or gamed(pred, gold):
        return 0.0
    choices = sample.get("choices")
    if choices:
        gold_letter = choice_letter(gold, choices)
        if gold_letter is not None:
            return float(choice_letter(pred, choices) == gold_letter)
    canon = _canon(pred)
    if canon and canon == _canon(gold):
        return 1.0
    g_num, p_num = single_number(gold), single_number(pred)
    if g_num is not None and p_num is not None:
        return float(numbers_close(g_num, p_num, rel_tol, abs_tol))
    if g_num is not None and not _MATHY_RE.search(pred):  # plain words ("nan", "many") for a number
        return 0.0
    return None if _MATHY_RE.search(gold) else 0.0


def accuracy(answer: str, sample: dict, math_verify_timeout_s: int = 3,
             rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> float:
    """R_acc in {0.0, 1.0} for the text inside the answer tag.

    >>> accuracy(r"\\boxed{\\frac{1}{2}}", {"answer": "0.5"})
    1.0
    >>> accuracy("B", {"answer": "4 cm", "choices": ["3 cm", "4 cm"]})
    1.0
    >>> accuracy("seven", {"answer": "7"}), accuracy("", {"answer": "7"})
    (1.0, 0.0)
    """
    decided = rule_accuracy(answer, sample, rel_tol, abs_tol)
    if decided is not None:
        return decided
    gold = answer_text(str(sample["answer"]))
    return float(_math_verify(gold, answer_text(answer), math_verify_timeout_s))
