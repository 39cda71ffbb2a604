"""The reward worker pool and `score_batch`.

Each worker process holds one sample at a time, so every sample has its own deadline
(`pool.sample_timeout_s`). A worker past its deadline is killed (SIGKILL: math-verify/sympy can be
stuck where no Python-level timeout reaches) and replaced at once; a worker that dies (crash, kill by
the OS) is replaced too. When R_acc needs math-verify, the worker sends all other terms before it
starts, so a sample that times out in math-verify keeps its other terms and gets acc = 0; a sample
whose worker dies before its first message gets 0 for every term. A worker that dies while it
receives a task is replaced and the task sent once more; should that fail too, the sample gets 0
and is counted. All cases are counted, in `timeouts` and `errors`: no worker fault leaves
`score_batch`. Workers start with `forkserver` (or `spawn`), never `fork`: the trainer process holds
threads and CUDA state that a fork would copy.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import time
from collections import deque
from dataclasses import dataclass

from nemo_vtp.config.rewards import RewardConfig
from nemo_vtp.rewards.compose import apply_judge, total_reward
from nemo_vtp.rewards.terms import acc_term, fast_terms, merge_terms

log = logging.getLogger(__name__)


REWARD_FIELDS = ("question", "answer", "choices", "key_info")  # what the terms read from a sample


def reward_fields(sample: dict) -> dict:
    """The part of a sample the workers need: images and other payload never cross the pipe."""
    return {k: sample[k] for k in REWARD_FIELDS if k in sample}


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _worker_main(conn, cfg_json: str) -> None:
    """Worker loop: receive (index, response, sample, num_tokens, max_tokens); send ("done", i, [terms, acc]) or,
    when R_acc needs math-verify, ("partial", i, [terms]) then ("done", i, [acc]); exit on None or
    when the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle; it closes us
    cfg = RewardConfig.model_validate_json(cfg_json)
    _limit_memory(cfg.pool.worker_memory_mb)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        index, response, sample, num_tokens, max_tokens = task
        fast = fast_terms(response, sample, cfg, num_tokens, max_tokens)
        quick = acc_term(response, sample, cfg, math_verify=False)
        if quick is not None:  # the common case: one message
            conn.send(("done", index, [fast, quick]))
            continue
        conn.send(("partial", index, [fast]))  # kept if math-verify then hangs
        conn.send(("done", index, [acc_term(response, sample, cfg)]))


@dataclass
class _Worker:
    process: multiprocessing.Process
    conn: multiprocessing.connection.Connection
    index: int = -1  # sample in flight, -1 when idle
    deadline: float = 0.0  # time.monotonic() by which the sample must be done


