"""Rule-based key-fact matching and the three-level coverage reward (R_vkey, R_tkey).

A fact ("3 red circles", "the top bar is longer than the bottom bar", "AB = 5 cm") is covered by a
text when the text states it inside one clause (docs/rewards.md, "Matching", lists every rule):
1. every content token of the fact (numbers within tolerance, times, labels, canonical words; see
   normalize.py) occurs in one window of at most `len(fact tokens) - 1 + slack` content tokens;
2. the window lies inside one clause: clauses end at `, ; : . ! ?`, a line break, and the
   conjunctions of `_CONJUNCTIONS` ("and" inside "between 3 and 4" or "both X and Y" does not end
   one); a segment that names no entity joins its neighbour (", all red"; "In 2019, ...");
3. the clause has the fact's polarity (an odd number of negations flips it) and is not hedged
   ("maybe", "or", "would") nor inside a condition ("if", "suppose" up to the end of the sentence);
4. the window holds no colour, label, position or number of another entity than the fact's own, no
   comparison word the fact lacks ("more than 7" is not 7), and a fact's value is not matched by a
   count ("the orange bar is 3" is not "3 bars");
5. a number with a unit in the fact needs the same unit, or a convertible one, after the text's
   number when the text gives one (3 cm = 30 mm, 3 cm is not 3 m);
6. a comparison keeps its direction: "A is longer than B" is found as "A ... longer ... B" or as
   "B ... shorter ... A" (antonyms swap the sides), never as "B is longer than A";
7. no other clause gives the same entity and relation another value ("the red bar is 7. The red
   bar is 5." states neither: a text that lists every candidate earns nothing for it);
8. in an equation the result follows the operands ("2 + 1 = 3" states "1 + 2 = 3", "3 + 1 = 2" not).
"""

from __future__ import annotations

import bisect
import heapq
import operator
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate, compress

from nemo_vtp.rewards.normalize import (
    COLOURS,
    NEGATORS,
    OPERATORS,
    SEPARATORS,
    STOPWORDS,
    UNITS,
    Token,
    clean_text,
    numbers_close,
    tokenize,
)

# The rules, in words: docs/rewards.md lists them and the LLM judge's prompt carries them verbatim,
# so both matchers credit the same thing.
RULES = (
    "A fact counts only when the text states it inside one clause: a value stated in another clause, "
    "or bound to another entity, does not count (in 'DE = 12 and EF = 9', EF is 9, not 12).",
    "The entity must be the same, with the same qualifiers: colour, year, label or vertex name, and "
    "position (top/bottom, left/right).",
    "Negation flips a statement: 'the square is not shaded' does not state 'the square is shaded'.",
    "Hedged or hypothetical statements state nothing: 'maybe 7', '3 or 4', 'about 7', 'more than 7', "
    "'if the bar were 7', 'it would be 7'.",
    "Comparisons keep their direction: 'A is longer than B' equals 'B is shorter than A' but not "
    "'B is longer than A' (also taller/shorter, left/right, above/below, more/fewer, before/after, "
    "greater/less).",
    "Numbers must be equal and units must agree after conversion: 3 cm = 30 mm, but 3 cm is not 3 m; "
    "a value is not a count ('the orange bar is 3' is not '3 bars').",
    "A text that gives the same entity several different values (listing candidates) states none of them.",
    "Paraphrases count: number words, symbols (∠, °, ∥, ⊥), 'measures/reaches/is/equals', reordered "
    "clauses and synonyms.",
)

# Words that end a clause (besides punctuation, see normalize.SEPARATORS).
_CONJUNCTIONS = frozenset(["and", "but", "while", "whilst", "whereas", "although", "though", "however", "yet",
                           "because", "so", "except"])
# A clause with one of these states nothing for sure: "maybe 7", "3 or 4", "it would be 7".
HEDGES = frozenset(["maybe", "perhaps", "possibly", "probably", "likely", "would", "could", "might", "or",
                    "either", "whether", "guess", "unsure", "uncertain", "unclear"])
# A condition holds until the end of its sentence: "if the bar were 7, the sum would be 12".
CONDITIONS = frozenset(["if", "suppose", "supposing", "assume", "assuming", "imagine", "hypothetically",
                        "unless"])
