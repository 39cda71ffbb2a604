"""Text normalisation and tokenisation shared by the rule-based matchers (R_vkey, R_tkey, R_cons, R_acc).

A text becomes a list of `Token`s: numbers (digits, number words, fractions, decimals, thousands
separators, light LaTeX such as `\\frac{1}{2}`), clock times (`4:30`), operators, and words. Words are
lowercased, NFKC-normalised, mapped through a small synonym table (colours, shapes, relations, units)
and singularised by simple plural rules, so "Three red circles" and "3 red circle" give the same tokens.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple


class Token(NamedTuple):
    kind: str  # "num" | "time" | "word" | "op" | "sep" (punctuation that ends a clause)
    text: str  # canonical text ("3", "4:30", "circle", "=")
    value: float | None = None  # numeric value for kind "num"


_NUMBER_WORDS = {w: i for i, w in enumerate([
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"])}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(
    ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"])}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}

# Canonical forms. Colours, shapes (adjective -> noun), relations and units; kept small on purpose:
# every entry must be a true synonym in the images and questions we train on.
SYNONYMS = {
    "grey": "gray", "violet": "purple", "crimson": "red", "scarlet": "red", "navy": "blue", "azure": "blue",
    "aqua": "cyan", "turquoise": "cyan", "reddish": "red", "bluish": "blue", "greenish": "green",
    "yellowish": "yellow", "circular": "circle", "rectangular": "rectangle",
    "triangular": "triangle", "spherical": "sphere", "cylindrical": "cylinder", "oval": "ellipse",
    "elliptical": "ellipse", "hexagonal": "hexagon", "pentagonal": "pentagon", "over": "above",
    "beneath": "below", "underneath": "below", "under": "below", "beside": "next", "adjacent": "next",
    "leftmost": "left", "rightmost": "right", "bigger": "larger", "greater": "larger", "taller": "higher",
    "fewer": "less", "centimeter": "cm", "centimetre": "cm", "millimeter": "mm", "millimetre": "mm",
    "meter": "m", "metre": "m", "kilometer": "km", "kilometre": "km", "kilogram": "kg", "gram": "g",
    "inches": "inch", "foot": "ft", "feet": "ft", "deg": "degree",
    "minute": "min", "hr": "hour", "liter": "l", "litre": "l", "milliliter": "ml", "millilitre": "ml",
    "dollar": "usd",
}
COLOURS = frozenset(
    ["red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray", "cyan",
     "magenta", "gold", "silver"]
)
UNITS = frozenset(
    ["cm", "mm", "m", "km", "kg", "g", "inch", "ft", "degree", "radian", "percent", "min", "hour", "l", "ml",
     "usd", "unit"]
)

# Function words ignored when matching a fact; patterns in consistency.py still see them.
STOPWORDS = frozenset(
    ["a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "of", "to", "in", "on", "at", "and",
     "or", "with", "there", "here", "that", "this", "these", "those", "which", "it", "its", "we", "so", "then",
     "by", "for", "as", "has", "have", "had", "shows", "show", "showed", "shown", "reads", "read", "displays",
     "display", "indicates", "indicate", "equals", "equal", "value", "values", "measure", "reach", "number",
     "exactly"]
)

_NO_SINGULAR = frozenset(
    ["this", "has", "was", "does", "is", "its", "his", "gas", "plus", "minus", "lens", "axis", "basis",
     "always", "perhaps", "series", "species", "news", "mathematics", "physics", "thus", "yes", "less",
     "across", "bus", "analysis", "hypotenuse", "whereas"]
)

_LATEX = [
    (re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}"), r" \1/\2 "),
    (re.compile(r"\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}"), r" \1\2 "),
    (re.compile(r"\^\{?\\circ\}?"), " degree "),
    (re.compile(r"\\(?:times|cdot)"), " * "),
    (re.compile(r"\\approx"), " ≈ "),
    (re.compile(r"\\(?:left|right|[,;:!]|quad|qquad|displaystyle)(?![a-zA-Z])"), " "),  # layout only
    (re.compile(r"\\%"), " percent "),
    (re.compile(r"\\([a-zA-Z]+)"), r" \1 "),  # keep \sqrt, \pi as words: "\sqrt{2}" must not equal "2"
    (re.compile(r"[{}$]|\\[()\[\]]"), " "),
]
_CHAR_MAP = str.maketrans({"−": "-", "–": "-", "—": "-", "×": "*", "÷": "/", "⁄": "/", "·": "*",
                           "°": " degree ", "%": " percent ", "∠": " angle ", "∥": " parallel ",
                           "⊥": " perpendicular ", "△": " triangle ", "≠": " not equal ", "∦": " not parallel ",
                           "’": "'"})

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
# word | time | number (a sign only where it cannot be a minus) | operator | clause separator. Words
# come first: they are most tokens; a number is tried before a separator, so "3.5" and ".5" stay numbers.
def _token_re(letter: str) -> re.Pattern:
    return re.compile(
        f"{letter}+(?:'{letter}+)?"
        r"|\b\d{1,2}:\d{2}(?::\d{2})?\b"
        rf"|(?:(?<![\w)\].])-)?(?:{_NUM})(?:/(?:{_NUM}))?"
        r"|[=+*/<>≈^-]"
        r"|[,;.!?:\n]"
    )


_TOKEN_RE = _token_re(r"[^\W\d_]")
_TOKEN_RE_ASCII = _token_re("[a-z]")  # the same tokens on ASCII text, ~25% faster
_NUMBER_WORD_SET = frozenset([*_NUMBER_WORDS, *_TENS])
_SCALE_SET = frozenset(_SCALES)
_OPS = frozenset("=+*/<>≈^-")
OPERATORS = _OPS
SEPARATORS = frozenset(",;.!?:\n")  # punctuation kept as "sep" tokens: clause boundaries
_INVALID = Token("invalid", "")  # cached marker for a raw match that is no token (e.g. "1/0")
_TOKEN_CACHE: dict[str, Token] = {}  # raw match -> token; a raw string always gives the same token
_INVALID_RAWS: set[str] = set()  # raw matches that gave _INVALID
_TOKEN_CACHE_MAX = 200_000


def singular(word: str) -> str:
    """Simple English plural rules.

    >>> [singular(w) for w in ["circles", "batteries", "boxes", "glass", "is", "bus"]]
    ['circle', 'battery', 'box', 'glass', 'is', 'bus']
    """
    if len(word) <= 3 or word in _NO_SINGULAR or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("xes", "ches", "shes", "sses", "zes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def canonical_word(word: str) -> str:
    """Lowercase word -> canonical form: synonym, else singular, then synonym of the singular."""
    if word in SYNONYMS:
        return SYNONYMS[word]
    single = singular(word)
    return SYNONYMS.get(single, single)


def parse_number(text: str) -> float | None:
    """Value of a number token: `1,000`, `-2.5`, `.5`, `3/4`; None when it is not one.

    >>> [parse_number(t) for t in ["1,000", "-2.5", "3/4", "1/0", "x"]]
    [1000.0, -2.5, 0.75, None, None]
    """
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            den_v = float(den.replace(",", ""))
            return None if den_v == 0 else float(num.replace(",", "")) / den_v
        return float(text.replace(",", ""))
    except ValueError:
        return None


_LABEL_MARK = "zqlabel"  # prefix of a marked label; no English word starts with it
# Starts with the character class, so the regex engine skips ahead to capitals; what precedes a
# match is checked in `_label_or_word`.
_LABEL_RE = re.compile(r"[A-Z]{1,4}(?![\w'])")
_SENTENCE_START_RE = re.compile(r"(?:^|[.!?:;\n])\s*$")
NEGATORS = frozenset(
    ["not", "no", "never", "none", "nor", "neither", "without", "cannot", "nothing", "nobody", "nowhere"]
)
_NOT_LABELS = frozenset(["ok", "tv", "id", "am", "pm", "vs"])


def canonical_label(label: str) -> str:
    """A point/segment/angle label in one spelling: "BA" -> "AB", "CBA" -> "ABC" (a segment or an
    angle read the other way round is the same object).

    >>> [canonical_label(x) for x in ["A", "BA", "CBA", "ABC", "DCBA"]]
    ['A', 'AB', 'ABC', 'ABC', 'DCBA']
    """
    return min(label, label[::-1]) if len(label) <= 3 else label


def _label_or_word(match: re.Match) -> str:
    word, start = match.group(), match.start()
    before = match.string[start - 1] if start else " "
    if before.isalnum() or before in "_'":  # the tail of a longer word ("xAB", "O'Neil")
        return word
    lower = word.lower()
    if lower in STOPWORDS and len(word) > 1 or lower in COLOURS or lower in _NUMBER_WORD_SET \
            or lower in NEGATORS or lower in _NOT_LABELS or canonical_word(lower) in UNITS and len(word) > 1:
        return word
    after = match.string[match.end():match.end() + 2]
    if word in ("A", "I") and len(after) == 2 and after[0] == " " and after[1].islower():
        # "I see", and "A bar chart" at a sentence start: a pronoun and an article, not points
        if word == "I" or _SENTENCE_START_RE.search(match.string, 0, match.start()):
            return word
    return f" {_LABEL_MARK}{lower} "


def mark_labels(text: str) -> str:
    """Mark upper-case point/segment/angle labels ("A", "AB", "ABC") so that tokenisation keeps them
    apart from words: "angle A" must not become "angle a" with the article dropped.

    >>> mark_labels("A bar chart; angle A is 30, AB = 5, I see RED") == (
    ...     "A bar chart; angle  zqlabela  is 30,  zqlabelab  = 5, I see RED")
    True
    """
    return _LABEL_RE.sub(_label_or_word, text)


def clean_text(text: str) -> str:
    """NFKC, lowercase, light LaTeX and symbol rewriting (before tokenisation)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if "\\" in text or "$" in text or "{" in text:  # every LaTeX rule needs one of these
        for pattern, repl in _LATEX:
            text = pattern.sub(repl, text)
    return text.translate(_CHAR_MAP).lower()


