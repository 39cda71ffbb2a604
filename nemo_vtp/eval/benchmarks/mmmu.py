"""MMMU (validation): loader for the authors' per-subject parquet files and scoring by the rules of
their `eval_utils.py`.

Multiple choice (`parse_multi_choice_response`): strip , . ! ? ; : ' from both ends, pad with spaces;
candidates are letters written "(A)", else letters standing alone " A ", else (responses over five
words) options whose text occurs in the response; several candidates -> the one occurring last;
none -> a random option (their rule; seeded per item here, switchable off). Open questions
(`parse_open_response` + `eval_open`): key sub-responses after "is", "so", "therefore", "=" ...
(an empty tail after a final "=" can leave the whole response as the key), plus every match of each
of the three number patterns in them (run separately, overlapping fragments kept); numbers are
compared rounded to 2 decimals, text by lower-case containment; any match counts. Deviations
(docs/eval.md lists them): our structured responses are parsed on their answer span (the `<answer>`
content or last `\\boxed{}`), other responses whole, as the official script does; a tagged answer
that is exactly one option's text (ignoring case and punctuation) is that option, where the official
parser would guess at random on such a short span; the random guess is seeded per item.
"""

from __future__ import annotations

import ast
import random
import re
from pathlib import Path

from nemo_vtp.eval.benchmarks import Benchmark, ScoringOptions, letter
from nemo_vtp.eval.extract import answer_span, choice_by_text
from nemo_vtp.eval.files import image_ref, read_parquet, require_fields, require_files
from nemo_vtp.eval.items import EvalItem, Scored

LAYOUT = """  <data_dir>/<Subject>/validation-00000-of-00001.parquet  for the 30 subjects, e.g.
  <data_dir>/Accounting/validation-00000-of-00001.parquet     (huggingface.co/datasets/MMMU/MMMU)"""

# The six disciplines of the MMMU paper and their 30 subjects.
DISCIPLINES = {
    "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health and Medicine": ["Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                            "Pharmacy", "Public_Health"],
    "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech and Engineering": ["Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                             "Energy_and_Power", "Materials", "Mechanical_Engineering"],
}
SUBJECT_TO_DISCIPLINE = {s: d for d, subjects in DISCIPLINES.items() for s in subjects}
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question using a single word or phrase."
_FIELDS = ["id", "question", "options", "answer", "question_type"]


def _literal_list(value, where: str) -> list[str]:
    """MMMU stores options (and some answers) as the string form of a Python list."""
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ValueError(f"{where}: cannot read {value!r} as a list") from None
    return [str(v) for v in parsed]


def _item(row: dict, subject: str, where: str, base: Path) -> EvalItem:
    require_fields(row, _FIELDS, where)
    choices = _literal_list(row["options"], where) or None
    is_mc = row["question_type"] == "multiple-choice" and choices is not None
    body = row["question"]
    if is_mc:
        body += "\n\n" + "\n".join(f"({letter(i)}) {c}" for i, c in enumerate(choices))
    answer = row["answer"]
    answers = _literal_list(answer, where) if isinstance(answer, str) and answer.startswith("[") else [str(answer)]
    images = [image_ref(row.get(f"image_{k}"), base) for k in range(1, 8)]
    return EvalItem(
        id=str(row["id"]), benchmark="mmmu", images=[i for i in images if i is not None], body=body,
        plain_prompt=f"{body}\n\n{MC_INSTRUCTION if is_mc else OPEN_INSTRUCTION}", answer=answers,
        choices=choices if is_mc else None, meta={"question_type": "multiple-choice" if is_mc else "open"},
        categories={"discipline": SUBJECT_TO_DISCIPLINE.get(subject, "unknown"), "subject": subject,
                    "difficulty": row.get("topic_difficulty") or "unknown"},
    )


def load(data_dir: Path, split: str, subsets: list[str] | None = None) -> list[EvalItem]:
    """MMMU rows of `split` (validation) for `subsets` (subject folder names; None: all present)."""
    files = require_files(data_dir, [f"*/{split}-*.parquet"], "mmmu", LAYOUT)
    unknown = sorted(set(subsets or []) - {p.parent.name for p in files})
    if unknown:
        raise ValueError(f"mmmu: subject(s) {', '.join(unknown)} not found under {data_dir}")
    items = []
    for path in files:
        subject = path.parent.name
        if subsets and subject not in subsets:
            continue
        items += [_item(r, subject, f"{path} row {i}", path.parent) for i, r in enumerate(read_parquet(path))]
    return items


def parse_multi_choice(response: str, choices: list[str], rng: random.Random | None) -> tuple[str | None, str]:
    """(letter, how) by MMMU's multiple-choice rule; letter None only when rng is None and nothing matched."""
    letters = [letter(i) for i in range(len(choices))]
    text = response
    for char in ",.!?;:'":
        text = text.strip(char)
    text = f" {text} "
    found = [c for c in letters if f"({c})" in text]
    how = "bracket"
    if not found:
        found, how = [c for c in letters if f" {c} " in text], "letter"
    if not found and len(text.split()) > 5:
        found, how = [c for c, o in zip(letters, choices) if o.lower() in text.lower()], "content"
    if not found:
        return (rng.choice(letters), "random guess") if rng is not None else (None, "no option found")
    if len(found) == 1:
        return found[0], how
    if how == "content":
        positions = [text.lower().rfind(o.lower()) for c, o in zip(letters, choices) if c in found]
    else:
        positions = [text.rfind(f"({c})" if how == "bracket" else f" {c} ") for c in found]
    return found[positions.index(max(positions))], how


_KEY_INDICATORS = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
# MMMU's three number patterns, each run on its own over the whole text (extract_numbers): every match
# of each is kept, so fragments that overlap ("1,234.5" gives "1,234" and "234.5") all count.
_NUMBER_PATTERNS = (
    re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b"),  # with thousands commas
    re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+"),  # scientific
    re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])"),  # simple, no commas
)
_TRIVIAL_TAILS = (":", ",", ".", "!", "?", ";", "'")


