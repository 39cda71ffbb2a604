"""Stage I SFT data cleaning (METHOD.md, "Stage I"): rewrite from a formal description, score, filter.

For one sample:
1. the formal description is built from what the sample provides, in `meta`: `caption` (text),
   `boxes` (detector output: a JSON list of {"label", "bbox"} objects or of strings), `ocr` (a JSON list of
   strings, or text), and the sample's own `response.description` when it has one. We run no
   captioner, detector or OCR model here: a sample that provides none of these is dropped
   ("no formal description");
2. the teacher writes the reasoning again from the formal description and the question alone, in the
   three-tag format (rewrite.v2, with the image): it never sees the gold answer nor the sample's
   original reasoning (App. A.2);
3. four scores, each in [0, 1] (the paper gives the weights and names; these definitions are ours):
   s_f formal-description fidelity: the judge's fidelity.v1 score (it sees the image) of how well the
       formal description states the image evidence the question needs;
   s_c CoT quality: the judge's coherence.v1 score of the rewrite (reasoning follows from the description);
   s_a reasoning-answer agreement: the conclusion the `<think>` states (`reasoning_conclusion`) equals
       the `<answer>` (R_acc's equality, with the sample's choices); 0 when the think states none;
   s_m no hallucination: R_cons of the rewritten `<description>` against the formal description and
       question, i.e. the share of its items the formal description backs, 0 on a conflict;
4. overall = 0.30 s_f + 0.35 s_c + 0.30 s_a + 0.05 s_m (configurable); kept when >= threshold and,
   with `require_correct_answer` (ours), when the rewrite's answer equals the gold answer (recorded as
   `gold_match`; checked first, so a wrong answer costs no judge request). The judges are not asked
   when even s_f = s_c = 1 could not reach the threshold.
A kept sample gets the rewrite as `response` and `meta.clean_sft` (JSON: the scores and prompt versions).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from nemo_vtp.config.data_engine import DataEngineConfig
from nemo_vtp.data.io import resolve_images
from nemo_vtp.data.prompts import load_prompt, parse_rewrite, parse_score, question_text
from nemo_vtp.data.runner import Outcome
from nemo_vtp.data.schema import Response, Sample
from nemo_vtp.data.teachers import ChatRequest, Teacher, TeacherFailure, ask, user_message
from nemo_vtp.rewards.accuracy import accuracy, answer_text
from nemo_vtp.rewards.consistency import consistency

FORMAL_KEYS = ("caption", "boxes", "ocr")  # meta fields the formal description is built from


def _as_list(value) -> list:
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return [value] if value.strip() else []
        return decoded if isinstance(decoded, list) else [decoded]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _box_line(box) -> str:
    if isinstance(box, dict):
        label = box.get("label") or box.get("name") or "object"
        bbox = box.get("bbox") or box.get("box")
        return f"- {label}" + (f" at {[round(v, 1) if isinstance(v, float) else v for v in bbox]}" if bbox else "")
    return f"- {box}"


def formal_description(sample: Sample) -> str:
    """The formal description text ("" when the sample provides nothing).

    >>> s = Sample("x", "s", [], "q", "a", meta={"caption": "Two bars.", "boxes": '[{"label": "red bar", '
    ...            '"bbox": [1, 2, 3, 4]}]', "ocr": '["12", "7"]'})
    >>> print(formal_description(s))
    Caption: Two bars.
    Objects (label at [x1, y1, x2, y2] in pixels):
    - red bar at [1, 2, 3, 4]
    Text in the image (OCR): 12; 7
    """
    parts = []
    if str(sample.meta.get("caption") or "").strip():
        parts.append(f"Caption: {str(sample.meta['caption']).strip()}")
    boxes = _as_list(sample.meta.get("boxes") or [])
    if boxes:
        parts.append("Objects (label at [x1, y1, x2, y2] in pixels):\n" + "\n".join(_box_line(b) for b in boxes))
    ocr = [str(t).strip() for t in _as_list(sample.meta.get("ocr") or []) if str(t).strip()]
    if ocr:
        parts.append(f"Text in the image (OCR): {'; '.join(ocr)}")
    if sample.response is not None and sample.response.description.strip():
        parts.append(f"Earlier description: {sample.response.description.strip()}")
    return "\n".join(parts)


_CONCLUSION_RE = re.compile(r"\b(?:answer is|answer:|therefore|thus|hence|so)\b,?", re.I)


def reasoning_conclusion(think: str) -> str:
    """The answer the reasoning concludes: its last `\\boxed{}`, else what follows the last "answer is",
    "therefore", "thus", "hence" or "so" of its last sentence ("" when it states no conclusion).

    >>> reasoning_conclusion("3 + 4 = 7. So the answer is 7.")
    '7'
    >>> reasoning_conclusion("The bar is red.")
    ''
    """
    if "\\boxed" in think:
        return answer_text(think)
    sentences = [t for t in re.split(r"(?<=[.!?])\s+", think.strip()) if t.strip()]
    markers = list(_CONCLUSION_RE.finditer(sentences[-1])) if sentences else []
    return sentences[-1][markers[-1].end():].strip().rstrip(".").strip() if markers else ""


def reasoning_answer_agreement(think: str, answer: str, choices: list[str] | None) -> float:
    """s_a: 1.0 when the conclusion of the think equals the answer (R_acc's rule), else 0.0."""
    conclusion = reasoning_conclusion(think)
    return accuracy(answer, {"answer": conclusion, "choices": choices}) if conclusion and answer else 0.0


def overall_score(scores: dict, cfg) -> float:
    """sum_k w_k s_k over f, c, a, m (a missing s_f or s_c counts as 0)."""
    return (cfg.weight_format * (scores["s_f"] or 0.0) + cfg.weight_coherence * (scores["s_c"] or 0.0)
            + cfg.weight_accuracy * scores["s_a"] + cfg.weight_match * scores["s_m"])


class Cleaner:
    """`Cleaner(cfg, teacher, judge, base_dir)(sample) -> Outcome`; thread-safe."""

    def __init__(self, cfg: DataEngineConfig, teacher: Teacher, judge: Teacher, base_dir: str | Path):
        self.cfg, self.c, self.teacher, self.judge = cfg, cfg.clean_sft, teacher, judge
        self.base_dir = Path(base_dir)

    def _ask(self, teacher: Teacher, request: ChatRequest, parse, stage: str, sample: Sample):
        return ask(teacher, request, parse, stage=stage, requests=self.cfg.requests,
                   seed_parts=(sample.id, teacher.label), base_seed=self.cfg.seed)

    def __call__(self, sample: Sample) -> Outcome:
        try:
            return self._clean(sample)
        except TeacherFailure as err:
            return Outcome("failed", err.reason, detail=err.message[:500])

    def _judge(self, prompt: str, fields: dict, images: list, sample: Sample) -> float:
        request = ChatRequest(user_message(load_prompt(prompt).render(**fields), images),
                              max_tokens=self.c.judge_max_tokens, temperature=self.c.judge_temperature)
        return self._ask(self.judge, request, parse_score, prompt, sample)

    def _clean(self, sample: Sample) -> Outcome:
        formal = formal_description(sample)
        if not formal:
            return Outcome("dropped", "no formal description", detail=f"none of meta {FORMAL_KEYS} nor a description")
        question, images = question_text(sample), resolve_images(sample, self.base_dir)
        text = load_prompt("rewrite").render(formal_description=formal, question=question)
        request = ChatRequest(user_message(text, images), max_tokens=self.c.max_tokens, temperature=self.c.temperature)
        _, sections = self._ask(self.teacher, request, parse_rewrite, "rewrite", sample)
        scores = {"s_f": None, "s_c": None,
                  "s_a": reasoning_answer_agreement(sections.think, sections.answer, sample.choices),
                  "s_m": consistency(sections.description, "", formal, question)}
        gold_match = accuracy(sections.answer, {"answer": sample.answer, "choices": sample.choices})
        if self.c.require_correct_answer and gold_match < 1.0:  # no judge request for a sample that is dropped anyway
            return Outcome("dropped", "wrong answer", detail=json.dumps({**scores, "gold_match": gold_match}))
        if overall_score({**scores, "s_f": 1.0, "s_c": 1.0}, self.c) >= self.c.threshold:
            scores["s_f"] = self._judge("fidelity", {"formal_description": formal, "question": question}, images,
                                        sample)
            scores["s_c"] = self._judge("coherence", {"question": question, "description": sections.description,
                                                      "think": sections.think, "answer": sections.answer}, [], sample)
        overall = overall_score(scores, self.c)
        detail = {**scores, "gold_match": gold_match, "overall": round(overall, 4)}
        if scores["s_c"] is None:  # the judges were not asked: even s_f = s_c = 1 stays below the threshold
            detail["overall_max"] = round(overall_score({**scores, "s_f": 1.0, "s_c": 1.0}, self.c), 4)
        detail = json.dumps(detail)
        if overall < self.c.threshold or not (sections.description and sections.think):
            return Outcome("dropped", "below threshold", detail=detail)
        note = {**scores, "gold_match": gold_match, "overall": overall, "threshold": self.c.threshold,
                "teacher": self.teacher.label, "prompts": [load_prompt(n).tag for n in ("rewrite", "fidelity",
                                                                                     "coherence")]}
        out = replace(sample, response=Response(sections.description, sections.think, sections.answer),
                      meta={**sample.meta, "clean_sft": json.dumps(note)})
        return Outcome("kept", sample=out, detail=detail)