_ORDER_OPS = frozenset([">", "<"])  # operators that are content: "2 > 1" is a comparison
_SENTENCE_ENDS = frozenset([".", "!", "?", ";", "\n"])
# ", all red": a comma tail of these words (and colours, stopwords) qualifies the clause before it.
_TAIL_WORDS = frozenset(["all", "each", "both", "every", "them", "they", "one", "too", "also"])
POSITIONS = frozenset(["left", "right", "top", "bottom", "middle", "center", "upper", "lower", "first", "second",
                       "third", "fourth", "last", "front", "back", "inner", "outer"])
# Comparison words (canonical forms, see normalize.SYNONYMS) -> (axes, sign). Two words compare the
# same thing when their axes meet; opposite signs are antonyms ("shorter" is the antonym of both
# "longer" and "higher", since "taller" becomes "higher").
COMPARATORS: dict[str, tuple[frozenset, int]] = {
    "larger": (frozenset(["amount"]), 1), "more": (frozenset(["amount"]), 1), ">": (frozenset(["amount"]), 1),
    "less": (frozenset(["amount"]), -1), "smaller": (frozenset(["amount"]), -1), "<": (frozenset(["amount"]), -1),
    "longer": (frozenset(["length"]), 1), "shorter": (frozenset(["length", "height"]), -1),
    "higher": (frozenset(["height"]), 1), "lower": (frozenset(["height"]), -1),
    "above": (frozenset(["vertical"]), 1), "below": (frozenset(["vertical"]), -1),
    "right": (frozenset(["horizontal"]), 1), "left": (frozenset(["horizontal"]), -1),
    "after": (frozenset(["time"]), 1), "later": (frozenset(["time"]), 1),
    "before": (frozenset(["time"]), -1), "earlier": (frozenset(["time"]), -1),
    "wider": (frozenset(["width"]), 1), "narrower": (frozenset(["width"]), -1),
    "heavier": (frozenset(["weight"]), 1), "lighter": (frozenset(["weight"]), -1),
    "older": (frozenset(["age"]), 1), "younger": (frozenset(["age"]), -1),
}
# Words that make a number a bound rather than a value: "more than 7", "at least 7", "about 7".
_APPROXIMATORS = frozenset(["least", "most", "almost", "nearly", "approximately", "about", "around", "roughly"])
# Units -> (dimension, size in the dimension's base unit), for "3 cm" = "30 mm".
UNIT_SCALES = {
    "mm": ("length", 1e-3), "cm": ("length", 1e-2), "m": ("length", 1.0), "km": ("length", 1e3),
    "inch": ("length", 0.0254), "ft": ("length", 0.3048), "g": ("mass", 1.0), "kg": ("mass", 1e3),
    "min": ("time", 60.0), "hour": ("time", 3600.0), "ml": ("volume", 1e-3), "l": ("volume", 1.0),
    "degree": ("angle", 1.0), "radian": ("angle", 57.29577951308232), "percent": ("percent", 1.0), "usd": ("money", 1.0),
}
# Never content tokens here.
_IGNORED = STOPWORDS | NEGATORS | HEDGES | CONDITIONS | _CONJUNCTIONS


def _is_negation(text: str) -> bool:
    return text in NEGATORS or text.endswith("n't")