def _merge_number_words(tokens: list[Token]) -> list[Token]:
    """Turn runs like `twenty - one`, `three hundred`, `seven` into one number token."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "num" and i + 1 < len(tokens) and tokens[i + 1].text in _SCALES:  # "3 million"
            value = tok.value * _SCALES[tokens[i + 1].text]
            out.append(Token("num", f"{value:g}", value))
            i += 2
            continue
        if tok.kind != "word" or (tok.text not in _NUMBER_WORDS and tok.text not in _TENS):
            out.append(tok)
            i += 1
            continue
        value = _NUMBER_WORDS.get(tok.text, _TENS.get(tok.text))
        i += 1
        if tok.text in _TENS:  # twenty one / twenty-one
            j = i + 1 if i < len(tokens) and tokens[i].text == "-" else i
            if j < len(tokens) and tokens[j].text in _NUMBER_WORDS and 0 < _NUMBER_WORDS[tokens[j].text] < 10:
                value += _NUMBER_WORDS[tokens[j].text]
                i = j + 1
        if i < len(tokens) and tokens[i].text in _SCALES:
            value *= _SCALES[tokens[i].text]
            i += 1
        out.append(Token("num", f"{value:g}", float(value)))
    return out


def _make_token(raw: str) -> Token:
    if raw in _OPS:
        return Token("op", raw)
    if raw in SEPARATORS:
        return Token("sep", raw)
    if raw.startswith(_LABEL_MARK):
        return Token("word", canonical_label(raw[len(_LABEL_MARK):].upper()))
    if raw[0].isalpha():
        return Token("word", canonical_word(raw[:-2] if raw.endswith("'s") else raw))  # "square's" -> square
    if ":" in raw:
        return Token("time", raw)
    value = parse_number(raw)
    return _INVALID if value is None else Token("num", raw.replace(",", ""), value)


@lru_cache(maxsize=1024)
def tokenize(text: str, labels: bool = False) -> tuple[Token, ...]:
    """Canonical tokens of `text` (stopwords and separators kept; see `content_tokens`). With
    `labels`, upper-case labels stay upper-case words ("angle ABC", "AB = 5"; see `mark_labels`).
    Cached: a response's sections are tokenized once for all the terms that read them.

    >>> [t.text for t in tokenize("Three RED circles; total = 12cm at 4:30, grey ½")]
    ['3', 'red', 'circle', ';', 'total', '=', '12', 'cm', 'at', '4:30', ',', 'gray', '1/2']
    >>> [t.text for t in tokenize("∠CBA = 40°, so AB ∥ CD.", labels=True)]
    ['angle', 'ABC', '=', '40', 'degree', ',', 'so', 'AB', 'parallel', 'CD', '.']
    """
    cleaned = clean_text(mark_labels(text) if labels else text)
    raws = (_TOKEN_RE_ASCII if cleaned.isascii() else _TOKEN_RE).findall(cleaned)
    cache = _TOKEN_CACHE
    if len(cache) > _TOKEN_CACHE_MAX:
        cache.clear()
    for raw in set(raws).difference(cache):  # the loop runs over new strings only
        cache[raw] = tok = _make_token(raw)
        if tok is _INVALID:
            _INVALID_RAWS.add(raw)
    tokens = list(map(cache.__getitem__, raws))
    if not _INVALID_RAWS.isdisjoint(raws):
        tokens = [t for t in tokens if t is not _INVALID]
    if not _NUMBER_WORD_SET.isdisjoint(raws) or not _SCALE_SET.isdisjoint(raws):
        tokens = _merge_number_words(tokens)
    return tuple(tokens)


def content_tokens(tokens: tuple[Token, ...] | list[Token]) -> list[Token]:
    """Tokens that carry content: numbers, times, and words that are not stopwords."""
    return [t for t in tokens if t.kind != "op" and t.kind != "sep" and t.text not in STOPWORDS]


def numbers_close(a: float, b: float, rel_tol: float = 1e-3, abs_tol: float = 1e-6) -> bool:
    """|a - b| <= abs_tol + rel_tol * max(|a|, |b|).

    >>> numbers_close(0.5, 1 / 2), numbers_close(3.1416, 3.14), numbers_close(12, 12.1)
    (True, True, False)
    >>> numbers_close(float("inf"), 5.0), numbers_close(float("inf"), float("inf"))  # never equal
    (False, False)
    >>> numbers_close(2019.0, 2020.0), numbers_close(1000.0, 1000.5)  # integers compare exactly
    (False, True)
    """
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    if a != b and float(a).is_integer() and float(b).is_integer():  # 2019 is not 2020, nor 1000 1001
        return False
    return abs(a - b) <= abs_tol + rel_tol * max(abs(a), abs(b))
