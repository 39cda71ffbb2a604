"""Composition: weights, ablation switches and the perception-first schedule; `score` for one
response; the judge pass; per-batch metrics.

total = sum_k s_k * w_k(step) * R_k over k in TERMS, s_k the switch (0 or 1). With the schedule on
(steps > 0) and f = min(step / steps, 1):
  w_k(step) = w_k * (p + (1 - p) * f)  for k in vkey, tkey, cons  (p = perception_start_scale)
  w_acc(step) = w_acc * (a + (1 - a) * f)                        (a = acc_start_scale)
other weights are constant.
"""

from __future__ import annotations

from nemo_vtp.config.rewards import RewardConfig
from nemo_vtp.rewards.judge import UNREACHABLE, JudgeClient
from nemo_vtp.rewards.matching import coverage_level
from nemo_vtp.rewards.parsing import extract_sections
from nemo_vtp.rewards.terms import COUNTERS, TERMS, acc_term, fast_terms, merge_terms

PERCEPTION_TERMS = ("vkey", "tkey", "cons")


def weights_at(cfg: RewardConfig, step: int = 0) -> dict[str, float]:
    """Effective weight of each term at an RL step (switches applied: a term that is off weighs 0).

    >>> cfg = RewardConfig()
    >>> w0, w25, w50 = (weights_at(cfg, s) for s in (0, 25, 50))
    >>> (w0["vkey"], w25["vkey"], w50["vkey"]), (w0["acc"], w25["acc"], w50["acc"])
    ((0.8, 0.6000000000000001, 0.4), (0.5, 0.75, 1.0))
    """
    frac = 1.0 if cfg.schedule.steps == 0 else min(max(step, 0) / cfg.schedule.steps, 1.0)
    out = {}
    for name in TERMS:
        weight = getattr(cfg.weights, name)
        if name in PERCEPTION_TERMS:
            start = cfg.schedule.perception_start_scale
            weight *= start + (1.0 - start) * frac
        elif name == "acc":
            start = cfg.schedule.acc_start_scale
            weight *= start + (1.0 - start) * frac
        out[name] = weight if getattr(cfg.enabled, name) else 0.0
    return out


def total_reward(terms: dict, cfg: RewardConfig, step: int = 0) -> float:
    """The weighted sum of the unweighted terms at `step`."""
    weights = weights_at(cfg, step)
    extra = sum(term.weight * terms.get(term.key, 0.0) for term in cfg.extra)  # 0 when the term timed out
    return float(sum(weights[name] * terms[name] for name in TERMS) + extra)


def apply_judge(results: list[dict], responses: list[str], samples: list[dict], cfg: RewardConfig,
                client: JudgeClient | None = None) -> None:
    """Replace rule-based vkey/tkey by the judge's levels, in place. A failed request keeps the rule
    value and adds 1 to `judge_failures`, and also to `judge_unreachable` when the server gave no reply
    (down, refused, past the deadline). Empty sections and samples without facts ask nothing."""
    client = client or JudgeClient(cfg.judge)
    jobs, where = [], []
    for i, (response, sample) in enumerate(zip(responses, samples)):
        sec = extract_sections(response, cfg.tags)
        key_info = sample.get("key_info") or {}
        for term, field, text in (("vkey", "visual", sec.description), ("tkey", "textual", sec.think)):
            facts = [str(f) for f in key_info.get(field) or []]
            if facts and text and getattr(cfg.enabled, term):
                jobs.append((facts, text))
                where.append((i, term))
    for (i, term), cov in zip(where, client.coverage_many(jobs)):
        if cov is None or cov == UNREACHABLE:
            results[i]["judge_failures"] += 1.0
            results[i]["judge_unreachable"] += float(cov == UNREACHABLE)
        else:
            results[i][term] = coverage_level(cov, cfg.tau_hi, cfg.tau_lo)


def score(response: str, sample: dict, config: RewardConfig | None = None, *, step: int = 0,
          num_tokens: int | None = None, max_tokens: int | None = None) -> dict:
    """All reward terms of one response, in the calling process (no timeout: use `score_batch` for
    that). `num_tokens`: the response's token count for R_overlong (default: whitespace words);
    `max_tokens`: L_max of R_overlong, the rollout's `max_new_tokens` (None: R_overlong = 0).

    >>> sample = {"question": "How many circles?", "answer": "3",
    ...           "key_info": {"visual": ["3 red circles"], "textual": ["count the circles"]}}
    >>> r = score("<description>3 red circles.</description><think>Count the circles: 3.</think>"
    ...           "<answer>3</answer>", sample, RewardConfig(schedule={"steps": 0}))
    >>> {k: r[k] for k in ("acc", "fmt", "vkey", "tkey", "cons", "rep", "overlong", "total")}
    {'acc': 1.0, 'fmt': 1.0, 'vkey': 1.0, 'tkey': 1.0, 'cons': 1.0, 'rep': 0.0, 'overlong': 0.0, 'total': 2.1}
    """
    cfg = config or RewardConfig()
    result = merge_terms(fast_terms(response, sample, cfg, num_tokens, max_tokens), acc_term(response, sample, cfg))
    if cfg.matcher == "judge":
        apply_judge([result], [response], [sample], cfg)
    result["total"] = total_reward(result, cfg, step)
    return result


def batch_metrics(results: list[dict]) -> dict[str, float]:
    """Per-batch metrics: the mean of each term and of `total`, the sum of each counter, and the
    number of samples.

    >>> batch_metrics([{"acc": 1.0, "total": 1.0, "timeouts": 1.0}, {"acc": 0.0, "total": 0.5}])["acc"]
    0.5
    """
    n = len(results)
    out: dict[str, float] = {"num_samples": float(n)}
    extra = sorted({name for r in results for name in r} - {*TERMS, *COUNTERS, "total"})  # rewards.extra terms
    for name in (*TERMS, *extra, "total"):
        out[name] = sum(r.get(name, 0.0) for r in results) / n if n else 0.0
    for name in COUNTERS:
        out[name] = float(sum(r.get(name, 0.0) for r in results))
    return out
