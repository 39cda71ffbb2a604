"""The data engine: teachers and judge, request limits, key-info annotation (RL) and SFT cleaning.

`nemo-vtp data annotate` and `nemo-vtp data clean-sft` read this section (docs/data_engine.md).
Values the papers do not give (thresholds, budgets, the definitions of s_f/s_c/s_a/s_m) are ours.
"""

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nemo_vtp.config.base import Section


class TeacherConfig(Section):
    """One teacher: an OpenAI-compatible server (`http://...`) or a local HF Qwen2.5-VL folder (in process)."""

    url: str  # http(s)://host:port[/v1] of a chat-completions server, or a local HF model folder
    model: str | None = None  # `model` field of HTTP requests; None sends none (the server's only model)
    name: str | None = None  # label in logs and output meta; None: the url

    @property
    def backend(self) -> str:
        return "http" if self.url.startswith(("http://", "https://")) else "local"

    @property
    def label(self) -> str:
        return self.name or self.url


def _teacher(value: Any) -> Any:
    return {"url": value} if isinstance(value, str) else value


class RequestConfig(Section):
    """How every teacher/judge request is made (HTTP and in-process alike)."""

    timeout_s: float = Field(120.0, gt=0)  # HTTP socket timeout per request, seconds (in-process calls: none)
    max_retries: int = Field(2, ge=0)  # retries after the first attempt (errors, timeouts, unparseable replies)
    backoff_s: float = Field(1.0, ge=0)  # first retry delay, doubled on each further retry, seconds
    max_concurrency: int = Field(8, ge=1)  # samples in flight at once (each makes its requests one after another)
    retry_temperature: float = Field(0.7, ge=0)  # temperature of a retry after an unparseable greedy reply
    api_key_env: str | None = None  # env var holding a bearer token for HTTP teachers; None sends none
    max_consecutive_failures: int = Field(20, ge=1)  # stop the run after this many failed samples in a row
    device: str = "cpu"  # in-process teachers: torch device
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # in-process teachers: weight dtype


class AnnotateConfig(Section):
    """Key-information annotation of RL samples (METHOD.md, "Key-information annotation")."""

    num_chains: int = Field(8, ge=1)  # N: reasoning chains sampled per teacher and sample
    budget: int = Field(4, ge=1)  # B: chains kept per teacher by sequence log-probability
    logprob_score: Literal["sum", "mean"] = "sum"  # rank chains by total or per-token log-prob
    temperature: float = Field(1.0, ge=0)  # sampling temperature of the chains
    top_p: float = Field(1.0, gt=0, le=1)  # nucleus mass of the chains
    max_tokens: int = Field(1024, ge=1)  # length cap of one chain, tokens
    answer_source: Literal["gold", "self_consistency"] = "gold"  # gold answer, or the kept chains' majority answer
    min_accuracy: float = Field(1.0, ge=0, le=1)  # a chain is kept when its accuracy is at least this
    min_coherence: float = Field(0.6, ge=0, le=1)  # ... and its judged coherence (0..1) is at least this
    min_agreement: float = Field(0.5, ge=0, le=1)  # self_consistency: least share of chains giving the majority answer
    judge_max_tokens: int = Field(64, ge=1)  # length cap of a coherence verdict, tokens
    judge_temperature: float = Field(0.0, ge=0)  # temperature of the coherence judge
    extract_max_tokens: int = Field(512, ge=1)  # length cap of the V/Z extraction reply, tokens
    ground_facts: bool = True  # keep only V facts the chosen <description> states and Z facts its <think> uses


class CleanSFTConfig(Section):
    """Stage I data cleaning: rewrite from a formal description, score, keep above a threshold."""

    weight_format: float = Field(0.30, ge=0)  # weight of s_f (judged fidelity of the formal description to the image)
    weight_coherence: float = Field(0.35, ge=0)  # weight of s_c (judged coherence of reasoning with description)
    weight_accuracy: float = Field(0.30, ge=0)  # weight of s_a (the think's conclusion agrees with the answer)
    weight_match: float = Field(0.05, ge=0)  # weight of s_m (description grounded in the formal description)
    threshold: float = Field(0.8, ge=0, le=1)  # keep a sample when overall = sum w*s >= threshold
    require_correct_answer: bool = True  # ours: also drop a rewrite whose answer differs from the gold answer
    temperature: float = Field(0.0, ge=0)  # temperature of the rewrite
    max_tokens: int = Field(1024, ge=1)  # length cap of the rewrite, tokens
    judge_max_tokens: int = Field(64, ge=1)  # length cap of a fidelity or coherence verdict, tokens
    judge_temperature: float = Field(0.0, ge=0)  # temperature of the fidelity and coherence judge

    @model_validator(mode="after")
    def _weights_sum_to_one(self):
        total = self.weight_format + self.weight_coherence + self.weight_accuracy + self.weight_match
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"the four clean_sft weights must sum to 1, got {total}")
        return self


class DataEngineConfig(Section):
    teachers: list[TeacherConfig] = Field(
        default_factory=lambda: [TeacherConfig(url="http://127.0.0.1:8000")])  # chain writers, in order
    judge: TeacherConfig | None = None  # coherence judge and fact extractor; None: the first teacher
    seed: int = 0  # base of every request's sampling seed (with the sample id, stage and attempt)
    requests: RequestConfig = Field(default_factory=RequestConfig)  # timeouts, retries, concurrency
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)  # `nemo-vtp data annotate`
    clean_sft: CleanSFTConfig = Field(default_factory=CleanSFTConfig)  # `nemo-vtp data clean-sft`

    @field_validator("teachers", mode="before")
    @classmethod
    def _teacher_strings(cls, value: Any) -> Any:
        return [_teacher(v) for v in value] if isinstance(value, list) else value

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_string(cls, value: Any) -> Any:
        return _teacher(value)

    @field_validator("teachers")
    @classmethod
    def _at_least_one(cls, value: list) -> list:
        if not value:
            raise ValueError("at least one teacher is needed")
        return value

    @property
    def judge_teacher(self) -> TeacherConfig:
        return self.judge or self.teachers[0]
