"""`nemo-vtp data annotate` and `data clean-sft` end to end.

- a REAL server: `nemo-vtp serve` in a subprocess on 127.0.0.1 serving a tiny random Qwen2.5-VL (it
  writes gibberish: the runs must finish, with every row dropped or failed for a stated reason);
- the in-process backend (`--teacher MODEL_DIR`) over the same tiny model;
- the scripted teacher behind a fault-injecting loopback server: HTTP errors, hangs (timeouts),
  unparseable judge replies and non-JSON bodies; then a healthy rerun completes without duplicates;
- the real server killed mid-run; a rerun against a fresh server finishes the rest.
"""

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nemo_vtp.config.data_engine import DataEngineConfig
from nemo_vtp.data.annotate import Annotator
from nemo_vtp.data.cli import main as data_main
from nemo_vtp.data.io import read_samples, write_samples
from nemo_vtp.data.runner import ShardFiles, run_samples
from nemo_vtp.data.scripted_teacher import ScriptedTeacher
from nemo_vtp.data.synth import WorldSpec, generate
from nemo_vtp.data.teachers import LocalTeacher, build_teacher
from nemo_vtp.data.tokenizer import load_tokenizer
from tests.e2e.stages import start_serve_process
from tests.tiny_qwen25vl import write_tiny_folder

FAST = ["requests.backoff_s=0.01", "requests.max_retries=1", "requests.timeout_s=60"]
TINY = ["annotate.num_chains=3", "annotate.budget=2", "annotate.max_tokens=8", "annotate.judge_max_tokens=6",
        "annotate.extract_max_tokens=8", "clean_sft.max_tokens=8", "clean_sft.judge_max_tokens=6"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate(WorldSpec(num=12, seed=7), out)
    samples = read_samples(out / "train.jsonl")[0]
    # clean-sft needs a formal description: give a few rows a caption, boxes and OCR text as a converter would.
    for s in samples[:3]:
        s.meta.update(caption="A synthetic picture.", boxes='[{"label": "shape", "bbox": [1, 2, 30, 40]}]', ocr='["7"]')
    write_samples(out / "train.jsonl", samples)
    return out / "train.jsonl", samples


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_folder(tmp_path_factory.mktemp("tiny") / "tiny-qwen25vl", tokenizer=load_tokenizer())


def start_serve(model_dir) -> tuple[subprocess.Popen, str]:
    proc = start_serve_process(model_dir)
    line = proc.stdout.readline()
    assert "serving" in line, line
    return proc, line.split(" on ")[1].split("/v1")[0]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def real_server(model_dir):
    proc, url = start_serve(model_dir)
    yield url
    stop(proc)


def _run(command, in_path, out, teacher, *extra) -> int:
    return data_main([command, "--in", str(in_path), "--out", str(out), "--teacher", str(teacher), "--no-progress",
                      "--limit", "3", *FAST, *TINY, *extra])


def _summary(out, shard=(0, 1)) -> dict:
    return json.loads(ShardFiles.of(out, shard, "train").summary.read_text())


def _records(out) -> list[dict]:
    return [json.loads(line) for line in ShardFiles.of(out, (0, 1), "train").records.read_text().splitlines()]


def _kept_ids(out) -> list[str]:
    path = ShardFiles.of(out, (0, 1), "train").samples
    return [json.loads(line)["id"] for line in path.read_text().splitlines()] if path.is_file() else []


# ---------------------------------------------------------------------- a real model, HTTP and in process
@pytest.mark.parametrize("backend", ["http", "local"])
def test_annotate_with_a_tiny_real_model(world, real_server, model_dir, tmp_path, backend):
    in_path, _ = world
    teacher = real_server if backend == "http" else model_dir
    # Thresholds at 0 let gibberish chains through accuracy: the run must still end with stated reasons.
    assert _run("annotate", in_path, tmp_path, teacher, "annotate.min_accuracy=0") == 0
    summary = _summary(tmp_path)
    assert summary["rows_in_shard"] == 3 and summary["dropped"] == 3 and summary["failed"] == 0
    assert set(summary["reasons"]) == {"dropped: no well-formed chain"}
    assert _run("annotate", in_path, tmp_path, teacher) == 0  # a rerun has nothing left to do
    assert _summary(tmp_path)["already_done"] == 3 and len(_records(tmp_path)) == 3


@pytest.mark.parametrize("backend", ["http", "local"])
def test_clean_sft_with_a_tiny_real_model(world, real_server, model_dir, tmp_path, backend):
    in_path, _ = world
    teacher = real_server if backend == "http" else model_dir
    # A rewrite without any tag is unparseable: retried, then recorded as failed (a rerun tries it again).
    assert _run("clean-sft", in_path, tmp_path, teacher) == 1
    summary = _summary(tmp_path)
    assert summary["failed"] == 3 and summary["reasons"] == {"failed: rewrite: unparseable": 3}
    assert _kept_ids(tmp_path) == []


def test_teachers_return_logprobs_from_the_real_model(real_server, model_dir, world):
    from nemo_vtp.config.data_engine import RequestConfig, TeacherConfig
    from nemo_vtp.data.teachers import ChatRequest, image_part

    _, samples = world
    image = world[0].parent / samples[0].images[0]
    messages = [{"role": "user", "content": [image_part(image), {"type": "text", "text": "what"}]}]
    for url in (real_server, str(model_dir)):
        teacher = build_teacher(TeacherConfig(url=url), RequestConfig())
        assert isinstance(teacher, LocalTeacher) == (url == str(model_dir))
        replies = teacher.chat(ChatRequest(messages, n=3, max_tokens=5, temperature=1.0, seed=1, logprobs=True))
        assert len(replies) == 3
        assert all(r.logprob is not None and r.logprob < 0 and 1 <= r.num_tokens <= 5 for r in replies)


# ---------------------------------------------------------------------- faults
class FaultServer(ThreadingHTTPServer):
    """The scripted teacher, or a fault: "error" (HTTP 500), "hang" (sleeps past the client timeout),
    "garbage" (chains fine, judge replies without the reply format), "not_json" (a body that is not JSON)."""

    daemon_threads = True

    def __init__(self, scripted):
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.scripted, self.mode, self.requests = scripted, "ok", 0

    def handle_error(self, request, client_address):  # a client that timed out and left: expected
        pass

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FaultHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, data: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.requests += 1
        if srv.mode == "error":
            return self._send(500, b'{"error": {"message": "teacher down"}}')
        if srv.mode == "hang":
            time.sleep(1.5)
        if srv.mode == "not_json":
            return self._send(200, b"<html>502 Bad Gateway</html>")
        reply = srv.scripted.reply(body)
        if srv.mode == "garbage" and not body.get("logprobs"):  # chains keep their format; the judge babbles
            for choice in reply["choices"]:
                choice["message"]["content"] = "Well, it depends on how one looks at it."
        self._send(200, json.dumps(reply).encode())


@pytest.fixture
def fault_server(world):
    in_path, samples = world
    server = FaultServer(ScriptedTeacher(samples, in_path.parent))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("command", "mode", "reason"), [
    ("annotate", "error", "failed: chains: http"),
    ("annotate", "hang", "failed: chains: timeout"),
    ("annotate", "garbage", "failed: coherence: unparseable"),
    ("annotate", "not_json", "failed: chains: bad_reply"),
    ("clean-sft", "error", "failed: rewrite: http"),
    ("clean-sft", "hang", "failed: rewrite: timeout"),
])
def test_faults_are_reported_and_a_rerun_completes(world, fault_server, tmp_path, command, mode, reason):
    in_path, _ = world
    fault_server.mode = mode
    # Six chains all judged: with the scripted teacher's noise, some chain of each sample reaches the judge.
    limit = ["annotate.num_chains=6", "annotate.budget=6"]
    # A short timeout only for the hanging server: the healthy reruns get the default, so that a busy
    # machine cannot turn slow answers into timeouts.
    faulty = limit + (["requests.timeout_s=0.3"] if mode == "hang" else [])
    start = time.perf_counter()
    assert _run(command, in_path, tmp_path, fault_server.url, *faulty) == 1
    first = _summary(tmp_path)
    assert first["failed"] == 3 and first["reasons"] == {reason: 3}, first
    assert time.perf_counter() - start < 20
    assert _kept_ids(tmp_path) == []
    fault_server.mode = "ok"
    assert _run(command, in_path, tmp_path, fault_server.url, *limit) == 0
    second = _summary(tmp_path)
    assert second["failed"] == 0 and second["kept"] + second["dropped"] == 3
    kept = _kept_ids(tmp_path)
    assert len(kept) == len(set(kept)) == second["kept"] > 0
    before = fault_server.requests
    assert _run(command, in_path, tmp_path, fault_server.url, *limit) == 0
    assert _summary(tmp_path)["already_done"] == 3 and fault_server.requests == before  # nothing redone