def extract_numbers(text: str) -> list[str]:
    """MMMU's extract_numbers: the matches of the comma, scientific and simple patterns, in that order.

    >>> extract_numbers("1,234.5 and 3e5")
    ['1,234', '3e5', '234.5', '5']
    """
    return [n for pattern in _NUMBER_PATTERNS for n in pattern.findall(text)]


def _normalize(value: str) -> list[float | str]:
    """MMMU's normalize_str: a number -> [rounded to 2 decimals]; text -> [lower case] (a single
    character is padded with a space on either side, to avoid trivial containment)."""
    value = value.strip()
    try:
        return [round(float(value.replace(",", "")), 2)]
    except ValueError:
        value = value.lower()
        return [" " + value, value + " "] if len(value) == 1 else [value]


def _shortest_tail(sentence: str, indicators: list[str]) -> str:
    """MMMU's choice of a sentence's key tail, indicator by indicator: the tail after an indicator's last
    occurrence replaces the kept one when it is shorter, or when the kept one is empty. So an empty tail
    (a sentence ending in "=") is kept only if no later indicator follows, and then the sentence gives
    no key response at all."""
    shortest = ""
    for indicator in indicators:
        if indicator in sentence:
            tail = sentence.split(indicator)[-1].strip()
            if not shortest or len(tail) < len(shortest):
                shortest = tail
    return shortest


def _key_responses(response: str) -> list[str]:
    """MMMU's get_key_subresponses: per sentence, the shortest tail after a key indicator ("=" too in
    the last sentence); the whole response when no sentence gives one."""
    text = response.strip().strip(".").lower()
    # The official split looks for ". " before a capital letter after lower-casing, so only newlines split.
    sentences = re.split(r"\.\s(?=[A-Z])|\n", text)
    keys = []
    for index, sentence in enumerate(sentences):
        indicators = _KEY_INDICATORS + (["="] if index == len(sentences) - 1 else [])
        tail = _shortest_tail(sentence, indicators)
        if tail and tail not in _TRIVIAL_TAILS:
            keys.append(tail)
    return keys or [text]


def parse_open(response: str) -> list[float | str]:
    """Every candidate value of an open answer: key sub-responses and the numbers in them, normalised."""
    keys = _key_responses(response)
    candidates = keys + [n for k in keys for n in extract_numbers(k)]
    out: list[float | str] = []
    for c in candidates:
        out += [v for v in _normalize(c) if v not in out]
    return out


def eval_open(golds: list[str], predictions: list[float | str]) -> bool:
    """MMMU's eval_open: a numeric prediction equals a normalised gold; a text gold is contained in a text one."""
    normalized = [v for g in golds for v in _normalize(g)]
    for pred in predictions:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in normalized):
                return True
        elif pred in normalized:
            return True
    return False


def score(item: EvalItem, response: str, options: ScoringOptions) -> Scored:
    span, where = answer_span(response)
    text = span if where != "full" else response
    if item.meta["question_type"] == "multiple-choice":
        index = choice_by_text(span, item.choices) if where != "full" else None
        if index is not None:  # our addition: a tagged answer that is exactly one option's text
            return Scored(correct=letter(index) in item.answer, extracted=span, normalized=letter(index))
        rng = random.Random(f"{options.seed}:{item.id}") if options.mmmu_random_guess else None
        pred, how = parse_multi_choice(text, item.choices, rng)
        note = how if how in ("random guess", "no option found") else ""
        return Scored(correct=pred is not None and pred in item.answer, extracted=span, normalized=pred, note=note)
    predictions = parse_open(text)
    return Scored(correct=eval_open(item.answer, predictions), extracted=span, normalized=predictions)


BENCHMARK = Benchmark(name="mmmu", load=load, score=score, default_split="validation", layout=LAYOUT)
