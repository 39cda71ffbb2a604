"""Hostile requests against a real `nemo-vtp serve` on 127.0.0.1: each case is one attack that must get
a 4xx/503 (or a closed connection) while the server stays up and keeps answering normal requests.

One server process for the module (API key on, a local media root, 8 connections, 2 s request
deadline, a 256-token context); raw sockets for what an HTTP client would refuse to send. Every
loop and wait is bounded; all traffic stays on loopback."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from nemo_vtp.data.tokenizer import load_tokenizer
from nemo_vtp.generation.http_guard import GuardedHTTPServer
from nemo_vtp.generation.serve_media import LOCAL_MEDIA_REFUSED, encode_images
from tests.e2e.stages import env, start_serve_process
from tests.tiny_qwen25vl import make_image, write_tiny_folder

KEY = "test-key-7f3a"
AUTH = f"Authorization: Bearer {KEY}\r\n"
MAX_CONNECTIONS = 8
REQUEST_TIMEOUT_S = 2.0
CONTEXT = 256


@dataclass
class Served:
    url: str
    port: int
    pid: int
    media: Path  # the allowed root
    outside: Path  # a folder next to it, not allowed


def _proc_status(pid: int, field: str) -> int:
    """A number from /proc/PID/status (Threads, or VmHWM in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_faults")
    model_dir = write_tiny_folder(root / "tiny-qwen25vl", tokenizer=load_tokenizer())
    media, outside = root / "media", root / "outside"
    media.mkdir()
    outside.mkdir()
    make_image(1).save(media / "ok.png")
    make_image(2).save(outside / "secret.png")
    (media / "escape.png").symlink_to(outside / "secret.png")
    (media / "folder.png").mkdir()
    proc = start_serve_process(model_dir, "--api-key", KEY, "--allowed-local-media-path", str(media),
                               "--max-connections", str(MAX_CONNECTIONS), "--request-timeout-s", str(REQUEST_TIMEOUT_S),
                               "--max-model-len", str(CONTEXT), "--max-batch", "4", "--max-tokens", "4",
                               environ=env())
    try:
        line = proc.stdout.readline()
        assert "serving tiny-qwen25vl on http://127.0.0.1:" in line and "API key required" in line, line
        url = line.split(" on ")[1].split("/v1")[0]
        yield Served(url, int(url.rsplit(":", 1)[1]), proc.pid, media, outside)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 (never leave the server running)
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------- clients
def _read_reply(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one HTTP reply on a raw socket (until its Content-Length, or EOF)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(v) for k, _, v in (line.partition(": ") for line in lines[1:]) if k.lower() == "content-length"),
                  None)
    while length is not None and len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), json.loads(body)


