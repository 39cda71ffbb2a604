"""The unweighted reward terms of one response, computed by the rule-based matchers.

`fast_terms` returns every term but R_acc (pure Python, linear in the response length); `acc_term`
returns R_acc, which may call math-verify/sympy and is the one that can hang. When math-verify is
needed, the worker pool sends the two results separately, so a sample that times out in math-verify
still keeps its other terms.
A term that raises gets 0.0 and adds one to `errors`.
"""

from __future__ import annotations

import itertools
import logging

from nemo_vtp.config.rewards import RewardConfig
from nemo_vtp.rewards.accuracy import accuracy, rule_accuracy
from nemo_vtp.rewards.consistency import consistency
from nemo_vtp.rewards.custom import load_term
from nemo_vtp.rewards.matching import coverage, coverage_level
from nemo_vtp.rewards.parsing import extract_sections, format_reward

TERMS = ("acc", "fmt", "vkey", "tkey", "cons", "rep", "overlong")
COUNTERS = ("timeouts", "errors", "judge_failures", "judge_unreachable")  # per sample: a count, summed per batch

log = logging.getLogger(__name__)


def repetition_penalty(response: str, n: int = 20, penalty: float = -2.0) -> float:
    """R_rep = penalty * (1 - unique n-grams / all n-grams) over lowercase whitespace tokens;
    0.0 when the response has fewer than n tokens.

    >>> repetition_penalty("a b c d", n=2)  # 3 bigrams, all distinct
    0.0
    >>> repetition_penalty("a b a b a", n=2)  # 4 bigrams, 2 distinct: -2 * (1 - 2/4)
    -1.0
    >>> repetition_penalty("short", n=20)
    0.0
    """
    words = response.lower().split()
    if len(words) < n:
        return 0.0
    # Each n-gram as a slice of the space-joined text (injective: words hold no spaces); ~2x faster
    # than tuples of words on 1k-token responses.
    joined = " ".join(words)
    starts = [0, *itertools.accumulate(len(w) + 1 for w in words)]  # start of each word, then len + 1
    total = len(words) - n + 1
    unique = len({joined[starts[i]:starts[i + n] - 1] for i in range(total)})
    repeated = 1.0 - unique / total
    return penalty * repeated if repeated else 0.0  # never -0.0


def overlong_penalty(num_tokens: int, max_tokens: int = 4096, cache_tokens: int = 1024) -> float:
    """DAPO's soft overlong punishment: 0 up to L_max - L_cache, then linear to -1 at L_max, -1 beyond.

    >>> [overlong_penalty(n, 100, 20) for n in (80, 90, 100, 101)]
    [0.0, -0.5, -1.0, -1.0]
    """
    budget = max_tokens - cache_tokens
    if num_tokens <= budget:
        return 0.0
    if num_tokens <= max_tokens:
        return (budget - num_tokens) / cache_tokens
    return -1.0


def overlong_cache(max_tokens: int, cache_tokens: int | None) -> int:
    """L_cache for an L_max: `cache_tokens` when set, else a quarter of L_max; never above L_max.

    >>> overlong_cache(2048, None), overlong_cache(160, 32), overlong_cache(16, 64)
    (512, 32, 16)
    """
    return min(max_tokens // 4 if cache_tokens is None else cache_tokens, max_tokens)


def response_length(response: str, num_tokens: int | None) -> int:
    """The token length used by R_overlong: `num_tokens` from the tokenizer when given, else the
    number of whitespace-separated words (a proxy; pass real counts in training)."""
    return num_tokens if num_tokens is not None else len(response.split())


def _guarded(name: str, fn, counters: dict) -> float:
    try:
        return float(fn())
    except Exception as err:  # noqa: BLE001 -- one bad sample must never fail an RL step: count it, score 0
        counters["errors"] += 1.0
        log.warning("reward term %s failed: %s: %s", name, type(err).__name__, err)
        return 0.0


def fast_terms(response: str, sample: dict, cfg: RewardConfig, num_tokens: int | None = None,
               max_tokens: int | None = None) -> dict:
    """Every term but acc, plus the counters. Floats. `max_tokens`: L_max of R_overlong, the rollout's
    `max_new_tokens`; None (no length cap known) gives R_overlong = 0."""
    out = {"errors": 0.0}
    sec = extract_sections(response, cfg.tags)
    key_info = sample.get("key_info") or {}
    tol = {"rel_tol": cfg.number_rel_tol, "abs_tol": cfg.number_abs_tol}

    def key(facts_field: str, text: str) -> float:
        cov = coverage(list(key_info.get(facts_field) or []), text, cfg.match_window_slack, **tol)
        return coverage_level(cov, cfg.tau_hi, cfg.tau_lo)

    out["fmt"] = _guarded("fmt", lambda: format_reward(response, cfg.tags), out)
    out["vkey"] = _guarded("vkey", lambda: key("visual", sec.description), out)
    out["tkey"] = _guarded("tkey", lambda: key("textual", sec.think), out)
    out["cons"] = _guarded("cons", lambda: consistency(sec.think, sec.answer, sec.description,
                                                      str(sample.get("question", "")), **tol), out)
    out["rep"] = _guarded("rep", lambda: repetition_penalty(response, cfg.ngram_size, cfg.rep_penalty), out)
    out["overlong"] = 0.0 if max_tokens is None else _guarded("overlong", lambda: overlong_penalty(
        response_length(response, num_tokens), max_tokens, overlong_cache(max_tokens, cfg.overlong_cache_tokens)), out)
    for term in cfg.extra:  # user-defined terms (rewards.extra)
        out[term.key] = _guarded(term.key, lambda t=term: load_term(t.function)(response, sample), out)
    return out


def acc_term(response: str, sample: dict, cfg: RewardConfig, math_verify: bool = True) -> dict | None:
    """{"acc": 0.0 | 1.0, "errors": 0.0 | 1.0}; with `math_verify=False`, None when only math-verify
    could decide (the pool then sends the other terms first, see pool.py)."""
    answer = extract_sections(response, cfg.tags).answer
    tol = (cfg.number_rel_tol, cfg.number_abs_tol)
    try:
        value = (accuracy(answer, sample, cfg.pool.math_verify_timeout_s, *tol) if math_verify
                 else rule_accuracy(answer, sample, *tol))
    except Exception as err:  # noqa: BLE001 -- one bad sample must never fail an RL step: count it, score 0
        log.warning("reward term acc failed: %s: %s", type(err).__name__, err)
        return {"acc": 0.0, "errors": 1.0}
    return None if value is None else {"acc": float(value), "errors": 0.0}


def merge_terms(*parts: dict) -> dict:
    """Merge partial results; missing terms are 0.0 and counters add up."""
    out = {name: 0.0 for name in (*TERMS, *COUNTERS)}
    for part in parts:
        for name, value in part.items():
            out[name] = out[name] + value if name in COUNTERS else value
    return out