class RewardPool:
    """A fixed set of worker processes bound to one RewardConfig. Use as a context manager or call
    `close()`; `score_batch` keeps one for you."""

    def __init__(self, cfg: RewardConfig):
        if cfg.pool.num_workers < 1:
            raise ValueError("RewardPool needs pool.num_workers >= 1 (0 means score in-process)")
        self.cfg = cfg
        self._cfg_json = cfg.model_dump_json()
        self._ctx = multiprocessing.get_context(cfg.pool.start_method)
        if cfg.pool.start_method == "forkserver":
            # Replacements then fork from a server that has already imported the reward code.
            self._ctx.set_forkserver_preload(["nemo_vtp.rewards.pool", "math_verify"])
        self.workers = [self._start() for _ in range(cfg.pool.num_workers)]

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, self._cfg_json), daemon=True,
                                 name="nemo-vtp-reward")
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill `worker` (whatever it is doing) and put a fresh one in its slot."""
        worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()
        fresh = self._start()
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    def _dispatch(self, worker: _Worker, index: int, task: tuple) -> bool:
        """Send one task to an idle worker. A worker found dead (or dying while it receives) is replaced
        and the task sent once more; False when that fails too (the caller counts the sample)."""
        for _ in range(2):
            try:
                worker.conn.send(task)
            except OSError:  # BrokenPipeError, ConnectionResetError: the worker is gone
                log.warning("reward worker pid %s died receiving sample %d; replacing it", worker.process.pid, index)
                worker = self._replace(worker)
                continue
            worker.index, worker.deadline = index, time.monotonic() + self.cfg.pool.sample_timeout_s
            return True
        return False

    def _drain(self, worker: _Worker, parts: list[list[dict]]) -> None:
        """Read every message the worker has sent; a closed pipe means the worker died."""
        try:
            while worker.conn.poll():
                kind, index, payload = worker.conn.recv()
                parts[index].extend(payload)
                if kind == "done":
                    worker.index = -1
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):  # dead, or a torn message: the same
            log.warning("reward worker pid %s died (sample %d); replacing it", worker.process.pid, worker.index)
            if worker.index >= 0:  # it may also die just after finishing a sample
                parts[worker.index].append({"errors": 1.0})
            self._replace(worker)

    def _expire(self, parts: list[list[dict]]) -> None:
        now = time.monotonic()
        for slot in range(len(self.workers)):
            if self.workers[slot].index >= 0 and now >= self.workers[slot].deadline:
                self._drain(self.workers[slot], parts)  # keep what arrived since the last wait
            worker = self.workers[slot]
            if worker.index >= 0 and now >= worker.deadline:
                log.warning("reward sample %d timed out after %.1f s; killing worker pid %s",
                            worker.index, self.cfg.pool.sample_timeout_s, worker.process.pid)
                parts[worker.index].append({"timeouts": 1.0})
                self._replace(worker)

    def run(self, responses: list[str], samples: list[dict], num_tokens: list[int | None],
            max_tokens: int | None = None) -> list[dict]:
        """Unweighted terms and counters of every sample, in input order (no `total`)."""
        parts: list[list[dict]] = [[] for _ in responses]
        pending = deque(range(len(responses)))
        while pending or any(w.index >= 0 for w in self.workers):
            for slot in range(len(self.workers)):  # by slot: _dispatch may put a fresh worker there
                while self.workers[slot].index == -1 and pending:
                    i = pending.popleft()
                    task = (i, responses[i], reward_fields(samples[i]), num_tokens[i], max_tokens)
                    try:
                        sent = self._dispatch(self.workers[slot], i, task)
                    except (pickle.PicklingError, TypeError, AttributeError) as err:  # nothing was sent
                        log.warning("reward sample %d cannot be sent to a worker: %s", i, err)
                        sent = False
                    if not sent:
                        parts[i].append({"errors": 1.0})
            busy = [w for w in self.workers if w.index >= 0]
            if not busy:
                continue
            wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = multiprocessing.connection.wait([w.conn for w in busy], timeout=wait_s)
            for worker in [w for w in busy if w.conn in ready]:
                self._drain(worker, parts)
            self._expire(parts)
        return [merge_terms(*p) for p in parts]

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self.workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()
        self.workers = []

    def __enter__(self) -> RewardPool:  # noqa: PYI034 -- typing.Self needs Python 3.11; we support 3.10
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_shared: RewardPool | None = None


def _shared_pool(cfg: RewardConfig) -> RewardPool:
    """One pool per process, rebuilt when the config changes (workers start once, not every step)."""
    global _shared
    if _shared is not None and _shared._cfg_json != cfg.model_dump_json():
        _shared.close()
        _shared = None
    if _shared is None:
        _shared = RewardPool(cfg)
    return _shared


def shutdown_shared_pool() -> None:
    """Stop the workers `score_batch` started (also runs at interpreter exit)."""
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


atexit.register(shutdown_shared_pool)


def score_batch(responses: list[str], samples: list[dict], config: RewardConfig | None = None, step: int = 0,
                num_tokens: list[int | None] | None = None, pool: RewardPool | None = None,
                max_tokens: int | None = None) -> list[dict]:
    """`score` for a batch: rule-based terms in the worker pool (per-sample timeout), the judge pass
    when `matcher == "judge"`, then `total` at `step`. Returns one dict per response, in order, with
    the terms, `total` and the counters `timeouts`, `errors`, `judge_failures`, `judge_unreachable` (floats).
    A response that is not a str (None, bytes) scores 0 and counts in `errors`: a step never dies of a reward.
    `num_tokens`: token counts for R_overlong, one per response (None: whitespace words); `max_tokens`:
    L_max of R_overlong, the rollouts' `max_new_tokens` (None: R_overlong = 0)."""
    cfg = config or (pool.cfg if pool is not None else RewardConfig())
    if pool is not None and cfg != pool.cfg:
        raise ValueError("score_batch: `config` differs from the config the pool's workers were started with")
    if len(responses) != len(samples):
        raise ValueError(f"score_batch: {len(responses)} responses but {len(samples)} samples")
    counts = list(num_tokens) if num_tokens is not None else [None] * len(responses)
    if len(counts) != len(responses):
        raise ValueError(f"score_batch: {len(responses)} responses but {len(counts)} token counts")
    ok = [i for i, r in enumerate(responses) if isinstance(r, str)]
    for i in sorted(set(range(len(responses))) - set(ok)):
        log.warning("reward sample %d: the response is %s, not text; scored 0 and counted in errors",
                    i, type(responses[i]).__name__)
    texts, rows, lengths = [responses[i] for i in ok], [samples[i] for i in ok], [counts[i] for i in ok]
    if cfg.pool.num_workers == 0 and pool is None:
        scored = [merge_terms(fast_terms(r, s, cfg, n, max_tokens), acc_term(r, s, cfg))
                  for r, s, n in zip(texts, rows, lengths)]
    else:
        scored = (pool or _shared_pool(cfg)).run(texts, rows, lengths, max_tokens)
    if cfg.matcher == "judge":
        apply_judge(scored, texts, rows, cfg)
    results = [merge_terms({"errors": 1.0}) for _ in responses]
    for i, result in zip(ok, scored):
        results[i] = result
    for result in results:
        result.update({t.key: result.get(t.key, 0.0) for t in cfg.extra})  # 0 for a sample that timed out
        result["total"] = total_reward(result, cfg, step)
    return results
