"""The one sample format of both stages, and the one place that formats a response.

A sample is one JSONL row; image paths are relative to the folder of the JSONL file:

    {"id": str, "source": str, "images": [str, ...], "question": str,
     "choices": [str, ...] | null, "answer": str,
     "response": {"description": str, "think": str, "answer": str} | null,   # Stage I target
     "key_info": {"visual": [str, ...], "textual": [str, ...]} | null,      # Stage II rewards
     "meta": {str: scalar or str}}

`key_info.visual` holds short canonical phrases a good `<description>` states ("3 red circles");
`key_info.textual` holds the numbers, units, OCR text and question facts a good `<think>` uses
("3 + 2 = 5"). Values in `meta` are flat scalars (nested data is stored as a JSON string) so that a
file loads with `datasets` without schema conflicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TAG_DESCRIPTION = ("<description>", "</description>")
TAG_THINK = ("<think>", "</think>")
TAG_ANSWER = ("<answer>", "</answer>")
# The six tag strings, in response order; the tokenizer makes each one a single token.
RESPONSE_TAGS = (*TAG_DESCRIPTION, *TAG_THINK, *TAG_ANSWER)

SAMPLE_FIELDS = ("id", "source", "images", "question", "choices", "answer", "response", "key_info", "meta")


class FieldError(ValueError):
    """A row that does not match the schema; `field` is the dotted name of the bad field, `reason` the
    short key it is counted under (None: "missing field" or "bad field", from the message)."""

    def __init__(self, field: str, message: str, reason: str | None = None):
        super().__init__(f"field {field!r}: {message}")
        self.field = field
        self.message = message
        self.reason = reason or ("missing field" if message == "missing" else "bad field")


@dataclass
class Response:
    description: str  # the visual and textual evidence the question needs
    think: str  # reasoning over that evidence
    answer: str  # the final answer, short


@dataclass
class KeyInfo:
    visual: list[str] = field(default_factory=list)  # facts a good <description> states
    textual: list[str] = field(default_factory=list)  # facts a good <think> uses


@dataclass
class Sample:
    id: str
    source: str
    images: list[str]
    question: str
    answer: str
    choices: list[str] | None = None
    response: Response | None = None
    key_info: KeyInfo | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSONL row, keys in schema order."""
        row = asdict(self)
        return {k: row[k] for k in SAMPLE_FIELDS}


def format_response(response: Response | dict) -> str:
    """THE response string of the three-tag format (no whitespace between the parts).

    >>> format_response(Response("3 red circles", "3 + 1 = 4", "4"))
    '<description>3 red circles</description><think>3 + 1 = 4</think><answer>4</answer>'
    """
    r = response if isinstance(response, Response) else Response(**response)
    return (
        f"{TAG_DESCRIPTION[0]}{r.description}{TAG_DESCRIPTION[1]}"
        f"{TAG_THINK[0]}{r.think}{TAG_THINK[1]}"
        f"{TAG_ANSWER[0]}{r.answer}{TAG_ANSWER[1]}"
    )


def _require_str(row: dict, key: str, *, allow_empty: bool = False) -> str:
    if key not in row or row[key] is None:
        raise FieldError(key, "missing")
    value = row[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # numeric gold answers and ids are fine as text
    if not isinstance(value, str):
        raise FieldError(key, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise FieldError(key, "empty")
    return value


def _str_list(value: Any, key: str, *, allow_empty: bool = True) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError(key, f"expected a list of strings, got {value!r:.80}")
    if not allow_empty and not value:
        raise FieldError(key, "empty list")
    return list(value)


def _parse_response(value: Any) -> Response | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FieldError("response", f"expected an object, got {type(value).__name__}")
    parts = {}
    for part in ("description", "think", "answer"):
        try:
            parts[part] = _require_str(value, part, allow_empty=part != "answer")
        except FieldError as err:
            raise FieldError(f"response.{part}", err.message) from None
    return Response(**parts)


def _parse_key_info(value: Any) -> KeyInfo | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FieldError("key_info", f"expected an object, got {type(value).__name__}")
    unknown = set(value) - {"visual", "textual"}
    if unknown:
        raise FieldError(f"key_info.{min(unknown)}", "unknown key (valid: visual, textual)")
    return KeyInfo(
        visual=_str_list(value.get("visual", []), "key_info.visual"),
        textual=_str_list(value.get("textual", []), "key_info.textual"),
    )


def parse_sample(row: Any) -> Sample:
    """Validate one decoded JSONL row into a `Sample`; raises `FieldError` naming the bad field."""
    if not isinstance(row, dict):
        raise FieldError("<row>", f"expected a JSON object, got {type(row).__name__}")
    unknown = set(row) - set(SAMPLE_FIELDS)
    if unknown:
        raise FieldError(min(unknown), f"unknown field (valid: {', '.join(SAMPLE_FIELDS)})")
    if "images" not in row:
        raise FieldError("images", "missing")
    choices = row.get("choices")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise FieldError("meta", f"expected an object, got {type(meta).__name__}")
    return Sample(
        id=_require_str(row, "id"),
        source=_require_str(row, "source"),
        images=_str_list(row["images"], "images"),
        question=_require_str(row, "question"),
        answer=_require_str(row, "answer"),
        choices=None if choices is None else _str_list(choices, "choices", allow_empty=False),
        response=_parse_response(row.get("response")),
        key_info=_parse_key_info(row.get("key_info")),
        meta=meta,
    )