@dataclass
class IndexedText:
    """Content tokens of a text with their clauses, indexed for repeated fact look-ups."""

    tokens: list[Token]  # content tokens
    clause: list[int] = field(default_factory=list)  # content token -> clause id
    unit: list[str | None] = field(default_factory=list)  # content token -> unit right after a number
    counts: list[bool] = field(default_factory=list)  # content token -> a number that counts a noun
    chained: list[bool] = field(default_factory=list)  # content token -> between two "=" ("AB = AC = 5")
    negated: list[bool] = field(default_factory=list)  # clause id -> odd number of negations
    hedged: list[bool] = field(default_factory=list)  # clause id -> hedged or under a condition
    words: dict[str, list[int]] = field(default_factory=dict)  # canonical word/time -> positions
    numbers: list[tuple[int, float]] = field(default_factory=list)  # (position, value)
    integers: dict[float, list[int]] = field(default_factory=dict)  # integer value -> positions
    fractions: list[tuple[int, float]] = field(default_factory=list)  # (position, value) of the others
    raw: str = ""  # the text itself, for facts without content tokens (cleaned only then)

    @classmethod
    def build(cls, text: str) -> IndexedText:
        index = cls(tokens=[], raw=text)
        _index_tokens(index, tokenize(text, labels=True))
        words: defaultdict[str, list[int]] = defaultdict(list)  # numbers too: no word is spelt as one
        for pos, text_ in enumerate(map(_TEXT, index.tokens)):
            words[text_].append(pos)
        index.words = words
        index.numbers = [(pos, tok.value) for pos, tok in enumerate(index.tokens) if tok.kind == "num"]
        integers: defaultdict[float, list[int]] = defaultdict(list)
        for pos, value in index.numbers:
            if value.is_integer():
                integers[value].append(pos)
            else:
                index.fractions.append((pos, value))
        index.integers = integers
        return index


def _boundaries(texts: list[str]) -> list[int]:
    """Indices of the tokens that end a clause: separators and conjunctions, except an "and" inside
    "between 3 and 4" or "both X and Y"."""
    bounds = list(compress(range(len(texts)), map(_BOUNDARY_TEXTS.__contains__, texts)))
    if "between" not in texts and "both" not in texts:
        return bounds
    kept: list[int] = []
    for i in bounds:
        start = kept[-1] + 1 if kept else 0
        if texts[i] != "and" or ("between" not in texts[start:i] and "both" not in texts[start:i]):
            kept.append(i)
    return kept


def _nounless(tokens: tuple[Token, ...], start: int, end: int) -> bool:
    """Does tokens[start:end] name no entity: only numbers, units, colours and words like "all"?"""
    found = False
    for i in range(start, end):  # stops at the first entity word: most segments start with one
        tok = tokens[i]
        if tok.kind in ("sep", "op") or tok.text in _IGNORED:
            continue
        if tok.kind not in ("num", "time") and tok.text not in _NOUNLESS_WORDS:
            return False
        found = True
    return found


def _clause_spans(tokens: tuple[Token, ...], texts: list[str]) -> list[tuple[int, int]]:
    """(start, end) token ranges of the clauses, `end` the boundary token (or len(tokens)). A segment
    that names no entity joins a neighbour: a lead ("In 2019, sales were 40") the clause after it, a
    tail after a comma or colon ("three circles, all red"; "yellow bar: 2") the clause before it."""
    spans: list[tuple[int, int]] = []
    start = lead = 0
    for i in [*_boundaries(texts), len(tokens)]:
        at_sentence_start = lead == 0 or tokens[lead - 1].text in _SENTENCE_ENDS
        if i < len(tokens) and tokens[i].text == "," and at_sentence_start and _nounless(tokens, start, i):
            start = i + 1  # a lead: keep `lead`, the clause goes on after the comma
            continue
        if spans and lead > 0 and tokens[lead - 1].text in (",", ":") and _nounless(tokens, lead, i):
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((lead, i))
        start = lead = i + 1
    return spans


_FLAGGED = NEGATORS | HEDGES | CONDITIONS
_NOUNLESS_WORDS = COLOURS | _TAIL_WORDS | UNITS
_BOUNDARY_TEXTS = SEPARATORS | _CONJUNCTIONS
_NOT_CONTENT = _IGNORED | SEPARATORS | (OPERATORS - _ORDER_OPS)
_KIND, _TEXT = operator.itemgetter(0), operator.itemgetter(1)  # Token.kind, Token.text


def _clause_flags(index: IndexedText, tokens: tuple[Token, ...], texts: list[str], spans: list[tuple[int, int]],
                  clause_of: list[int]) -> None:
    """Each clause's polarity (odd number of negations) and whether it is hedged; a condition hedges
    its clause and the rest of its sentence."""
    negations = [0] * len(spans)
    hedged = [False] * len(spans)
    conditions = []
    flagged = {text for text in set(texts) if text in _FLAGGED or text.endswith("n't")}
    for i in compress(range(len(texts)), map(flagged.__contains__, texts)) if flagged else ():
        text, cid = texts[i], clause_of[i]
        negations[cid] += _is_negation(text)
        hedged[cid] = hedged[cid] or text in HEDGES or text in CONDITIONS
        if text in CONDITIONS:
            conditions.append(cid)
    for cid in conditions:  # to the end of the sentence
        for later in range(cid, len(spans)):
            hedged[later] = True
            end = spans[later][1]
            if end >= len(tokens) or tokens[end].text in _SENTENCE_ENDS:
                break
    index.negated = [n % 2 == 1 for n in negations]
    index.hedged = hedged


