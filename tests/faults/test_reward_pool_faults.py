"""Reward worker faults: a worker killed (os.kill) while it receives a task or while it scores one,
and responses that are not text. Each is a counted error scored 0; `score_batch` always returns."""

import os
import signal
import threading
import time

import pytest

from nemo_vtp.rewards import RewardConfig, RewardPool, batch_metrics, score_batch

SAMPLE = {"question": "How many circles?", "answer": "5",
          "key_info": {"visual": ["3 red circles"], "textual": ["3 + 2 = 5"]}}
GOOD = "<description>3 red circles, 2 blue</description><think>3 + 2 = 5</think><answer>5</answer>"
# math-verify never returns on this one (see tests/unit/test_rewards_pool.py): a worker stays busy on it.
HANGS = "<description>x</description><think>y</think><answer>(10^{10})!</answer>"
# Several MB: the pipe takes 64 KB at a time, so the worker is still receiving when it is killed.
LARGE = GOOD + " padding" * 500_000


@pytest.fixture(scope="module")
def pool():
    cfg = RewardConfig(schedule={"steps": 0}, pool={"num_workers": 2, "sample_timeout_s": 20,
                                                    "math_verify_timeout_s": 0})
    with RewardPool(cfg) as p:
        yield p


def _kill_every_worker(pool: RewardPool, seconds: float) -> threading.Thread:
    """SIGKILL every worker of the pool (replacements too) every 5 ms for `seconds`, in the background."""
    def run():
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            for worker in list(pool.workers):
                try:
                    os.kill(worker.process.pid, signal.SIGKILL)
                except (ProcessLookupError, TypeError):  # already gone, or not started yet
                    pass
            time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _assert_recovers(pool: RewardPool) -> None:
    rows = score_batch([GOOD] * 3, [SAMPLE] * 3, pool.cfg, pool=pool)
    assert [r["acc"] for r in rows] == [1.0] * 3 and sum(r["errors"] for r in rows) == 0
    assert len(pool.workers) == 2 and all(w.process.is_alive() for w in pool.workers)


def test_worker_killed_while_receiving_a_task(pool):
    killer = _kill_every_worker(pool, seconds=1.0)
    rows = score_batch([LARGE, LARGE, LARGE], [SAMPLE] * 3, pool.cfg, pool=pool)  # used to raise BrokenPipeError
    killer.join()
    assert len(rows) == 3
    assert batch_metrics(rows)["errors"] >= 1.0  # the samples whose workers died are counted...
    for row in rows:
        if row["errors"]:
            assert row["total"] == 0.0 and row["acc"] == 0.0  # ...and scored 0
    _assert_recovers(pool)


def test_worker_killed_while_scoring_mid_batch(pool):
    before = {w.process.pid for w in pool.workers}
    killer = threading.Timer(1.0, lambda: [os.kill(w.process.pid, signal.SIGKILL)
                                           for w in list(pool.workers) if w.index == 1])
    killer.start()
    start = time.monotonic()
    rows = score_batch([GOOD, HANGS, GOOD, GOOD], [SAMPLE] * 4, pool.cfg, pool=pool)
    killer.join()
    assert time.monotonic() - start < 10  # the kill ended the hang, not the 20 s deadline
    assert [r["errors"] for r in rows] == [0.0, 1.0, 0.0, 0.0] and rows[1]["timeouts"] == 0.0
    # killed inside math-verify: R_acc is 0 (the terms sent before math-verify started are kept)
    assert rows[1]["acc"] == 0.0 and [rows[i]["acc"] for i in (0, 2, 3)] == [1.0] * 3
    assert before - {w.process.pid for w in pool.workers}
    _assert_recovers(pool)


@pytest.mark.parametrize("bad", [None, b"<answer>5</answer>", 5], ids=["None", "bytes", "int"])
def test_response_that_is_not_text(pool, bad):
    rows = score_batch([GOOD, bad, GOOD], [SAMPLE] * 3, pool.cfg, pool=pool)
    assert [r["errors"] for r in rows] == [0.0, 1.0, 0.0]
    assert rows[1]["total"] == 0.0 and rows[0] == rows[2] and rows[0]["acc"] == 1.0
    assert batch_metrics(rows)["errors"] == 1.0


def test_response_that_is_not_text_in_process():
    cfg = RewardConfig(schedule={"steps": 0}, pool={"num_workers": 0})
    rows = score_batch([None, GOOD], [SAMPLE, SAMPLE], cfg)
    assert [r["errors"] for r in rows] == [1.0, 0.0] and rows[0]["total"] == 0.0 and rows[1]["acc"] == 1.0
