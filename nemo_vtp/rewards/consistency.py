"""R_cons: are the items the reasoning uses grounded in the description and the question?

Definitions (on the canonical tokens of normalize.py, upper-case labels kept: "angle A", "AB"):
- A *noun* is a word token that is not a stopword, colour, unit or linking verb.
- *Bindings* tie a value to an entity key (colour, noun); colour is "" when none is given:
  count  `NUM [COLOUR] NOUN`                 "3 red circles"      -> (red, circle) = 3
  value  `[COLOUR] NOUN LINK{1,3} NUM|TIME`  "the blue bar is 7"  -> (blue, bar) = 7
         (LINK: is/are/was/were/=/equals/equal/to/shows/reads/measures/of; the value must not be
         followed by an operator, so `total = 3 + 4` binds nothing)
  colour `COLOUR NOUN` (one word may sit between) or `NOUN is COLOUR` -> noun has that colour.
- Bindings never cross a clause boundary (punctuation: "AB = AC = 5, triangle ABC" binds nothing to
  triangle), and a noun after an operator is a term, not an entity ("AB + BC = 12" binds nothing).
- A *noun* excludes words about the task (answer, question, result, solution, option, choice, step,
  problem): "the answer is 8" binds nothing.
- *Results* of the reasoning: numbers and times that follow `=` or `≈` anywhere in think + answer,
  and the numbers and times of the answer block (computed, so not expected in the evidence).
- *Items* of the reasoning (F, from think + answer): colour words, clock times, numbers, and nouns
  that take part in a binding, except bindings to a computed value ("total = 5", "= 5 shapes"); a
  result is an item only when the evidence holds it too (then it counts as grounded).
- *Evidence* (E, from description + question): its colour words, clock times, all its numbers, and
  every noun it mentions (bound or not: "How many shapes are there?" grounds "5 shapes").
- cons = |F ∩ E| / max(1, |F|); numbers match within tolerance.
- *Conflict* (cons = 0): a key bound to numbers or times in both F and E with no value in common, or
  a noun given colours in both with no colour in common ("3 red circles" vs "4 red circles";
  "a red circle" vs "the blue circle").
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field

from nemo_vtp.rewards.normalize import (
    COLOURS,
    STOPWORDS,
    UNITS,
    Token,
    numbers_close,
    tokenize,
)

_LINKS = frozenset(
    ["is", "are", "was", "were", "=", "equals", "equal", "to", "shows", "show", "reads", "read", "measures",
     "measure", "of"]
)
# Words about the task, not things in the image: "the answer is 8" binds nothing.
_META_NOUNS = frozenset(["answer", "question", "result", "solution", "option", "choice", "step", "problem"])
_OPERATORS = frozenset(["+", "-", "*", "/", "^"])


@dataclass
class Items:
    words: set[tuple[str, str]] = field(default_factory=set)  # ("colour"|"time"|"entity", text)
    numbers: list[float] = field(default_factory=list)  # non-derived values, deduplicated
    values: dict[tuple[str, str], list] = field(default_factory=dict)  # key -> bound numbers/times
    colours: dict[str, set[str]] = field(default_factory=dict)  # noun -> colours given to it
    nouns: set[str] = field(default_factory=set)  # every noun mentioned (only filled for evidence)


def _is_noun(tok: Token | None) -> bool:
    return (tok is not None and tok.kind == "word" and tok.text not in STOPWORDS and tok.text not in COLOURS
            and tok.text not in UNITS and tok.text not in _LINKS and tok.text not in _META_NOUNS)


def _at(tokens: list[Token], i: int) -> Token | None:
    return tokens[i] if 0 <= i < len(tokens) else None


def _bind_value(items: Items, key: tuple[str, str], value, is_item: bool = True) -> None:
    items.values.setdefault(key, []).append(value)
    if is_item:
        items.words.add(("entity", key[1]))


def _count_binding(tokens: list[Token], i: int, items: Items) -> None:
    colour = ""
    j = i + 1
    if _at(tokens, j) is not None and tokens[j].text in COLOURS:
        colour, j = tokens[j].text, j + 1
    if _is_noun(_at(tokens, j)):
        prev = _at(tokens, i - 1)
        computed = prev is not None and prev.text in ("=", "≈")  # "3 + 2 = 5 shapes"
        _bind_value(items, (colour, tokens[j].text), tokens[i].value, not computed)


def _value_binding(tokens: list[Token], i: int, items: Items) -> None:
    prev = _at(tokens, i - 1)
    if prev is not None and prev.text in _OPERATORS:  # "AB + BC = 12": BC is a term, not bound to 12
        return
    colour = prev.text if prev is not None and prev.text in COLOURS else ""
    j = i + 1
    while j < len(tokens) and j <= i + 3 and tokens[j].text in _LINKS:
        j += 1
    value, after = _at(tokens, j), _at(tokens, j + 1)
    if j == i + 1 or value is None or value.kind not in ("num", "time"):
        return
    if after is not None and after.text in _OPERATORS:
        return
    computed = any(t.text in ("=", "≈") for t in tokens[i + 1:j])  # "total = 5": a result, not an entity seen
    _bind_value(items, (colour, tokens[i].text), value.value if value.kind == "num" else value.text, not computed)


def _colour_binding(tokens: list[Token], i: int, items: Items) -> None:
    colour = tokens[i].text
    for j in (i + 1, i + 2):
        if _at(tokens, j) is None or tokens[j].kind == "sep":  # "red, circle": a clause boundary
            break
        if _is_noun(_at(tokens, j)):
            items.colours.setdefault(tokens[j].text, set()).add(colour)
            items.words.add(("entity", tokens[j].text))
            return
    prev, prev2 = _at(tokens, i - 1), _at(tokens, i - 2)
    if prev is not None and prev.text in ("is", "are", "was", "were") and _is_noun(prev2):
        items.colours.setdefault(prev2.text, set()).add(colour)
        items.words.add(("entity", prev2.text))


def extract_items(text: str | tuple[Token, ...], all_nouns: bool = False) -> Items:
    """Items and bindings of a text or its tokens (derived numbers still present; see `consistency`).

    >>> it = extract_items("There are 3 red circles; the blue bar is 7 at 4:30.")
    >>> sorted(it.words)
    [('colour', 'blue'), ('colour', 'red'), ('entity', 'bar'), ('entity', 'circle'), ('time', '4:30')]
    >>> it.numbers, it.values[("red", "circle")], it.values[("blue", "bar")], it.colours["bar"]
    ([3.0, 7.0], [3.0], [7.0], {'blue'})
    """
    tokens = tokenize(text, labels=True) if isinstance(text, str) else text
    items = Items()
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        kind = tok.kind
        if kind == "num":
            items.numbers.append(tok.value)
            _count_binding(tokens, i, items)
        elif kind == "time":
            items.words.add(("time", tok.text))
        elif kind != "word":
            continue
        elif tok.text in COLOURS:
            items.words.add(("colour", tok.text))
            _colour_binding(tokens, i, items)
        elif all_nouns and _is_noun(tok):
            items.nouns.add(tok.text)
            if i < last and tokens[i + 1].text in _LINKS:
                _value_binding(tokens, i, items)
        elif i < last and tokens[i + 1].text in _LINKS and _is_noun(tok):  # cheap test first: most words
            _value_binding(tokens, i, items)
    return items


def derived_numbers(text: str | tuple[Token, ...]) -> list[float]:
    """Values that follow `=` or `≈` (computed results).

    >>> derived_numbers("3 + 4 = 7, and 7 * 2 ≈ 14.0")
    [7.0, 14.0]
    """
    tokens = tokenize(text) if isinstance(text, str) else text
    return [t.value for prev, t in itertools.pairwise(tokens) if t.kind == "num" and prev.text in ("=", "≈")]


def _values_agree(a: list, b: list, rel_tol: float, abs_tol: float) -> bool:
    for x in set(a):  # sets: a degenerate response may repeat one binding thousands of times
        for y in set(b):
            if isinstance(x, float) and isinstance(y, float):
                if numbers_close(x, y, rel_tol, abs_tol):
                    return True
            elif x == y:
                return True
    return False


def has_conflict(reasoning: Items, evidence: Items, rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> bool:
    """A key bound to different values, or a noun given different colours, in reasoning and evidence."""
    for key, values in reasoning.values.items():
        if key in evidence.values and not _values_agree(values, evidence.values[key], rel_tol, abs_tol):
            return True
    return any(noun in evidence.colours and not cols & evidence.colours[noun]
               for noun, cols in reasoning.colours.items())


def _has_close(sorted_values: list[float], v: float, rel_tol: float, abs_tol: float) -> bool:
    """Is a value of the sorted list within tolerance of v? Only the neighbours of v can be."""
    k = bisect.bisect_left(sorted_values, v)
    return any(numbers_close(v, sorted_values[j], rel_tol, abs_tol) for j in (k - 1, k) if 0 <= j < len(sorted_values))


def _distinct(values: list[float], rel_tol: float, abs_tol: float) -> list[float]:
    """Sorted values with near-equal neighbours merged."""
    out: list[float] = []
    for v in sorted(set(values)):
        if not out or not numbers_close(v, out[-1], rel_tol, abs_tol):
            out.append(v)
    return out


_SEPARATOR = Token("op", "|")  # between joined texts, so no binding spans two of them


def _results(f_tokens: tuple[Token, ...], answer_tokens: tuple[Token, ...]) -> tuple[list[float], set[str]]:
    """Result values of the reasoning: numbers and times after `=`/`≈`, and those of the answer."""
    numbers = derived_numbers(f_tokens) + [t.value for t in answer_tokens if t.kind == "num"]
    times = {t.text for prev, t in itertools.pairwise(f_tokens) if t.kind == "time" and prev.text in ("=", "≈")}
    return numbers, times | {t.text for t in answer_tokens if t.kind == "time"}


def consistency(think: str, answer: str, description: str, question: str,
                rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> float:
    """R_cons in [0, 1] (definitions in the module docstring).

    >>> desc, q = "3 red circles and 2 blue squares.", "How many shapes are there?"
    >>> consistency("3 red circles + 2 blue squares: 3 + 2 = 5", "5", desc, q)
    1.0
    >>> consistency("4 red circles and 2 blue squares: 4 + 2 = 6", "6", desc, q)
    0.0
    >>> consistency("3 red circles and 1 green triangle", "3", desc, q)  # 3 of 6 items grounded
    0.5
    """
    answer_tokens = tokenize(answer, labels=True)
    f_tokens = (*tokenize(think, labels=True), _SEPARATOR, *answer_tokens)
    f_items = extract_items(f_tokens)
    e_items = extract_items((*tokenize(description, labels=True), _SEPARATOR, *tokenize(question, labels=True)),
                            all_nouns=True)
    if has_conflict(f_items, e_items, rel_tol, abs_tol):
        return 0.0
    result_numbers, result_times = _results(f_tokens, answer_tokens)
    result_numbers = _distinct(result_numbers, rel_tol, abs_tol)
    e_numbers = _distinct(e_items.numbers, rel_tol, abs_tol)
    evidence = e_items.words | {("entity", noun) for noun in e_items.nouns}
    # A result needs no grounding (it is computed), but counts as grounded when the evidence has it.
    f_words = {w for w in f_items.words if not (w[0] == "time" and w[1] in result_times) or w in evidence}
    f_numbers = [v for v in _distinct(f_items.numbers, rel_tol, abs_tol)
                 if not _has_close(result_numbers, v, rel_tol, abs_tol) or _has_close(e_numbers, v, rel_tol, abs_tol)]
    grounded = len(f_words & evidence) + sum(_has_close(e_numbers, v, rel_tol, abs_tol) for v in f_numbers)
    return grounded / max(1, len(f_words) + len(f_numbers))