def _index_tokens(index: IndexedText, tokens: tuple[Token, ...]) -> None:
    """Fill the content tokens, their clause ids, units, count and chain flags, and each clause's
    polarity."""
    texts = list(map(_TEXT, tokens))
    spans = _clause_spans(tokens, texts)
    starts = [0] * (len(tokens) + 1)  # 1 where a clause starts; the running sum is the clause id
    for start, _ in spans[1:]:
        starts[start] = 1
    clause_of = list(accumulate(starts))
    _clause_flags(index, tokens, texts, spans, clause_of)
    # Loops in C (compress/map): this runs on every ~1k-token response.
    keep = list(compress(range(len(texts)), map(operator.not_, map(_NOT_CONTENT.__contains__, texts))))
    index.tokens = list(map(tokens.__getitem__, keep))
    index.clause = list(map(clause_of.__getitem__, keep))
    index.unit = [None] * len(keep)
    index.counts = [False] * len(keep)
    index.chained = [False] * len(keep)
    last = len(tokens) - 1
    for i in compress(range(len(tokens)), map("num".__eq__, map(_KIND, tokens))):
        if i < last and tokens[i + 1].kind == "word":
            pos, nxt = bisect.bisect_left(keep, i), texts[i + 1]
            index.unit[pos] = nxt if nxt in UNITS else None
            index.counts[pos] = nxt not in UNITS and nxt not in _IGNORED
    for i in compress(range(len(texts)), map("=".__eq__, texts)) if "=" in texts else ():
        if i + 2 <= last and texts[i + 2] == "=" and texts[i + 1] not in _NOT_CONTENT:
            index.chained[bisect.bisect_left(keep, i + 1)] = True


@dataclass(frozen=True)
class Fact:
    """A key fact, parsed once: what must be found, and the constraints on where."""

    wanted: tuple[Token, ...]  # content tokens to find (units and the comparison word excluded)
    units: tuple[str | None, ...]  # for each wanted token: the unit after it when it is a number
    counts: tuple[bool, ...]  # for each wanted token: a number that counts a noun ("3 circles")
    negated: bool  # an odd number of negations
    hedged: bool  # the fact itself is hedged/conditional: no hedge check
    clauses: int  # clauses of the fact itself ("sides 3, 4 and 5" has three): a window may span as many
    comparator: str | None  # canonical comparison word with content on both sides
    left: frozenset  # wanted token texts before the comparison word (not after it too)
    right: frozenset  # wanted token texts after it (not before it too)
    qualifiers: frozenset  # the fact's own colours, labels and positions
    has_position: bool
    results: tuple[int, ...] = ()  # wanted indices of the values after "=" in an equation fact
    texts: frozenset = frozenset()  # texts of the wanted tokens and qualifiers ("about" in "pi is about 3.14")