def test_real_server_killed_mid_run(world, model_dir, tmp_path):
    in_path, samples = world
    proc, url = start_serve(model_dir)
    try:
        cfg = DataEngineConfig(teachers=[url], requests={"backoff_s": 0.01, "max_retries": 1, "timeout_s": 60},
                               annotate={"num_chains": 2, "budget": 1, "max_tokens": 6})
        teachers = [build_teacher(t, cfg.requests) for t in cfg.teachers]
        annotate = Annotator(cfg, teachers, teachers[0], in_path.parent)
        done = []

        def process(sample):
            outcome = annotate(sample)
            done.append(sample.id)
            if len(done) == 2:
                proc.kill()  # the teacher dies after two samples
                proc.wait()
            return outcome

        first = run_samples(samples[:6], process, command="annotate", input_path=in_path, out_dir=tmp_path,
                            progress=False, max_concurrency=1, max_consecutive_failures=2)
        # Two finished before the kill; then failures until two in a row stop the run (one more may be in flight).
        assert first.counts["dropped"] == 2 and first.counts["failed"] in (2, 3) and first.stopped
        assert first.reasons["failed: chains: connection"] == first.counts["failed"]
        assert first.not_attempted == 6 - 2 - first.counts["failed"]
    finally:
        stop(proc)
    proc, url = start_serve(model_dir)
    try:
        assert data_main(["annotate", "--in", str(in_path), "--out", str(tmp_path), "--teacher", url, "--limit", "6",
                          "--no-progress", "annotate.num_chains=2", "annotate.budget=1", "annotate.max_tokens=6"]) == 0
    finally:
        stop(proc)
    second = _summary(tmp_path)
    assert second["already_done"] == 2 and second["dropped"] == 4 and second["failed"] == 0
    final = {}
    for r in _records(tmp_path):
        final[r["id"]] = r["status"]
    assert sorted(final) == sorted(s.id for s in samples[:6]) and set(final.values()) == {"dropped"}
