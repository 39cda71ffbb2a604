"""Key-information annotation of RL samples (METHOD.md, "Key-information annotation").

For one (image, question, answer):
1. every teacher samples N chains (chain.v1, with per-token log-probs);
2. per teacher, the B chains of highest sequence log-probability are kept (the budget);
3. accuracy of each kept chain: its `<answer>` against the gold answer (nemo_vtp.rewards.accuracy:
   choices, normalised text, numbers, math-verify), or, with answer_source=self_consistency, agreement
   with the majority answer of the kept chains (which must hold at least `min_agreement` of them);
4. candidates: accurate (>= min_accuracy) and well-formed (R_fmt = 1, non-empty sections) chains; each gets a coherence
   score from the judge (coherence.v1, 0..10 -> 0..1) and must reach `min_coherence`;
5. the best candidate (coherence, then accuracy, then log-prob) goes to the judge for extraction
   (extract.v2): visual facts V and textual facts Z, each Z fact with the reasoning step that applies it
   (the application map, kept in `meta.annotation.textual_steps`);
6. with `ground_facts`, V facts the chosen `<description>` does not state are removed, and so are Z
   facts that are not given (found neither in the question nor in the description, which carries the
   text read in the image: a computation or a conclusion of the chain is not a fact of Z) or that its
   `<think>` / `<answer>` do not use (rule matcher of the rewards, nemo_vtp.rewards.matching);
7. the sample is written with `response` = the chosen chain and `key_info` = (V, Z); `meta.annotation`
   (a JSON string) holds the teacher, scores, counts, prompt versions and Z's steps.
A sample is dropped with a reason when a stage leaves nothing, and failed when a request still fails
after its retries (a rerun tries it again).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from nemo_vtp.config.data_engine import DataEngineConfig
from nemo_vtp.data.io import resolve_images
from nemo_vtp.data.prompts import Facts, load_prompt, parse_chain, parse_facts, parse_score, question_text
from nemo_vtp.data.runner import Outcome
from nemo_vtp.data.schema import KeyInfo, Response, Sample
from nemo_vtp.data.teachers import ChatRequest, Completion, Teacher, TeacherFailure, ask, user_message
from nemo_vtp.rewards.accuracy import accuracy
from nemo_vtp.rewards.matching import IndexedText, fact_in_text
from nemo_vtp.rewards.parsing import Sections, format_reward


@dataclass
class Chain:
    teacher: str
    text: str
    sections: Sections
    logprob: float | None  # sum of token log-probs; None when the teacher sent none
    num_tokens: int
    rank_score: float  # what the budget ranks by (sum or mean log-prob; -inf without log-probs)
    accuracy: float = 0.0
    coherence: float | None = None


def to_chains(teacher: str, completions: list[Completion], logprob_score: str) -> list[Chain]:
    out = []
    for c in completions:
        value = c.logprob if logprob_score == "sum" else c.mean_logprob
        out.append(Chain(teacher, c.text, parse_chain(c.text), c.logprob, c.num_tokens,
                         -math.inf if value is None else value))
    return out


def top_budget(chains: list[Chain], budget: int) -> list[Chain]:
    """The `budget` chains of highest rank score (ties keep sampling order).

    >>> cs = [Chain("t", str(i), Sections("", "", ""), lp, 1, lp) for i, lp in enumerate([-3.0, -1.0, -2.0])]
    >>> [c.text for c in top_budget(cs, 2)]
    ['1', '2']
    """
    return sorted(chains, key=lambda c: -c.rank_score)[:budget]


def well_formed(chain: Chain) -> bool:
    """R_fmt = 1 and a non-empty description and think (what a stored `response` needs)."""
    return format_reward(chain.text) == 1.0 and bool(chain.sections.description and chain.sections.think)


def _sample_dict(sample: Sample, answer: str | None = None) -> dict:
    return {"answer": sample.answer if answer is None else answer, "choices": sample.choices}


def majority_answer(chains: list[Chain], sample: Sample) -> tuple[str | None, float]:
    """(majority answer, share of chains that give it); answers are the same when R_acc says so.
    Chains without an answer count in the denominator. (None, 0.0) when no chain answers."""
    clusters: list[tuple[str, int]] = []
    for c in chains:
        if not c.sections.answer:
            continue
        for k, (rep, n) in enumerate(clusters):
            if accuracy(c.sections.answer, _sample_dict(sample, rep)) == 1.0:
                clusters[k] = (rep, n + 1)
                break
        else:
            clusters.append((c.sections.answer, 1))
    if not clusters:
        return None, 0.0
    rep, n = max(clusters, key=lambda x: x[1])
    return rep, n / len(chains)


def ground(facts: Facts, chain: Sections, question: str) -> tuple[Facts, list[str], list[str]]:
    """(facts grounded in the chain, removed visual, removed textual) with the rewards' rule matcher.

    V: stated in the description. Z: given (in the question, or in the description, which holds the
    text read in the image) and used by the think or the answer."""
    description = IndexedText.build(chain.description)
    given = IndexedText.build(f"{question}\n{chain.description}")
    reasoning = IndexedText.build(f"{chain.think}\n{chain.answer}")
    visual = [v for v in facts.visual if fact_in_text(v, description)]
    keep = [i for i, z in enumerate(facts.textual) if fact_in_text(z, given) and fact_in_text(z, reasoning)]
    kept = Facts(visual=visual, textual=[facts.textual[i] for i in keep], steps=[facts.steps[i] for i in keep])
    removed_z = [z for i, z in enumerate(facts.textual) if i not in keep]
    return kept, [v for v in facts.visual if v not in visual], removed_z


def _chain_fields(question: str, chain: Sections) -> dict:
    return {"question": question, "description": chain.description, "think": chain.think, "answer": chain.answer}


class Annotator:
    """`Annotator(cfg, teachers, judge, base_dir)(sample) -> Outcome`; thread-safe (no mutable state)."""

    def __init__(self, cfg: DataEngineConfig, teachers: list[Teacher], judge: Teacher, base_dir: str | Path):
        self.cfg, self.a, self.teachers, self.judge = cfg, cfg.annotate, teachers, judge
        self.base_dir = Path(base_dir)

    def _ask(self, teacher: Teacher, request: ChatRequest, parse, stage: str, sample: Sample, *extra):
        return ask(teacher, request, parse, stage=stage, requests=self.cfg.requests,
                   seed_parts=(sample.id, teacher.label, *extra), base_seed=self.cfg.seed)

    def sample_chains(self, sample: Sample, question: str) -> list[Chain]:
        """N chains per teacher, the top B of each by log-probability."""
        text = load_prompt("chain").render(question=question)
        messages = user_message(text, resolve_images(sample, self.base_dir))
        kept = []
        for teacher in self.teachers:
            request = ChatRequest(messages, n=self.a.num_chains, max_tokens=self.a.max_tokens,
                                  temperature=self.a.temperature, top_p=self.a.top_p, logprobs=True)
            completions = self._ask(teacher, request, lambda cs: cs, "chains", sample)
            kept += top_budget(to_chains(teacher.label, completions, self.a.logprob_score), self.a.budget)
        return kept

    def coherence(self, sample: Sample, question: str, chain: Chain, index: int) -> float:
        text = load_prompt("coherence").render(**_chain_fields(question, chain.sections))
        request = ChatRequest(user_message(text), max_tokens=self.a.judge_max_tokens,
                              temperature=self.a.judge_temperature)
        return self._ask(self.judge, request, parse_score, "coherence", sample, index)

    def extract(self, sample: Sample, question: str, chain: Chain) -> Facts:
        text = load_prompt("extract").render(**_chain_fields(question, chain.sections))
        request = ChatRequest(user_message(text), max_tokens=self.a.extract_max_tokens, temperature=0.0)
        return self._ask(self.judge, request, parse_facts, "extract", sample)

    def __call__(self, sample: Sample) -> Outcome:
        try:
            return self._annotate(sample)
        except TeacherFailure as err:
            return Outcome("failed", err.reason, detail=err.message[:500])

    def _annotate(self, sample: Sample) -> Outcome:
        question = question_text(sample)
        chains = self.sample_chains(sample, question)
        answer = sample.answer
        if self.a.answer_source == "self_consistency":
            answer, share = majority_answer(chains, sample)
            if answer is None or share < self.a.min_agreement:
                return Outcome("dropped", "no majority answer", detail=f"agreement {share:.2f}")
        for c in chains:
            c.accuracy = accuracy(c.sections.answer, _sample_dict(sample, answer))
        accurate = [c for c in chains if c.accuracy >= self.a.min_accuracy]
        if not accurate:
            return Outcome("dropped", "no accurate chain", detail=f"{len(chains)} chains judged")
        candidates = [c for c in accurate if well_formed(c)]
        if not candidates:
            return Outcome("dropped", "no well-formed chain", detail=f"{len(accurate)} accurate chains")
        for i, c in enumerate(candidates):
            c.coherence = self.coherence(sample, question, c, i)
        coherent = [c for c in candidates if c.coherence >= self.a.min_coherence]
        if not coherent:
            best_c = max(c.coherence for c in candidates)
            return Outcome("dropped", "no coherent chain", detail=f"best coherence {best_c:.2f}")
        best = max(coherent, key=lambda c: (c.coherence, c.accuracy, c.rank_score))
        facts = self.extract(sample, question, best)
        removed_v, removed_z = [], []
        if self.a.ground_facts:
            facts, removed_v, removed_z = ground(facts, best.sections, question)
        if not facts.visual and not facts.textual:
            return Outcome("dropped", "no grounded facts", detail=f"removed V {removed_v}, Z {removed_z}"[:500])
        return Outcome("kept", sample=self._output(sample, answer, best, facts, removed_v, removed_z, len(chains),
                                                   len(accurate), len(coherent)))

    def _output(self, sample: Sample, answer: str, best: Chain, facts: Facts, removed_v: list, removed_z: list,
                n_budget: int, n_accurate: int, n_coherent: int) -> Sample:
        s = best.sections
        note = {"teacher": best.teacher, "chain_logprob": best.logprob, "chain_tokens": best.num_tokens,
                "accuracy": best.accuracy, "coherence": best.coherence, "answer_source": self.a.answer_source,
                "chains_per_teacher": self.a.num_chains, "chains_in_budget": n_budget,
                "chains_accurate": n_accurate, "chains_coherent": n_coherent, "textual_steps": facts.steps,
                "removed_visual": removed_v, "removed_textual": removed_z,
                "prompts": [load_prompt(n).tag for n in ("chain", "coherence", "extract")]}
        return replace(sample, answer=answer, response=Response(s.description, s.think, s.answer),
                       key_info=KeyInfo(visual=facts.visual, textual=facts.textual),
                       meta={**sample.meta, "annotation": json.dumps(note, ensure_ascii=False)})