@lru_cache(maxsize=4096)
def parse_fact(fact: str) -> Fact:
    """The `Fact` of a key-fact string.

    >>> f = parse_fact("the top bar is not longer than 3 cm")
    >>> [t.text for t in f.wanted], f.units, f.negated, f.comparator, sorted(f.left), sorted(f.right)
    (['top', 'bar', '3'], (None, None, 'cm'), True, 'longer', ['top'], ['3'])
    """
    index = IndexedText(tokens=[])
    _index_tokens(index, tokenize(fact, labels=True))
    toks, units = index.tokens, index.unit
    texts = [t.text for t in toks]
    places = [i for i, t in enumerate(texts) if t in COMPARATORS and i < len(toks) - 1
              and (i > 0 or "than" in texts[i + 2:])]
    cpos = next((i for i in places if texts[i] not in POSITIONS), places[0] if places else -1)
    pivot = _pivot(texts, cpos, len(texts)) if cpos >= 0 else -1
    first: dict[str, int] = {}  # canonical text -> first index; units after a number go with it
    for i, tok in enumerate(toks):
        if i != cpos and tok.text != "than" and not (i > 0 and units[i - 1] is not None and tok.text == units[i - 1]):
            first.setdefault(tok.text, i)
    keep = sorted(first.values())
    before = {toks[i].text for i in first.values() if i < pivot}
    after = {t.text for t in toks[pivot + 1:] if t.text in first} if cpos >= 0 else set()
    before, after = before - after, after - before
    qualifiers = {t.text for t in toks if t.text in COLOURS or t.text in POSITIONS or _is_label(t)}
    marks = qualifiers | {t.text for t in toks if t.kind in ("num", "time")}
    if before & marks and after & marks:  # "sales in 2019 were higher than in 2020": the years decide
        before, after = before & marks, after & marks
    return Fact(
        wanted=tuple(toks[i] for i in keep), units=tuple(units[i] for i in keep),
        counts=tuple(index.counts[i] for i in keep), negated=any(index.negated), hedged=any(index.hedged),
        clauses=max(1, len(set(index.clause))), comparator=toks[cpos].text if cpos >= 0 else None,
        left=frozenset(before - after), right=frozenset(after - before), qualifiers=frozenset(qualifiers),
        has_position=any(t in POSITIONS for t in qualifiers), results=_results(fact, [toks[i] for i in keep]),
        texts=frozenset(qualifiers | {toks[i].text for i in keep}))


def _results(fact: str, wanted: list[Token]) -> tuple[int, ...]:
    """Indices (in `wanted`) of the numbers and times after the last "=" of an equation fact
    ("1 + 2 = 3" -> the 3), when numbers stand on both sides; else ()."""
    tokens = tokenize(fact, labels=True)
    eq = max((i for i, t in enumerate(tokens) if t.text == "="), default=-1)
    if eq < 0:
        return ()
    values = [t for t in tokens if t.kind in ("num", "time")]
    after = {t.text for t in tokens[eq + 1:] if t.kind in ("num", "time")}
    before = {t.text for t in tokens[:eq] if t.kind in ("num", "time")}
    if not after or not before or len(values) < 2:
        return ()
    return tuple(k for k, t in enumerate(wanted) if t.text in after - before)


def _pivot(texts: list[str], cpos: int, end: int) -> int:
    """Where the two sides of a comparison meet: the first "than" after the comparison word (before
    `end`), else the word itself. "A is taller than B" and "more A than B" both split at "than"."""
    for i in range(cpos + 1, end):
        if texts[i] == "than":
            return i
    return cpos


def _is_label(tok: Token) -> bool:
    return tok.kind == "word" and tok.text.isupper()


def _units_agree(value: float, unit: str | None, text_value: float, text_unit: str | None,
                 rel_tol: float, abs_tol: float) -> bool:
    """Numbers equal after unit conversion; a missing unit on either side takes the other's."""
    if unit is None or text_unit is None or unit == text_unit:
        return numbers_close(value, text_value, rel_tol, abs_tol)
    a, b = UNIT_SCALES.get(unit), UNIT_SCALES.get(text_unit)
    if a is None or b is None or a[0] != b[0]:
        return False
    return numbers_close(value * a[1], text_value * b[1], rel_tol, abs_tol)


def _positions(fact: Fact, k: int, text: IndexedText, rel_tol: float, abs_tol: float) -> list[int]:
    tok = fact.wanted[k]
    if tok.kind != "num":
        if len(tok.text) > 1 and _is_label(tok):  # "AB" also written "ab" or "ba" in a lowercase text
            return sorted({*text.words.get(tok.text, []), *text.words.get(tok.text.lower(), []),
                           *text.words.get(tok.text[::-1].lower(), [])})
        return text.words.get(tok.text, [])
    unit, counts = fact.units[k], fact.counts[k]
    if unit is None and tok.value.is_integer():  # an integer equals only itself (or a close fraction)
        found = sorted([*text.integers.get(tok.value, []),
                        *(p for p, v in text.fractions if numbers_close(tok.value, v, rel_tol, abs_tol))])
    else:
        found = [p for p, v in text.numbers if _units_agree(tok.value, unit, v, text.unit[p], rel_tol, abs_tol)]
    return [p for p in found if counts or not text.counts[p] or text.unit[p] is not None]


