"""The data engine's prompts (versioned files in nemo_vtp/data/prompts/) and their reply parsers.

A prompt file `NAME.vN.txt` starts with `#` lines: the fields it takes, the reply format and the
parsing rule, which the `parse_*` function here implements. The rest is a `string.Template` body
(`$field`), so braces of LaTeX in questions need no escaping. A changed prompt gets a new version
file; outputs record `NAME.vN` so that annotations can be traced to the prompt that made them.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nemo_vtp.data.schema import Sample
from nemo_vtp.data.teachers import Completion, ParseError
from nemo_vtp.rewards.parsing import Sections, extract_sections

PROMPT_DIR = Path(__file__).parent / "prompts"
VERSIONS = {"chain": 1, "coherence": 1, "extract": 2, "fidelity": 1, "rewrite": 2}  # the version each stage uses


@dataclass(frozen=True)
class PromptFile:
    name: str
    version: int
    rules: str  # the header comment: fields, reply format, parsing rule
    template: string.Template

    @property
    def tag(self) -> str:
        return f"{self.name}.v{self.version}"

    def render(self, **fields: str) -> str:
        """The prompt text; a missing field raises KeyError naming it."""
        return self.template.substitute(**fields)


@lru_cache(maxsize=None)
def load_prompt(name: str, version: int | None = None) -> PromptFile:
    version = VERSIONS[name] if version is None else version
    path = PROMPT_DIR / f"{name}.v{version}.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [line[1:].strip() for line in lines if line.startswith("#")]
    body = "\n".join(line for line in lines if not line.startswith("#")).strip() + "\n"
    return PromptFile(name, version, "\n".join(header), string.Template(body))


def question_text(sample: Sample) -> str:
    """The question with its options ("A. 3 cm") appended when the sample has choices."""
    if not sample.choices:
        return sample.question
    options = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(sample.choices))
    return f"{sample.question}\nOptions:\n{options}"


# ---------------------------------------------------------------------- parsers
def parse_chain(text: str) -> Sections:
    """chain.v1: the three sections (empty strings where a tag is missing); never raises."""
    return extract_sections(text)


_SCORE_RE = re.compile(r"<score>\s*(-?\d+(?:\.\d+)?)\s*</score>")


def parse_score(completions: list[Completion]) -> float:
    """coherence.v1 and fidelity.v1: the last `<score>N</score>` of the first reply, N in 0..10, as N / 10.

    >>> parse_score([Completion("fine. <score>7</score>", None, 0)])
    0.7
    """
    text = completions[0].text
    found = _SCORE_RE.findall(text)
    if not found:
        raise ParseError(f"no <score>N</score> in the reply: {text[:160]!r}")
    value = float(found[-1])
    if not 0 <= value <= 10:
        raise ParseError(f"score {value} outside 0..10")
    return value / 10


def _block(text: str, tag: str) -> str | None:
    end = text.rfind(f"</{tag}>")
    start = text.rfind(f"<{tag}>", 0, end) if end >= 0 else -1
    return None if start < 0 else text[start + len(tag) + 2:end]


_BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def _items(block: str) -> list[str]:
    items = [_BULLET_RE.sub("", line).strip() for line in block.splitlines()]
    return list(dict.fromkeys(i for i in items if i))


@dataclass
class Facts:
    visual: list[str]  # V: atomic image facts
    textual: list[str]  # Z: given facts of the question and of text in the image (entities, quantities, units, conditions)
    steps: list[str]  # steps[i]: the reasoning step that applies textual[i] ("" when not given): the application map


def parse_facts(completions: list[Completion]) -> Facts:
    """extract.v1 and v2: the `<visual>` and `<textual>` item lists of the first reply.

    >>> f = parse_facts([Completion("<visual>\\n- 3 red circles\\n</visual><textual>\\n- 3 + 2 = 5 || add\\n</textual>",
    ...                             None, 0)])
    >>> (f.visual, f.textual, f.steps)
    (['3 red circles'], ['3 + 2 = 5'], ['add'])
    """
    text = completions[0].text
    visual, textual = _block(text, "visual"), _block(text, "textual")
    if visual is None or textual is None:
        raise ParseError(f"reply lacks a <visual> or <textual> block: {text[:160]!r}")
    facts, steps = [], []
    for item in _items(textual):
        fact, _, step = item.partition("||")
        if fact.strip() and fact.strip() not in facts:
            facts.append(fact.strip())
            steps.append(step.strip())
    out = Facts(visual=_items(visual), textual=facts, steps=steps)
    if not out.visual and not out.textual:
        raise ParseError("the <visual> and <textual> blocks hold no item")
    return out


def parse_rewrite(completions: list[Completion]) -> tuple[str, Sections]:
    """rewrite.v1 and v2: (the reply text, its sections); ParseError when no section is there at all."""
    text = completions[0].text
    sections = extract_sections(text)
    if not (sections.description or sections.think or sections.answer):
        raise ParseError(f"no <description>, <think> or <answer> section in the reply: {text[:160]!r}")
    return text, sections
