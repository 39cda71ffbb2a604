"""Faults of the LLM judge, against real loopback sockets: a server that trickles its reply, one that
never answers, one killed mid-reply, one that is gone. Each request keeps its total deadline
(`judge.timeout_s`), the rule matcher's value stands in, and every fallback is counted in
`judge_failures`; a dead judge costs a batch about one deadline, not one per request."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from nemo_vtp.config.rewards import JudgeConfig
from nemo_vtp.rewards import RewardConfig, score_batch
from nemo_vtp.rewards.judge import UNREACHABLE, JudgeClient

GARBAGE = json.dumps({"choices": [{"message": {"role": "assistant", "content": "mostly right, I think"}}]}).encode()
REPLY = json.dumps({"choices": [{"message": {"role": "assistant", "content": "<info1>1</info1>"}}]}).encode()
SAMPLE = {"question": "How many?", "answer": "5", "key_info": {"visual": ["3 red circles"], "textual": ["3 + 2 = 5"]}}
RESPONSE = "<description>3 red circles</description><think>so 3 + 2 = 5</think><answer>5</answer>"


class RawServer:
    """A loopback TCP server that reads one request per connection and then misbehaves as `mode` says:
    trickle_body (headers, then one body byte every `gap` s), trickle_headers (one header byte every
    `gap` s), silent (no reply), cut (half a body, then close), garbage (a full reply without verdicts)."""

    def __init__(self, mode: str, gap: float = 0.2):
        self.mode, self.gap, self.connections = mode, gap, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += conn.recv(65536)

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self.stop.is_set():
                return
            conn.sendall(data[i:i + 1])
            time.sleep(self.gap)

    def _serve(self, conn: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(REPLY)}\r\n\r\n".encode()
        try:
            self._read_request(conn)
            if self.mode == "garbage":
                conn.sendall(head.replace(str(len(REPLY)).encode(), str(len(GARBAGE)).encode()) + GARBAGE)
            elif self.mode == "trickle_body":
                conn.sendall(head)
                self._drip(conn, REPLY)
            elif self.mode == "trickle_headers":
                self._drip(conn, head + REPLY)
            elif self.mode == "cut":
                conn.sendall(head + REPLY[:len(REPLY) // 2])
            elif self.mode == "silent":
                self.stop.wait(30)
        except OSError:  # the client gave up and closed: expected
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def raw_server(request):
    server = RawServer(request.param)
    yield server
    server.close()


def _client(url: str, **kw) -> JudgeClient:
    return JudgeClient(JudgeConfig(**{"base_url": url, "timeout_s": 1.0, "max_retries": 2, "backoff_s": 0.05, **kw}))


@pytest.mark.parametrize("raw_server", ["trickle_body", "trickle_headers", "silent"], indirect=True)
def test_a_slow_server_cannot_hold_a_request_past_its_deadline(raw_server):
    """The reply would take ~20 s at one byte per 0.2 s; each byte resets a socket timeout, the total
    deadline of 1 s still ends the request (retries included)."""
    start = time.monotonic()
    assert _client(raw_server.url).coverage(["3 red circles"], "3 red circles") is None
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 3.0, elapsed  # bounds loose for a loaded CI machine: the reply alone takes ~20 s


@pytest.mark.parametrize("raw_server", ["cut"], indirect=True)
def test_a_server_killed_mid_reply_is_a_failure_not_a_crash(raw_server):
    assert _client(raw_server.url).coverage(["3 red circles"], "3 red circles") is None
    assert raw_server.connections == 3  # the first attempt and both retries


@pytest.mark.parametrize("raw_server", ["trickle_body"], indirect=True)
def test_a_trickling_judge_holds_a_batch_about_one_deadline_and_rules_stand_in(raw_server):
    cfg = RewardConfig(matcher="judge", schedule={"steps": 0}, pool={"num_workers": 0},
                       judge={"base_url": raw_server.url, "timeout_s": 1.0, "max_retries": 1, "backoff_s": 0.05,
                              "max_concurrency": 4})
    rule = score_batch([RESPONSE], [SAMPLE], cfg.model_copy(update={"matcher": "rule"}))[0]
    start = time.monotonic()
    rows = score_batch([RESPONSE] * 20, [SAMPLE] * 20, cfg)  # 40 judge jobs, 4 in flight
    elapsed = time.monotonic() - start
    assert elapsed < 5.0, elapsed  # ~1 s; without the batch stop: 10 waves of 1 s
    # vkey and tkey of every response fell back, for want of any reply
    assert all(r["judge_failures"] == r["judge_unreachable"] == 2.0 for r in rows)
    assert all((r["vkey"], r["tkey"]) == (rule["vkey"], rule["tkey"]) == (1.0, 1.0) for r in rows)


def test_a_judge_that_is_gone_costs_a_batch_its_retries_once():
    """The judge process was killed: its port refuses connections. 100 jobs finish in about one
    request's retries, every response keeps its rule-based terms, every fallback is counted."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = _client(url, backoff_s=0.2, max_concurrency=4)
    start = time.monotonic()
    got = client.coverage_many([(["3 red circles"], "3 red circles")] * 100)
    elapsed = time.monotonic() - start
    assert got == [UNREACHABLE] * 100
    assert elapsed < 5.0, elapsed  # one request's backoffs (0.2 + 0.4 s); 25 waves of them (15 s) without the stop


@pytest.mark.parametrize("raw_server", ["garbage"], indirect=True)
def test_a_judge_that_answers_garbage_is_a_failure_but_not_unreachable(raw_server):
    """A reply without one verdict per fact falls back to the rule value like a dead judge does, but
    `judge_unreachable` stays 0: the metrics tell a bad judge from a down one."""
    cfg = RewardConfig(matcher="judge", schedule={"steps": 0}, pool={"num_workers": 0},
                       judge={"base_url": raw_server.url, "timeout_s": 2.0, "max_retries": 1, "backoff_s": 0.01})
    rows = score_batch([RESPONSE] * 3, [SAMPLE] * 3, cfg)
    assert [(r["judge_failures"], r["judge_unreachable"], r["vkey"]) for r in rows] == [(2.0, 0.0, 1.0)] * 3
    assert raw_server.connections == 12  # 3 responses x 2 terms x (1 + 1 retry): a bad reply stops nothing