def _windows(lists: list[list[int]]):
    """Yield (low, high) ranges that hold one position from each sorted, non-empty list; every
    minimal such range is among them (smallest-range-covering-k-lists sweep)."""
    heap = [(lst[0], i, 0) for i, lst in enumerate(lists)]
    heapq.heapify(heap)
    high = max(lst[0] for lst in lists)
    while True:
        low, i, j = heapq.heappop(heap)
        yield low, high
        if j + 1 == len(lists[i]):
            return
        nxt = lists[i][j + 1]
        high = max(high, nxt)
        heapq.heappush(heap, (nxt, i, j + 1))


def _foreign(fact: Fact, text: IndexedText, lists: list[list[int]], low: int, high: int) -> bool:
    """Does the window hold a colour, label, position, number or comparison word the fact lacks?"""
    numbers = {p for k, t in enumerate(fact.wanted) if t.kind == "num" for p in lists[k]}
    for pos in range(low, high + 1):
        tok = text.tokens[pos]
        t = tok.text
        if tok.kind == "num":
            if pos not in numbers:
                return True
        elif t in fact.texts or fact.comparator is not None and t in COMPARATORS:
            continue
        elif t in COLOURS or _is_label(tok) and not text.chained[pos] or (fact.has_position and t in POSITIONS):
            return True
        elif t in _APPROXIMATORS or fact.comparator is None and t in COMPARATORS and t not in POSITIONS:
            return True
    return False


def _comparison_holds(fact: Fact, text: IndexedText, lists: list[list[int]], low: int, high: int,
                      reach: int) -> bool:
    """Is there a comparison word of the fact's axis in the window's clause, at most `reach` tokens
    away, with the fact's sides around it (swapped for an antonym)?"""
    axes, sign = COMPARATORS[fact.comparator]
    texts = [t.text for t in fact.wanted]
    cid = text.clause[low]
    first = max(low - reach, bisect.bisect_left(text.clause, cid))
    last = min(high + reach, bisect.bisect_right(text.clause, text.clause[high]) - 1)
    low, high = first, last
    words = [t.text for t in text.tokens[first:last + 1]]
    for pos in range(first, last + 1):
        found = COMPARATORS.get(text.tokens[pos].text)
        if found is None or not axes & found[0]:
            continue
        pivot = first + _pivot(words, pos - first, len(words))
        before, after = (fact.left, fact.right) if found[1] == sign else (fact.right, fact.left)
        if all(_has_between(lists[texts.index(t)], low, pivot - 1) for t in before) and \
                all(_has_between(lists[texts.index(t)], pivot + 1, high) for t in after):
            return True
    return False


def _result_last(fact: Fact, lists: list[list[int]], low: int, high: int) -> bool:
    """In an equation, the result comes after the operands: "2 + 1 = 3" states "1 + 2 = 3", "3 + 1 = 2"
    does not."""
    numeric = [k for k, t in enumerate(fact.wanted) if t.kind in ("num", "time") and k not in fact.results]
    operands_end = max((min(p for p in lists[k] if low <= p <= high) for k in numeric), default=low)
    return all(any(operands_end < p <= high for p in lists[k]) for k in fact.results)


def _has_between(positions: list[int], low: int, high: int) -> bool:
    k = bisect.bisect_left(positions, low)
    return k < len(positions) and positions[k] <= high


def _window_ok(fact: Fact, text: IndexedText, lists: list[list[int]], low: int, high: int, reach: int) -> bool:
    first, last = text.clause[low], text.clause[high]
    if last - first >= fact.clauses:
        return False
    if any(text.negated[first:last + 1]) != fact.negated or any(text.hedged[first:last + 1]) and not fact.hedged:
        return False
    if _foreign(fact, text, lists, low, high):
        return False
    if fact.results and not _result_last(fact, lists, low, high):
        return False
    return fact.comparator is None or _comparison_holds(fact, text, lists, low, high, reach)