def raw(served: Served, data: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(data)
        return _read_reply(sock)


def call(served: Served, route: str, body=None, key: str | None = KEY) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(served.url + route, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def chat(served: Served, body: dict, key: str | None = KEY) -> tuple[int, dict]:
    return call(served, "/v1/chat/completions", body, key)


def still_serving(served: Served) -> bool:
    return call(served, "/v1/models")[0] == 200


def _text(content: str = "what is in the image") -> list[dict]:
    return [{"role": "user", "content": content}]


def _image(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": "describe"}]}]


def png_of_size(width: int, height: int) -> bytes:
    """A valid all-black grayscale PNG of any size, built without ever holding its pixels (a few 100 kB)."""
    row = b"\x00" + bytes(width)  # filter type 0, then one byte per pixel
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


# ---------------------------------------------------------------------- malformed headers
@pytest.mark.parametrize(("headers", "status", "needle"), [
    ("Content-Length: -1\r\n", 400, "non-negative integer"),
    ("Content-Length: abc\r\n", 400, "non-negative integer"),
    ("Content-Length: +5\r\n", 400, "non-negative integer"),
    ("Content-Length: 1_0\r\n", 400, "non-negative integer"),
    ("Content-Length: 5\r\nContent-Length: 7\r\n", 400, "conflicting"),
    ("", 411, "Content-Length"),
    ("Transfer-Encoding: chunked\r\n", 411, "chunked"),
    ("Content-Length: 99999999999\r\n", 413, "exceeds"),
])
def test_bad_content_length_is_refused(served, headers, status, needle):
    got, reply = raw(served, f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{AUTH}{headers}\r\n".encode())
    assert got == status and needle in reply["error"]["message"], reply
    assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["code"] == status
    assert still_serving(served)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /health HTTP/9.9\r\n\r\n", 505),
    (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n", 431),
    (b"DELETE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", 501),
])
def test_malformed_request_gets_a_json_error(served, request_bytes, status):
    got, reply = raw(served, request_bytes)
    assert got == status and reply["error"]["code"] == status
    assert still_serving(served)


def test_body_shorter_than_declared_times_out_with_408(served):
    start = time.monotonic()
    got, reply = raw(served, f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 1000\r\n\r\n"
                             "{\"messages\"".encode())
    assert got == 408 and "did not arrive" in reply["error"]["message"]
    assert REQUEST_TIMEOUT_S - 0.2 < time.monotonic() - start < REQUEST_TIMEOUT_S + 3


def test_deeply_nested_json_is_a_400(served):
    body = b"[" * 200_000 + b"]" * 200_000
    got, reply = raw(served, f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: {len(body)}"
                             "\r\n\r\n".encode() + body)
    assert got == 400 and "not valid JSON" in reply["error"]["message"]


@pytest.mark.parametrize("body", [
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + b"9" * 100_000 + b"}",
    b'{"messages": [{"role": "user", "content": "hi"}], "seed": ' + str(2**70).encode() + b"}",
    b'{"messages": [{"role": "user", "content": "hi"}], "seed": -1}',
    b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 1}',
    b"\xff\xfe not utf-8",
])
def test_values_that_crash_a_parser_or_the_sampler_are_a_400(served, body):
    got, reply = raw(served, f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: {len(body)}"
                             "\r\n\r\n".encode() + body)
    assert got == 400, reply
    assert still_serving(served)


# ---------------------------------------------------------------------- authentication
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", f"Basic {KEY}", KEY, "Bearer "])
def test_missing_or_wrong_api_key_is_401_on_every_route(served, authorization):
    extra = f"Authorization: {authorization}\r\n" if authorization is not None else ""
    for request in (f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{extra}\r\n",
                    f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 2\r\n\r\n{{}}",
                    f"GET /no/such/route HTTP/1.1\r\nHost: x\r\n{extra}\r\n"):
        got, reply = raw(served, request.encode())
        assert got == 401 and "API key" in reply["error"]["message"], (request, reply)
    assert raw(served, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") == (200, {"status": "ok"})


# ---------------------------------------------------------------------- token budget
@pytest.mark.parametrize("max_tokens", [10**9, 1e9, CONTEXT])
def test_max_tokens_over_the_context_is_refused_at_once(served, max_tokens):
    start = time.monotonic()
    got, reply = chat(served, {"messages": _text(), "max_tokens": max_tokens})
    assert got == 400 and reply["error"]["param"] == "max_tokens"
    assert f"maximum context length is {CONTEXT} tokens" in reply["error"]["message"]
    assert time.monotonic() - start < 5  # answered, not generated


def test_prompt_longer_than_the_context_is_refused(served):
    got, reply = chat(served, {"messages": _text("what is the image " * 200)})
    assert got == 400 and reply["error"]["param"] == "messages"
    assert f"maximum context length is {CONTEXT} tokens" in reply["error"]["message"]


def test_a_30_mb_prompt_is_refused_without_tokenizing_it(served):
    """Tokenizing 32 MB of text takes minutes on 2 cores: the length alone settles it."""
    start = time.monotonic()
    got, reply = chat(served, {"messages": _text("what is the image about, tell me " * 900_000)})
    assert got == 400 and reply["error"]["param"] == "messages" and "characters" in reply["error"]["message"]
    assert time.monotonic() - start < 10


def test_prompt_plus_max_tokens_over_the_context_is_refused(served):
    status, ok = chat(served, {"messages": _text(), "max_tokens": 2, "temperature": 0})
    assert status == 200, ok
    prompt = ok["usage"]["prompt_tokens"]
    got, reply = chat(served, {"messages": _text(), "max_tokens": CONTEXT - prompt + 1})
    assert got == 400 and f"({prompt} in the messages, {CONTEXT - prompt + 1} in the completion)" in \
        reply["error"]["message"]


def test_n_over_the_batch_is_refused(served):
    got, reply = chat(served, {"messages": _text(), "n": 10**6, "max_tokens": 1})
    assert got == 400 and reply["error"]["param"] == "n"


# ---------------------------------------------------------------------- images
def test_oversize_images_are_refused_from_the_header_without_decoding(served):
    """Three 12000x12000 PNGs at once (140 kB each, 144 Mpixel): refused, and the server's peak memory
    does not move (decoding one would take over 400 MB as RGB)."""
    body = {"messages": _image(data_url(png_of_size(12000, 12000))), "max_tokens": 1}
    peak_before = _proc_status(served.pid, "VmHWM")
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: chat(served, body), range(3)))
    for got, reply in replies:
        assert got == 400 and "over the limit of 50000000" in reply["error"]["message"], reply
    assert _proc_status(served.pid, "VmHWM") - peak_before < 100_000  # kB


def _encoded(fmt: str) -> bytes:
    if fmt == "EPS":  # PIL would hand this to Ghostscript on load
        return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 56 56\nshowpage\n"
    buffer = io.BytesIO()
    make_image(0).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["EPS", "TIFF", "BMP", "ICO"])
def test_image_formats_beyond_png_jpeg_webp_gif_are_refused(served, fmt):
    got, reply = chat(served, {"messages": _image(data_url(_encoded(fmt))), "max_tokens": 1})
    assert got == 400 and "not a readable PNG, JPEG, WEBP, GIF image" in reply["error"]["message"], reply
    assert chat(served, {"messages": _image(data_url(_encoded("JPEG"))), "max_tokens": 1})[0] == 200


