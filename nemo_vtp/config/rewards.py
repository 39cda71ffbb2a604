"""Reward settings for Stage II: term weights and switches, thresholds, matcher, judge, schedule, pool.

Formulas in docs/rewards.md. The papers give no thresholds or weights for R_vkey, R_tkey and R_cons:
the values here are ours, documented there with the reasons.
"""

from typing import Literal

from pydantic import Field, model_validator

from nemo_vtp.config.base import Section

_TAG = r"^[A-Za-z][A-Za-z0-9_.-]*$"  # an XML-like tag name


class RewardTags(Section):
    description: str = Field("description", pattern=_TAG)  # tag holding the perception evidence
    think: str = Field("think", pattern=_TAG)  # tag holding the reasoning
    answer: str = Field("answer", pattern=_TAG)  # tag holding the final answer


class RewardWeights(Section):
    """Final weights w of R = sum_k w_k R_k (the schedule scales some of them early in training)."""

    acc: float = 1.0  # w_acc, accuracy
    fmt: float = 0.1  # w_fmt, format (Perception-R1's acc:format ratio is 0.9:0.1)
    vkey: float = 0.4  # w_v, visual key-info coverage in <description>
    tkey: float = 0.3  # w_t, textual key-info coverage in <think>
    cons: float = 0.3  # w_c, description-reasoning consistency
    rep: float = 1.0  # weight of the n-gram repetition penalty (already scaled by `rep_penalty`)
    overlong: float = 1.0  # weight of DAPO's soft overlong punishment (in [-1, 0])


class RewardSwitches(Section):
    """Per-term ablation switches: a term that is off is still computed and logged but adds 0 to `total`."""

    acc: bool = True
    fmt: bool = True
    vkey: bool = True
    tkey: bool = True
    cons: bool = True
    rep: bool = True
    overlong: bool = True


class RewardSchedule(Section):
    """Perception-first schedule (ours): vkey/tkey/cons weights start at `perception_start_scale` times
    their final value and acc's at `acc_start_scale` times; both move linearly to 1x over `steps`."""

    steps: int = Field(50, ge=0)  # RL steps to reach the final weights; 0 disables the schedule
    perception_start_scale: float = Field(2.0, ge=0)  # multiplier of w_v, w_t, w_c at step 0
    acc_start_scale: float = Field(0.5, ge=0)  # multiplier of w_acc at step 0


class JudgeConfig(Section):
    """LLM judge over an OpenAI-compatible endpoint (POST {base_url}/v1/chat/completions)."""

    base_url: str = "http://127.0.0.1:8000"  # server root, without /v1
    model: str = "judge"  # `model` field of the request (the served model name)
    api_key_env: str | None = None  # name of an env var holding a bearer token; None sends none
    timeout_s: float = Field(30.0, gt=0)  # total deadline of one judge request, retries included, seconds
    max_retries: int = Field(2, ge=0)  # retries after the first attempt, while the deadline allows
    backoff_s: float = Field(0.5, ge=0)  # first retry delay, doubled on each further retry, seconds
    max_concurrency: int = Field(16, ge=1)  # requests in flight at once
    max_tokens: int = Field(256, ge=1)  # completion budget of one judge reply, tokens
    temperature: float = Field(0.0, ge=0)  # sampling temperature of the judge


class RewardPoolConfig(Section):
    num_workers: int = Field(2, ge=0)  # worker processes; 0 scores in the calling process (no timeout)
    sample_timeout_s: float = Field(10.0, gt=0)  # wall time one sample may take before its worker is killed
    start_method: Literal["forkserver", "spawn"] = "forkserver"  # never fork: the trainer holds threads
    math_verify_timeout_s: int = Field(3, ge=0)  # math-verify's own alarm per parse/verify, seconds; 0 off
    worker_memory_mb: int = Field(4096, ge=0)  # address-space limit of each worker (MemoryError, not OOM); 0 off


class ExtraRewardTerm(Section):
    """A user-defined term `function(response: str, sample: dict) -> float`, run in the reward workers
    (see nemo_vtp/rewards/custom.py); it adds `weight * value` to the total and is logged as reward/<name>."""

    function: str  # "pkg.module:function", imported by module path when the recipe is loaded
    weight: float = 1.0  # weight of the term in the total (no schedule, no switch)
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # metric name; None: the function's name

    @model_validator(mode="after")
    def _check(self):
        from nemo_vtp.rewards.custom import load_term

        load_term(self.function)  # ValueError (shown with the recipe line) when it cannot be used
        return self

    @property
    def key(self) -> str:
        """The term's name in results and metrics."""
        return self.name or self.function.rpartition(":")[2]


class RewardConfig(Section):
    weights: RewardWeights = Field(default_factory=RewardWeights)
    enabled: RewardSwitches = Field(default_factory=RewardSwitches)
    schedule: RewardSchedule = Field(default_factory=RewardSchedule)
    tags: RewardTags = Field(default_factory=RewardTags)
    tau_hi: float = Field(0.8, ge=0, le=1)  # coverage at or above which R_vkey/R_tkey = 1.0
    tau_lo: float = Field(0.4, ge=0, le=1)  # coverage at or above which R_vkey/R_tkey = 0.5 (below: 0)
    ngram_size: int = Field(20, ge=1)  # n of the repetition penalty, whitespace tokens
    rep_penalty: float = Field(-2.0, le=0)  # R_rep = rep_penalty * (1 - unique n-grams / all n-grams)
    # L_max of R_overlong is the rollout cap `generation.sampling.max_new_tokens`: one knob for one length.
    overlong_cache_tokens: int | None = Field(None, ge=0)  # L_cache, the soft band below L_max, tokens; None: L_max/4
    matcher: Literal["rule", "judge"] = "rule"  # key-info matcher for R_vkey/R_tkey
    match_window_slack: int = Field(3, ge=0)  # extra tokens a fact's words may spread over in the text
    number_rel_tol: float = Field(1e-3, ge=0)  # relative tolerance when comparing numbers
    number_abs_tol: float = Field(1e-6, ge=0)  # absolute tolerance when comparing numbers
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    pool: RewardPoolConfig = Field(default_factory=RewardPoolConfig)
    extra: list[ExtraRewardTerm] = Field(default_factory=list)  # user terms: [{function: "pkg.mod:fn", weight: 0.2}]

    @model_validator(mode="after")
    def _check(self):
        from nemo_vtp.rewards.terms import COUNTERS, TERMS

        names = [t.key for t in self.extra]
        taken = [n for i, n in enumerate(names) if n in (*TERMS, *COUNTERS, "total", "num_samples") or n in names[:i]]
        if taken:
            raise ValueError(f"extra reward term name {taken[0]!r} is taken: give the term another `name`")
        if self.tau_lo > self.tau_hi:
            raise ValueError(f"tau_lo ({self.tau_lo}) must not exceed tau_hi ({self.tau_hi})")
        tags = [self.tags.description, self.tags.think, self.tags.answer]
        if len(set(tags)) != 3:
            raise ValueError(f"the three tags must differ, got {tags}")
        return self