def _contradicted(fact: Fact, text: IndexedText, matched: set[int], rel_tol: float, abs_tol: float) -> bool:
    """Rule 7: another plain clause names all the fact's words with another value of its kind."""
    words = [t.text for t in fact.wanted if t.kind == "word"]
    values = [k for k, t in enumerate(fact.wanted) if t.kind in ("num", "time")]
    if not words or not values or fact.comparator is not None:
        return False
    clauses = set.intersection(*({text.clause[p] for p in text.words.get(w, [])} for w in words)) - matched
    for cid in clauses:
        if text.negated[cid] or text.hedged[cid]:
            continue
        for pos in range(bisect.bisect_left(text.clause, cid), bisect.bisect_right(text.clause, cid)):
            if text.tokens[pos].kind in ("num", "time") and \
                    all(not _same_value(fact, k, text, pos, rel_tol, abs_tol) for k in values):
                return True
    return False


def _same_value(fact: Fact, k: int, text: IndexedText, pos: int, rel_tol: float, abs_tol: float) -> bool:
    want, tok = fact.wanted[k], text.tokens[pos]
    if want.kind != tok.kind:
        return False
    if want.kind == "time":
        return want.text == tok.text
    if fact.units[k] and text.unit[pos] and UNIT_SCALES.get(fact.units[k], ("", 0))[0] != \
            UNIT_SCALES.get(text.unit[pos], ("?", 0))[0]:
        return True  # another kind of quantity ("3 cm wide, 40 degrees"): no contradiction
    return _units_agree(want.value, fact.units[k], tok.value, text.unit[pos], rel_tol, abs_tol)


def fact_in_text(fact: str, text: IndexedText, slack: int = 3, rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> bool:
    """True when `fact` is stated in `text` (see the module docstring).

    >>> t = IndexedText.build("I see three circles, all red, and 2 blue squares. The clock reads 4:30.")
    >>> [fact_in_text(f, t) for f in ["3 red circles", "2 red squares", "the clock shows 4:30", "1 square"]]
    [True, False, True, False]
    >>> t = IndexedText.build("DE = 12 and EF = 9; the square is not shaded; the bottom bar is longer than the top bar")
    >>> [fact_in_text(f, t) for f in ["EF = 12", "EF = 9", "the square is shaded",
    ...     "the top bar is longer than the bottom bar", "the top bar is shorter than the bottom bar"]]
    [False, True, False, False, True]
    """
    parsed = parse_fact(fact)
    if not parsed.wanted:  # a fact of only function words: fall back to a substring test
        return bool(clean_text(fact).strip()) and clean_text(fact).strip() in clean_text(text.raw)
    lists = []
    for k in range(len(parsed.wanted)):
        pos = _positions(parsed, k, text, rel_tol, abs_tol)
        if not pos:
            return False
        lists.append(pos)
    limit = len(parsed.wanted) - 1 + slack + (parsed.comparator is not None)
    matched = {c for low, high in _windows(lists)
               if high - low <= limit and _window_ok(parsed, text, lists, low, high, limit - (high - low))
               for c in range(text.clause[low], text.clause[high] + 1)}
    return bool(matched) and not _contradicted(parsed, text, matched, rel_tol, abs_tol)


def coverage(facts: list[str], text: str, slack: int = 3, rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> float:
    """|K ∩ D| / |K|: the fraction of `facts` stated in `text`; 0.0 when there are no facts.

    >>> coverage(["3 red circles", "the blue bar is 7"], "Three red circles; the blue bar reaches 7.")
    1.0
    >>> coverage(["3 red circles", "total = 12 cm"], "3 red circles, total 13 cm")
    0.5
    """
    if not facts:
        return 0.0
    index = IndexedText.build(text)
    return sum(fact_in_text(f, index, slack, rel_tol, abs_tol) for f in facts) / len(facts)


def coverage_level(cov: float, tau_hi: float = 0.8, tau_lo: float = 0.4) -> float:
    """Three levels: 1.0 if cov >= tau_hi, 0.5 if tau_lo <= cov < tau_hi, else 0.0.

    >>> [coverage_level(c) for c in (1.0, 0.8, 0.79, 0.4, 0.39, 0.0)]
    [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    """
    if cov >= tau_hi:
        return 1.0
    return 0.5 if cov >= tau_lo else 0.0
