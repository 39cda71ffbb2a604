"""The reward worker pool: same results as in-process scoring, bounded time on input that makes
math-verify/sympy hang, recovery from a dying worker, counted failures."""

import os
import subprocess
import sys
import time

import pytest

from nemo_vtp.rewards import RewardConfig, RewardPool, batch_metrics, score, score_batch, shutdown_shared_pool

# (10^{10})! has ten billion factors: sympy evaluates it when math-verify compares it with a number
# and never returns (checked in test_the_input_really_hangs_math_verify).
PATHOLOGICAL = "<description>x</description><think>y</think><answer>(10^{10})!</answer>"
SAMPLE = {"question": "How many circles?", "answer": "5",
          "key_info": {"visual": ["3 red circles"], "textual": ["3 + 2 = 5"]}}
GOOD = "<description>3 red circles, 2 blue</description><think>3 + 2 = 5</think><answer>5</answer>"
WRONG = "<description>3 red circles</description><think>3 + 3 = 6</think><answer>6</answer>"


def _cfg(**pool) -> RewardConfig:
    # math-verify's own alarm off: the pool's kill must be the guard that works.
    return RewardConfig(schedule={"steps": 0}, pool={"num_workers": 2, "sample_timeout_s": 4.0,
                                                     "math_verify_timeout_s": 0, **pool})


class _KillsWorker:
    """Unpickling this in a worker ends the worker process at once, like a segfault or an OOM kill."""

    def __reduce__(self):
        return (os._exit, (3,))


@pytest.fixture(scope="module")
def pool():
    with RewardPool(_cfg()) as p:
        yield p


def test_pool_equals_in_process_scoring(pool):
    sqrt = {**SAMPLE, "answer": "\\sqrt{2}"}  # decided by math-verify: the two-message path
    responses = [GOOD, WRONG, "", GOOD + " tail", GOOD.replace(">5<", ">\\frac{\\sqrt{8}}{2}<")] * 3
    samples = [SAMPLE, SAMPLE, SAMPLE, SAMPLE, sqrt] * 3
    got = score_batch(responses, samples, pool.cfg, step=0, pool=pool)
    want = [score(r, s, pool.cfg) for r, s in zip(responses, samples)]
    assert got == want
    assert [r["acc"] for r in got[:5]] == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_hanging_sample_times_out_and_the_pool_recovers(pool):
    responses = [GOOD, PATHOLOGICAL, WRONG, GOOD, PATHOLOGICAL, GOOD]
    pids_before = {w.process.pid for w in pool.workers}
    start = time.perf_counter()
    rows = score_batch(responses, [SAMPLE] * len(responses), pool.cfg, pool=pool)
    elapsed = time.perf_counter() - start
    # Two 4 s timeouts on two workers, plus worker restarts: far below the hang (it never ends).
    assert elapsed < 20.0
    assert [r["timeouts"] for r in rows] == [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert [r["acc"] for r in rows] == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    # The timed-out samples keep the terms computed before math-verify: fmt = 1, vkey = 0.
    assert (rows[1]["fmt"], rows[1]["vkey"]) == (1.0, 0.0)
    assert batch_metrics(rows)["timeouts"] == 2.0
    assert pids_before - {w.process.pid for w in pool.workers}, "the stuck workers must be replaced"
    assert all(w.process.is_alive() for w in pool.workers)
    again = score_batch([GOOD] * 4, [SAMPLE] * 4, pool.cfg, pool=pool)
    assert [r["acc"] for r in again] == [1.0] * 4


def test_dying_worker_is_replaced_and_counted(pool):
    samples = [SAMPLE, {**SAMPLE, "key_info": {"visual": [_KillsWorker()]}}, SAMPLE]
    rows = score_batch([GOOD] * 3, samples, pool.cfg, pool=pool)
    assert [r["errors"] for r in rows] == [0.0, 1.0, 0.0]
    assert rows[1]["total"] == 0.0 and rows[0]["acc"] == rows[2]["acc"] == 1.0
    assert len(pool.workers) == 2 and all(w.process.is_alive() for w in pool.workers)


def test_raising_term_is_counted(pool):
    rows = score_batch([GOOD, GOOD], [SAMPLE, {"question": "no answer field"}], pool.cfg, pool=pool)
    assert [r["errors"] for r in rows] == [0.0, 1.0]
    assert rows[1]["fmt"] == 1.0 and rows[1]["acc"] == 0.0


def test_shared_pool_and_in_process_paths():
    cfg = _cfg(num_workers=1, start_method="spawn")
    try:
        rows = score_batch([GOOD, WRONG], [SAMPLE, SAMPLE], cfg, step=3, num_tokens=[10, 5000], max_tokens=4096)
    finally:
        shutdown_shared_pool()
    assert [r["acc"] for r in rows] == [1.0, 0.0]
    assert rows[1]["overlong"] == -1.0  # 5000 tokens > L_max 4096
    inline = score_batch([GOOD, WRONG], [SAMPLE, SAMPLE], _cfg(num_workers=0), num_tokens=[10, 5000], max_tokens=4096)
    assert inline == rows
    with pytest.raises(ValueError, match="2 responses but 1 samples"):
        score_batch([GOOD, GOOD], [SAMPLE], cfg)


def test_the_input_really_hangs_math_verify():
    """Without the pool, scoring PATHOLOGICAL does not finish in 3 s (math-verify's alarm off)."""
    code = ("from nemo_vtp.rewards.accuracy import accuracy; "
            "print(accuracy('(10^{10})!', {'answer': '5'}, math_verify_timeout_s=0))")
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", code], check=False, timeout=3, capture_output=True)


def test_payload_stays_home_and_unsendable_samples_are_counted(pool):
    with_image = {**SAMPLE, "image": lambda: None}  # unpicklable, but not a reward field: never sent
    unsendable = {**SAMPLE, "key_info": {"visual": [lambda: None]}}
    rows = score_batch([GOOD, GOOD, GOOD], [with_image, unsendable, SAMPLE], pool.cfg, pool=pool)
    assert [r["errors"] for r in rows] == [0.0, 1.0, 0.0]
    assert rows[0] == rows[2] and rows[1]["total"] == 0.0


def test_bad_calls_raise_clear_errors(pool):
    # (a response that is not text is a counted error, not a raise: tests/faults/test_reward_pool_faults.py)
    with pytest.raises(ValueError, match="differs from the config"):
        score_batch([GOOD], [SAMPLE], RewardConfig(), pool=pool)


def test_worker_killed_while_idle_is_replaced(pool):
    victim = pool.workers[0].process
    os.kill(victim.pid, 9)
    victim.join(timeout=5)
    rows = score_batch([GOOD, WRONG, GOOD], [SAMPLE] * 3, pool.cfg, pool=pool)
    assert [r["acc"] for r in rows] == [1.0, 0.0, 1.0]
    assert sum(r["errors"] for r in rows) == 0.0  # nothing was in flight on the dead worker
    assert victim.pid not in {w.process.pid for w in pool.workers}
