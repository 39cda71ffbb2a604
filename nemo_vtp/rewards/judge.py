"""LLM judge for key-info coverage over an OpenAI-compatible endpoint (e.g. a vLLM server).

Format (Perception-R1's): the facts go to the judge as `<info1>…</info1><info2>…</info2>…` with the
text to check; it answers `<infoK>1</infoK>` or `<infoK>0</infoK>` for every fact; coverage = mean.
Each request has a total deadline (`timeout_s`, retries with exponential backoff included; a server
that trickles bytes cannot stretch it); a request that still fails (error, timeout, or a reply without
one 0/1 per fact) returns None, the caller falls back to the rule-based matcher and counts a judge
failure. Once one request of a batch finds the server unreachable (refused, reset or past its
deadline after its retries), the rest of the batch is not sent: a dead judge costs a step about one
deadline, not one per request. A judge failure never fails an RL step.
Transport and retries: `nemo_vtp.generation.openai_client` (standard library only).
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from nemo_vtp.config.rewards import JudgeConfig
from nemo_vtp.generation.openai_client import ChatEndpoint, ChatEndpointError, with_retries
from nemo_vtp.rewards.matching import RULES

# The rule matcher's rules, verbatim (matching.RULES): both matchers credit the same statements.
SYSTEM_PROMPT = (
    "You check whether a text states given facts. For each numbered fact, answer 1 if the text states "
    "it, otherwise 0. Rules:\n" + "\n".join(f"- {rule}" for rule in RULES) + "\n"
    "Reply only with one tag per fact, in order, e.g. <info1>1</info1><info2>0</info2>."
)
_ANY_INFO_RE = re.compile(r"<info(\d+)>(.*?)</info\1>", re.DOTALL)


class JudgeError(RuntimeError):
    """A judge reply that cannot be used (transport error, HTTP error, timeout or garbage)."""


class JudgeUnreachable(JudgeError):
    """No reply at all: connection refused or reset, or the deadline passed."""


UNREACHABLE = "unreachable"  # a `coverage_many` result: no reply from the server (or not sent, the server being so)


def build_prompt(facts: list[str], text: str) -> str:
    """The user message: numbered facts, then the text.

    >>> print(build_prompt(["3 red circles", "4:30"], "Three red circles."))
    Facts:
    <info1>3 red circles</info1>
    <info2>4:30</info2>
    <BLANKLINE>
    Text:
    Three red circles.
    """
    lines = "\n".join(f"<info{k}>{fact}</info{k}>" for k, fact in enumerate(facts, 1))
    return f"Facts:\n{lines}\n\nText:\n{text}"


def parse_verdicts(reply: str, num_facts: int) -> float:
    """Mean of the per-fact 0/1 verdicts. JudgeError when any fact lacks a verdict, a tag holds
    something else than 0 or 1, one fact gets two different verdicts, or a tag names no fact.

    >>> parse_verdicts("<info1>1</info1> <info2>0</info2><info3> 1 </info3>", 3)
    0.6666666666666666
    >>> for bad in ["<info1>yes</info1>", "<info1>1</info1><info1>0</info1>", "<info1>1</info1><info2>1</info2>"]:
    ...     try:
    ...         parse_verdicts(bad, 1)
    ...     except JudgeError as err:
    ...         print(str(err).split(":")[0])
    judge reply has a tag that is not 0 or 1
    judge reply gives fact 1 two verdicts
    judge reply has verdicts for facts that were not asked [2]
    """
    verdicts: dict[int, int] = {}
    for k, v in _ANY_INFO_RE.findall(reply):
        if v.strip() not in ("0", "1"):
            raise JudgeError(f"judge reply has a tag that is not 0 or 1: {reply[:200]!r}")
        if verdicts.setdefault(int(k), int(v)) != int(v):
            raise JudgeError(f"judge reply gives fact {k} two verdicts: {reply[:200]!r}")
    missing = [k for k in range(1, num_facts + 1) if k not in verdicts]
    if missing:
        raise JudgeError(f"judge reply has no verdict for facts {missing}: {reply[:200]!r}")
    extra = sorted(k for k in verdicts if not 1 <= k <= num_facts)
    if extra:
        raise JudgeError(f"judge reply has verdicts for facts that were not asked {extra}: {reply[:200]!r}")
    return sum(verdicts[k] for k in range(1, num_facts + 1)) / num_facts


class JudgeClient:
    """Blocking client; `coverage_many` runs up to `max_concurrency` requests at once in threads."""

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.endpoint = ChatEndpoint(cfg.base_url, timeout_s=cfg.timeout_s, api_key_env=cfg.api_key_env)
        self.url = self.endpoint.url

    def _request_once(self, facts: list[str], text: str, deadline: float) -> float:
        body = {
            "model": self.cfg.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": build_prompt(facts, text)}],
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
        }
        try:
            reply = self.endpoint.post(body, deadline=deadline)["choices"][0]["message"]["content"]
        except ChatEndpointError as err:
            raise (JudgeUnreachable if err.kind in ("timeout", "connection") else JudgeError)(str(err)) from err
        except (KeyError, IndexError, TypeError) as err:
            raise JudgeError(f"reply without choices[0].message.content: {err}") from err
        return parse_verdicts(str(reply), len(facts))

    def coverage(self, facts: list[str], text: str, unreachable: threading.Event | None = None) -> float | None:
        """Fraction of `facts` the judge finds in `text`; None when no attempt succeeded by the deadline
        (`timeout_s` from now). Sets `unreachable` when the server gave no reply at all."""
        deadline = time.monotonic() + self.cfg.timeout_s
        try:
            return with_retries(lambda _: self._request_once(facts, text, deadline), max_retries=self.cfg.max_retries,
                                backoff_s=self.cfg.backoff_s, retry_on=(JudgeError,), what="judge request",
                                deadline=deadline)
        except JudgeUnreachable:
            if unreachable is not None:
                unreachable.set()
            return None
        except JudgeError:
            return None

    def coverage_many(self, jobs: list[tuple[list[str], str]]) -> list[float | None | str]:
        """`coverage` for each (facts, text) job, at most `max_concurrency` in flight: a float, None (a
        reply that could not be used) or UNREACHABLE (no reply). Once the server is found unreachable,
        the jobs not yet started get UNREACHABLE without a request."""
        if not jobs:
            return []
        unreachable = threading.Event()

        def one(job: tuple[list[str], str]) -> float | None | str:
            if unreachable.is_set():
                return UNREACHABLE
            got = self.coverage(*job, unreachable=unreachable)
            return UNREACHABLE if got is None and unreachable.is_set() else got

        with ThreadPoolExecutor(max_workers=min(self.cfg.max_concurrency, len(jobs))) as ex:
            return list(ex.map(one, jobs))
