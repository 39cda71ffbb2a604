"""The user-turn text for an item.

Two bases (`eval.prompt`):
- structured: the question with its options and `data.instruction`, the instruction training used
  (`nemo_vtp.data.instruction.user_text`: one definition for both);
- plain: the benchmark's own prompt (what published baselines were scored with).

And, on top, one optional perception strategy of the paper's inference-strategy study (Table 1,
`eval.prompt_style`), so the study can be repeated on any benchmark:
- explicit-notes: perception notes made beforehand (visual facts, textual facts or both) are given
  with the input, before the question;
- structured: the model is asked to state the visual and textual evidence first, then reason;
- implicit: a "look carefully" hint, with no structure asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nemo_vtp.data.instruction import user_text
from nemo_vtp.eval.items import EvalItem

PromptMode = Literal["structured", "plain"]
PromptStyle = Literal["explicit-notes", "structured", "implicit"]
NoteKinds = Literal["visual", "textual", "both"]

IMPLICIT_HINT = "Look carefully at the image and notice every detail the question depends on before answering."
GROUNDING_REQUEST = ("Before answering, first state the visual and textual evidence in the image that the question "
                     "needs, then reason step by step from that evidence, and then give the answer.")


@dataclass(frozen=True)
class Notes:
    """Perception notes of one item: visual facts and textual facts (text, numbers, units in the image)."""

    visual: list[str]
    textual: list[str]


def notes_block(notes: Notes, kinds: NoteKinds = "both") -> str:
    """The notes as given to the model ("" when the chosen kinds hold nothing).

    >>> print(notes_block(Notes(["3 red circles"], ["12 cm"])))
    Perception notes about the image:
    - Visual: 3 red circles
    - Text: 12 cm
    """
    lines = [f"- Visual: {v}" for v in notes.visual if kinds in ("visual", "both")]
    lines += [f"- Text: {t}" for t in notes.textual if kinds in ("textual", "both")]
    return "Perception notes about the image:\n" + "\n".join(lines) if lines else ""


def build_prompt(item: EvalItem, mode: PromptMode, instruction: str, style: PromptStyle | None = None,
                 notes: Notes | None = None, note_kinds: NoteKinds = "both") -> str:
    """The text of the user turn (images are passed beside it, in item order).

    instruction: `data.instruction`, the one the model was trained with (structured mode).
    style: a Table 1 perception strategy added to the base prompt; None adds nothing.
    notes: the item's perception notes (needed by style "explicit-notes").
    """
    if mode not in ("structured", "plain"):
        raise ValueError(f"unknown prompt mode {mode!r}: expected 'structured' or 'plain'")
    base = user_text(item.body, instruction) if mode == "structured" else item.plain_prompt
    if style is None:
        return base
    if style == "implicit":
        return f"{IMPLICIT_HINT}\n{base}"
    if style == "structured":
        if mode == "structured":
            raise ValueError("prompt_style 'structured' goes with eval.prompt=plain: the structured prompt "
                             "already asks for the evidence first")
        return f"{base}\n{GROUNDING_REQUEST}"
    if style == "explicit-notes":
        if notes is None:
            raise ValueError(f"item {item.id!r}: prompt_style 'explicit-notes' needs perception notes "
                             "(eval.notes_file, or the key facts of a synthetic-world item)")
        block = notes_block(notes, note_kinds)
        return f"{block}\n\n{base}" if block else base
    raise ValueError(f"unknown prompt_style {style!r}: expected 'explicit-notes', 'structured' or 'implicit'")


def load_notes(path: str | Path) -> dict[str, Notes]:
    """`{id: Notes}` from a JSONL file of {"id", "visual": [...], "textual": [...]} rows."""
    out = {}
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        if "id" not in row:
            raise ValueError(f"{path} line {i + 1}: a notes row needs an 'id'")
        out[str(row["id"])] = Notes([str(v) for v in row.get("visual") or []],
                                    [str(t) for t in row.get("textual") or []])
    return out


def item_notes(item: EvalItem, notes_file: dict[str, Notes]) -> Notes | None:
    """The item's notes: from the notes file, else the item's own key facts (synthetic world), else None."""
    if item.id in notes_file:
        return notes_file[item.id]
    if "visual" in item.meta or "textual" in item.meta:
        return Notes(list(item.meta.get("visual", [])), list(item.meta.get("textual", [])))
    return None