def test_too_many_images_in_one_request_are_refused(served):
    one = {"type": "image_url", "image_url": {"url": data_url(png_of_size(56, 56))}}
    got, reply = chat(served, {"messages": [{"role": "user", "content": [one] * 9}]})
    assert got == 400 and "at most 8" in reply["error"]["message"]


def test_concurrent_decodes_are_bounded():
    """Eight threads encode at once through two decode slots: at most two images are in flight."""
    active, peak, guard = [0], [0], threading.Lock()

    def processor(images, return_tensors):
        import torch

        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with guard:
            active[0] -= 1
        return {"pixel_values": torch.zeros(4, 1176), "image_grid_thw": torch.tensor([[1, 2, 2]])}

    slots = threading.BoundedSemaphore(2)
    url = data_url(png_of_size(56, 56))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: encode_images(processor, [(url, "x")], root=None, max_image_pixels=10**6, slots=slots),
                      range(8)))
    assert peak[0] == 2


# ---------------------------------------------------------------------- local paths
def _probe(served: Served, name: str) -> str:
    """A path an attacker might try, relative to the served fixture's folders."""
    return {
        "outside, exists": str(served.outside / "secret.png"),
        "outside, missing": str(served.outside / "nothing.png"),
        "traversal": str(served.media / ".." / "outside" / "secret.png"),
        "relative traversal": "../outside/secret.png",
        "symlink out of the root": str(served.media / "escape.png"),
        "folder in the root": str(served.media / "folder.png"),
        "missing in the root": str(served.media / "nothing.png"),
        "file url outside": f"file://{served.outside / 'secret.png'}",
        "system file": "/etc/passwd",
        "device": "/dev/zero",
        "nul byte": str(served.media / "ok.png\x00.png"),
    }[name]


@pytest.mark.parametrize("name", ["outside, exists", "outside, missing", "traversal", "relative traversal",
                                  "symlink out of the root", "folder in the root", "missing in the root",
                                  "file url outside", "system file", "device", "nul byte"])
def test_path_probes_get_one_identical_error(served, name):
    reference = chat(served, {"messages": _image("/no/such/file.png")})
    assert reference[0] == 400 and reference[1]["error"]["message"] == LOCAL_MEDIA_REFUSED
    assert chat(served, {"messages": _image(_probe(served, name))}) == reference
    # The same file, inside the root, is read.
    assert chat(served, {"messages": _image(str(served.media / "ok.png")), "max_tokens": 1})[0] == 200


# ---------------------------------------------------------------------- connections
def test_slowloris_is_bounded_and_normal_requests_are_served(served):
    """40 half-open requests against a cap of 8: threads stay bounded, a normal request is answered at
    once meanwhile, and every half-open connection is closed within the request deadline."""
    assert still_serving(served)
    threads_before = _proc_status(served.pid, "Threads")
    socks = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")  # never finished
            socks.append(sock)
        bound, deadline = threads_before + MAX_CONNECTIONS + 1, time.monotonic() + 3
        while _proc_status(served.pid, "Threads") > bound and time.monotonic() < deadline:  # evicted ones exiting
            time.sleep(0.05)
        assert _proc_status(served.pid, "Threads") <= bound
        start = time.monotonic()
        assert still_serving(served) and time.monotonic() - start < 3
        time.sleep(REQUEST_TIMEOUT_S + 0.5)
        for sock in socks:  # each was closed by the server: EOF or a reset, never a wait
            sock.settimeout(1.0)
            try:
                assert sock.recv(4096) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in socks:
            sock.close()
    assert still_serving(served)


def test_idle_keep_alive_connection_is_closed_after_the_deadline(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=REQUEST_TIMEOUT_S + 3) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_reply(sock) == (200, {"status": "ok"})
        start = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the server, not by our timeout
        assert time.monotonic() - start < REQUEST_TIMEOUT_S + 1


def test_connections_over_the_cap_get_503_when_all_are_busy():
    """Two connections busy with requests (a handler blocked on an event) fill a cap of 2: the third
    connection is answered 503 at once and closed; once they finish, new connections are served."""
    release = threading.Event()
    entered = threading.Semaphore(0)

    class Blocking(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.server.mark_busy(self.connection)
            entered.release()
            release.wait(10)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def handle_one_request(self):
            self.server.mark_waiting(self.connection)
            super().handle_one_request()

        def log_message(self, *args):
            pass

    server = GuardedHTTPServer(("127.0.0.1", 0), Blocking, max_connections=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    busy = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        for sock in busy:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # both handlers marked busy (not merely accepted: a waiting one would be evicted instead)
        assert all(entered.acquire(timeout=10) for _ in busy)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            status, reply = _read_reply(extra)
        assert status == 503 and "limit of 2 connections" in reply["error"]["message"] and server.refused == 1
        release.set()
        assert [_read_reply(sock)[0] for sock in busy] == [200, 200]
    finally:
        release.set()
        for sock in busy:
            sock.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
