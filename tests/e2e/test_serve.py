"""`nemo-vtp serve` end to end: real HTTP on 127.0.0.1 over a tiny model folder written by the test."""

import base64
import contextlib
import dataclasses
import io
import json
import threading
import urllib.error
import urllib.request

import pytest

from nemo_vtp.config.data import DataConfig
from nemo_vtp.config.serve import API_KEY_ENV, ServeConfig
from nemo_vtp.data.tokenizer import load_tokenizer
from nemo_vtp.generation.openai_client import ChatEndpoint, ChatEndpointError
from nemo_vtp.generation.server import load_context, make_server
from tests.e2e.stages import env, start_serve_process
from tests.tiny_qwen25vl import make_image, write_tiny_folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # The project's own tiny tokenizer (byte-level BPE, the Qwen chat template) behind a random model.
    return write_tiny_folder(tmp_path_factory.mktemp("tiny") / "tiny-qwen25vl", tokenizer=load_tokenizer())


@pytest.fixture(scope="module")
def media_root(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def ctx(model_dir, media_root):
    cfg = ServeConfig(allowed_local_media_path=str(media_root))
    return load_context(str(model_dir), dtype="float32", device="cpu", max_batch=16, default_max_tokens=8, cfg=cfg)


@contextlib.contextmanager
def serving(ctx):
    """A real server on 127.0.0.1 (a free port) in a thread; yields its root URL."""
    server = make_server(ctx, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(ctx):
    with serving(ctx) as url:
        yield url


def _call(url: str, body=None, raw: bytes | None = None, key: str | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _image_message(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": "what is in the image"}]}]


def test_health_and_models(base_url):
    assert _call(base_url + "/health") == (200, {"status": "ok"})
    status, models = _call(base_url + "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny-qwen25vl"]


def test_chat_with_image_n_and_logprobs(base_url):
    body = {"model": "tiny-qwen25vl", "messages": _image_message(_data_url(make_image(0))), "n": 3,
            "temperature": 1.0, "max_tokens": 6, "logprobs": True, "top_logprobs": 2, "seed": 11}
    status, reply = _call(base_url + "/v1/chat/completions", body)
    assert status == 200, reply
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    total = 0
    for choice in reply["choices"]:
        steps = choice["logprobs"]["content"]
        assert 1 <= len(steps) <= 6 and choice["finish_reason"] in ("stop", "length")
        assert all(s["logprob"] <= 0 and len(s["top_logprobs"]) == 2 for s in steps)
        assert all(s["top_logprobs"][0]["logprob"] >= s["logprob"] - 1e-6 for s in steps)
        total += len(steps)
    # The prompt holds the expanded image: 84x56 pixels -> a 4x6 patch grid -> 6 merged <|image_pad|> tokens.
    assert reply["usage"]["completion_tokens"] == total and reply["usage"]["prompt_tokens"] > 6
    again = _call(base_url + "/v1/chat/completions", body)[1]
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in reply["choices"]]  # seeded


def test_local_file_image_and_text_only(base_url, media_root):
    path = media_root / "img.png"
    make_image(3).save(path)
    greedy = {"messages": _image_message(str(path)), "temperature": 0, "max_tokens": 5}
    status, by_path = _call(base_url + "/v1/chat/completions", greedy)
    assert status == 200 and by_path["choices"][0]["logprobs"] is None
    by_url = _call(base_url + "/v1/chat/completions", {**greedy, "messages": _image_message(f"file://{path}")})[1]
    assert by_url["choices"][0]["message"] == by_path["choices"][0]["message"]
    status, text = _call(base_url + "/v1/chat/completions",
                         {"messages": [{"role": "user", "content": "describe this"}], "max_tokens": 3, "stop": "zz"})
    assert status == 200 and text["usage"]["completion_tokens"] <= 3


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({}, 400, "messages"),
        ({"messages": []}, 400, "non-empty"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, 400, "`n`"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400, "`temperature`"),
        ({"messages": [{"role": "user", "content": "hi"}], "top_p": 1.5}, 400, "`top_p`"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "`max_tokens`"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": True}, 400, "stream"),
        ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, 400, "logprobs"),
        ({"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 0.5}, 400, "frequency_penalty"),
        ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-x"}, 404, "not found"),
        ({"messages": _image_message("https://example.com/a.png")}, 400, "remote"),
        ({"messages": _image_message("data:image/png;base64,@@@")}, 400, "image"),
        ({"messages": _image_message("/no/such/file.png")}, 400, "allowed-local-media-path"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, 400, "supported parts"),
    ],
)
def test_bad_requests_get_4xx_with_reason(base_url, body, status, needle):
    got, reply = _call(base_url + "/v1/chat/completions", body)
    assert got == status, reply
    assert needle in reply["error"]["message"]


def test_bad_json_and_unknown_route(base_url):
    got, reply = _call(base_url + "/v1/chat/completions", raw=b"{not json")
    assert got == 400 and "JSON" in reply["error"]["message"]
    assert _call(base_url + "/v1/completions", {"prompt": "x"})[0] == 404
    assert _call(base_url + "/nope")[0] == 404


def test_api_key_guards_every_route_but_health(ctx, monkeypatch):
    """With a key, the judge's client (`ChatEndpoint`, key from its env var) is answered; without one
    or with a wrong one it gets 401; /health needs none. Without a key configured, nothing is asked."""
    body = {"messages": [{"role": "user", "content": "describe this"}], "max_tokens": 2}
    with serving(dataclasses.replace(ctx, cfg=ctx.cfg.model_copy(update={"api_key": "k-123"}))) as url:
        assert _call(url + "/health") == (200, {"status": "ok"})
        assert _call(url + "/v1/models")[0] == 401 and _call(url + "/v1/models", key="k-12")[0] == 401
        assert _call(url + "/v1/models", key="k-123")[0] == 200
        monkeypatch.setenv("JUDGE_KEY", "k-123")
        assert ChatEndpoint(url, timeout_s=60, api_key_env="JUDGE_KEY").post(body)["usage"]["completion_tokens"] >= 1
        with pytest.raises(ChatEndpointError) as refused:
            ChatEndpoint(url, timeout_s=60).post(body)
        assert refused.value.status == 401 and "API key" in refused.value.message
    with serving(ctx) as url:  # no key configured: a client sending one is served as well
        assert ChatEndpoint(url, timeout_s=60, api_key_env="JUDGE_KEY").post(body)["choices"]


def test_completion_is_cut_to_what_the_context_leaves(ctx):
    """Without max_tokens the server default (8) is cut to the room the context leaves (3 here)."""
    body = {"messages": [{"role": "user", "content": "describe this"}], "temperature": 0, "max_tokens": 1}
    with serving(ctx) as url:
        prompt = _call(url + "/v1/chat/completions", body)[1]["usage"]["prompt_tokens"]
    short = dataclasses.replace(ctx, max_model_len=prompt + 3)
    with serving(short) as url:
        status, reply = _call(url + "/v1/chat/completions", {**body, "max_tokens": None, "stop": "never"})
        assert status == 200 and reply["usage"]["completion_tokens"] <= 3
        assert _call(url + "/v1/chat/completions", {**body, "max_tokens": 4})[0] == 400


def test_pixel_limit_is_the_data_loaders(ctx):
    assert ServeConfig().max_image_pixels == DataConfig().max_image_pixels == ctx.cfg.max_image_pixels


def test_cli_serves_until_stopped(model_dir):
    """`nemo-vtp serve` as a user starts it, the key in NEMO_VTP_API_KEY: prints its address, answers
    (the key asked on /v1, not on /health), stops on interrupt."""
    proc = start_serve_process(model_dir, environ={**env(), API_KEY_ENV: "cli-key"})
    try:
        line = proc.stdout.readline()
        assert "serving tiny-qwen25vl on http://127.0.0.1:" in line and "API key required" in line, line
        url = line.split(" on ")[1].split("/v1")[0]
        assert _call(url + "/health") == (200, {"status": "ok"})
        assert _call(url + "/v1/models")[0] == 401 and _call(url + "/v1/models", key="cli-key")[0] == 200
    finally:
        proc.send_signal(2)  # SIGINT: the server closes its socket and exits 0
        assert proc.wait(timeout=30) == 0
