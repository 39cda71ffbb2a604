"""What `nemo-vtp ablate` measures per held-out response, and the statistics over seeds.

Perception is measured exactly, from the sample's truth, never with the reward's matcher (the term
under study must not grade itself):
- coverage: the share of the sample's true visual key facts (`key_info.visual`) that the
  `<description>` states as one of its clauses, word for word (case and spacing aside);
- hallucinated: the number of clauses of the `<description>` that state a fact of the synthetic
  world's kind (same wording with other numbers or colours) that is false of the sample's scene
  (`meta.scene`); a clause of another kind is not checked. None without a scene;
- consistency: R_cons of the response (reasoning grounded in the description and the question);
- accuracy and format: the evaluation's R_acc and R_fmt.
Over seeds: the mean and a Student-t 95% interval, and for an arm against the full arm the paired
(same seed) difference with its interval.
"""

from __future__ import annotations

import json
import math
import re
import statistics

from nemo_vtp.data.synth.render import COLORS
from nemo_vtp.data.synth.scenes import SHAPES, clock_facts, plural, ruler_facts
from nemo_vtp.rewards.consistency import consistency
from nemo_vtp.rewards.parsing import extract_sections

METRICS = ("accuracy", "format", "coverage", "hallucinated", "consistency")  # report columns, in order

_SPACE_RE = re.compile(r"\s+")
_NUMBER_RE = re.compile(r"\d+")
_COLOR_RE = re.compile(r"\b(?:" + "|".join(COLORS) + r")\b")
_PLURAL_RE = re.compile(r"\b(shape|circle|square|triangle|bar|tile)s\b")


def normalize_clause(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation."""
    return _SPACE_RE.sub(" ", text.lower()).strip(" .;:,")


def stated_clauses(description: str) -> list[str]:
    """The facts a description states: its clauses after the scene sentence's colon, split at commas
    and semicolons ("The image shows 3 shapes: 1 red circle, 2 blue squares." -> 2 clauses).

    >>> stated_clauses("A bar chart with 3 bars: the red bar is 4, the blue bar is 6.")
    ['the red bar is 4', 'the blue bar is 6']
    """
    body = description.split(":", 1)[1] if ":" in description else description
    return [c for c in (normalize_clause(p) for p in re.split(r"[,;]", body)) if c]


def _shape_facts(objects: list[dict]) -> set[str]:
    facts = set()
    for color in COLORS:
        facts.add(plural(sum(o["color"] == color for o in objects), f"{color} shape"))
        for shape in SHAPES:
            facts.add(plural(sum(o["color"] == color and o["shape"] == shape for o in objects), f"{color} {shape}"))
            for size in ("large", "small"):
                n = sum(o["color"] == color and o["shape"] == shape and o["size"] == size for o in objects)
                facts.add(plural(n, f"{size} {color} {shape}"))
    return facts


def scene_facts(scene: dict) -> set[str]:
    """Every true fact of a synthetic scene in the world's wording (what a description may state)."""
    kind = scene["kind"]
    if kind == "shapes":
        return _shape_facts(scene["objects"])
    if kind == "bars":
        return {f"the {b['color']} bar is {b['value']}" for b in scene["bars"]}
    if kind == "digits":
        return {f"the {t['color']} tile shows {t['digit']}" for t in scene["tiles"]}
    if kind == "clock":
        return set(clock_facts(scene["hour"], scene["minute"]))
    if kind == "ruler":
        return {f for b in scene["bars"] for f in ruler_facts(b)}
    raise ValueError(f"unknown scene kind {kind!r}")


def skeleton(fact: str) -> str:
    """A fact's wording with numbers, colours and plural endings abstracted: facts of one kind share it.

    >>> skeleton("the red bar is 4") == skeleton("the blue bar is 12")
    True
    """
    return _PLURAL_RE.sub(r"\1", _NUMBER_RE.sub("#", _COLOR_RE.sub("@", normalize_clause(fact))))


def hallucinated(clauses: list[str], truth: set[str]) -> int:
    """Clauses that have the wording of a world fact but are not true of the scene."""
    kinds = {skeleton(f) for f in truth}
    return sum(c not in truth and skeleton(c) in kinds for c in clauses)


def coverage(clauses: list[str], facts: list[str]) -> float | None:
    """Share of `facts` stated exactly as clauses (None when there is no fact)."""
    if not facts:
        return None
    stated = set(clauses)
    return sum(normalize_clause(f) in stated for f in facts) / len(facts)


def response_metrics(response: str, sample: dict, correct: bool, fmt: float) -> dict[str, float | None]:
    """The per-response measures of the module docstring for one held-out sample (a sample dict)."""
    sections = extract_sections(response)
    clauses = stated_clauses(sections.description)
    scene = (sample.get("meta") or {}).get("scene")
    truth = scene_facts(json.loads(scene) if isinstance(scene, str) else scene) if scene else None
    return {"accuracy": float(correct), "format": fmt,
            "coverage": coverage(clauses, list((sample.get("key_info") or {}).get("visual") or [])),
            "hallucinated": None if truth is None else float(hallucinated(clauses, truth)),
            "consistency": consistency(sections.think, sections.answer, sections.description, sample["question"])}


def mean_of(rows: list[dict], key: str) -> float | None:
    """Mean of `key` over rows that have it (None when none has)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


# Two-sided 95% Student-t critical values t_{0.975, df}, df = 1..30.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    """t_{0.975, df}: the table up to 30, then the Cornish-Fisher expansion around z = 1.96."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% t interval; low = high = nan for a single value.

    >>> [round(v, 3) for v in mean_interval([1.0, 2.0, 3.0])]
    [2.0, -0.484, 4.484]
    """
    if not values:
        raise ValueError("no values")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired_difference(arm: dict[int, float], full: dict[int, float]) -> tuple[float, float, float] | None:
    """Mean and 95% interval of arm - full over the seeds both have (None when they share none)."""
    seeds = sorted(set(arm) & set(full))
    return mean_interval([arm[s] - full[s] for s in seeds]) if seeds else None
