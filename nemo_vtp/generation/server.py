"""`nemo-vtp serve`: an OpenAI-compatible chat-completions endpoint over the TorchEngine.

    nemo-vtp serve --model HF_DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY]

Routes: `POST /v1/chat/completions` (text and image content parts; an image is an `image_url` with a
base64 data URL, or a local path / `file://` URL under `--allowed-local-media-path`; `n`, `temperature`,
`top_p`, `max_tokens`, `stop`, `seed`, `logprobs`, `top_logprobs`), `GET /v1/models`, `GET /health`.
Bad requests get a 4xx JSON error naming the field. Every route but /health needs the API key
(`--api-key` or NEMO_VTP_API_KEY) when one is set. Requests are served by threads, at most
`--max-connections`; generation is serialised by one lock and image decodes are bounded. The
limits are listed in `nemo_vtp.config.serve.ServeConfig`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from nemo_vtp.config.serve import API_KEY_ENV, ServeConfig
from nemo_vtp.generation.chat_request import (
    ChatContext,
    build_prompt,
    completion_budget,
    context_length_error,
    parse_sampling,
    requested_max_tokens,
)
from nemo_vtp.generation.engine import Rollout
from nemo_vtp.generation.http_guard import (
    DeadlineReader,
    GuardedHTTPServer,
    RequestError,
    bearer_ok,
    content_length,
    error_body,
)

__all__ = ["RequestError", "ChatContext", "chat_completion", "load_context", "make_server", "main"]


# ---------------------------------------------------------------------- Rollout -> response
def _token_entry(tokenizer, token_id: int, logprob: float) -> dict:
    token = tokenizer.decode([token_id])
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def _choice(index: int, rollout: Rollout, tokenizer, with_logprobs: bool) -> dict:
    logprobs = None
    if with_logprobs:
        content = []
        for step, (token_id, lp) in enumerate(zip(rollout.token_ids, rollout.logprobs)):
            entry = _token_entry(tokenizer, token_id, lp)
            top = rollout.top_logprobs[step] if rollout.top_logprobs else {}
            entry["top_logprobs"] = [_token_entry(tokenizer, t, v) for t, v in top.items()]
            content.append(entry)
        logprobs = {"content": content}
    return {"index": index, "message": {"role": "assistant", "content": rollout.text},
            "finish_reason": rollout.finish_reason, "logprobs": logprobs}


def chat_completion(ctx: ChatContext, body: Any) -> dict:
    """Answer one chat-completions request body (a parsed JSON object)."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    if "messages" not in body:
        raise RequestError(400, "missing required field `messages`", "messages")
    if body.get("model") not in (None, ctx.model_name):
        raise RequestError(404, f"model {body['model']!r} not found; this server serves {ctx.model_name!r}", "model")
    sampling, with_logprobs = parse_sampling(body, ctx.cfg.max_tokens)
    if sampling.n > ctx.cfg.max_batch:
        raise RequestError(400, f"`n` is {sampling.n}; this server samples at most {ctx.cfg.max_batch}", "n")
    requested = None if requested_max_tokens(body) is None else sampling.max_new_tokens
    if requested is not None and requested >= ctx.max_model_len:  # refused before any image is decoded
        raise context_length_error(ctx.max_model_len, None, requested)
    prompt = build_prompt(ctx, body["messages"])
    budget = completion_budget(ctx.max_model_len, len(prompt.token_ids), requested, ctx.cfg.max_tokens)
    sampling = sampling.model_copy(update={"max_new_tokens": budget})
    with ctx.lock:
        rollouts = ctx.engine.generate([prompt], sampling)[0]
    completion_tokens = sum(r.length for r in rollouts)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": ctx.model_name,
        "choices": [_choice(i, r, ctx.tokenizer, with_logprobs) for i, r in enumerate(rollouts)],
        "usage": {"prompt_tokens": len(prompt.token_ids), "completion_tokens": completion_tokens,
                  "total_tokens": len(prompt.token_ids) + completion_tokens},
    }


# ---------------------------------------------------------------------- HTTP
def make_handler(ctx: ChatContext) -> type[BaseHTTPRequestHandler]:
    cfg = ctx.cfg

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        default_request_version = "HTTP/1.1"  # a garbled request line still gets a status line, not HTTP/0.9
        server: GuardedHTTPServer

        def setup(self) -> None:
            super().setup()
            self._reader = DeadlineReader(self.connection)
            self.rfile = io.BufferedReader(self._reader)

        def handle_one_request(self) -> None:
            self._reader.deadline = time.monotonic() + cfg.request_timeout_s  # headers and body within it
            self.server.mark_waiting(self.connection)
            try:
                super().handle_one_request()
            except OSError:  # reset by the client, or closed to make room for a new connection
                self.close_connection = True

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.connection.settimeout(cfg.request_timeout_s)  # a client that never reads cannot hold us
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """Malformed request lines and headers: the same JSON error shape as every other refusal."""
            self.close_connection = True
            self._send(code, error_body(RequestError(code, message or HTTPStatus(code).phrase)))

        def do_GET(self) -> None:
            self.server.mark_busy(self.connection)
            self._answer(self._get)

        def do_POST(self) -> None:
            self._answer(self._post)

        def _answer(self, route_fn) -> None:
            route = urlsplit(self.path).path
            try:
                if route != "/health" and cfg.api_key is not None and \
                        not bearer_ok(self.headers.get("Authorization"), cfg.api_key):
                    self.close_connection = True  # a POST body stays unread
                    raise RequestError(401, "missing or wrong API key: send the header `Authorization: Bearer KEY`")
                status, payload = route_fn(route)
            except RequestError as err:
                status, payload = err.status, error_body(err)
            except Exception as err:  # noqa: BLE001 (an engine failure answers 500 and keeps the server up)
                status, payload = 500, error_body(RequestError(500, f"{type(err).__name__}: {err}"))
            self._send(status, payload)

        def _get(self, route: str) -> tuple[int, dict]:
            if route == "/health":
                return 200, {"status": "ok"}
            if route == "/v1/models":
                return 200, {"object": "list", "data": [
                    {"id": ctx.model_name, "object": "model", "created": 0, "owned_by": "nemo_vtp"}]}
            raise RequestError(404, f"no route GET {route}")

        def _post(self, route: str) -> tuple[int, dict]:
            if route != "/v1/chat/completions":
                self.close_connection = True
                raise RequestError(404, f"no route POST {route}")
            body = self._read_json()
            self.server.mark_busy(self.connection)
            return 200, chat_completion(ctx, body)

        def _read_json(self) -> Any:
            self.close_connection = True  # until the whole body is read, the next bytes are not a request
            length = content_length(self.headers, cfg.max_body_bytes)
            try:
                data = self.rfile.read(length)
            except TimeoutError:
                raise RequestError(408, f"the request body did not arrive within {cfg.request_timeout_s} s") from None
            if len(data) < length:
                raise RequestError(400, f"the body ended after {len(data)} of {length} bytes")
            self.close_connection = False
            try:
                return json.loads(data or b"null")
            except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, an int of 10^5 digits, deep nesting
                raise RequestError(400, f"the request body is not valid JSON: {type(err).__name__}: {err}") from None

        def log_message(self, fmt: str, *args) -> None:
            sys.stderr.write(f"serve: {self.address_string()} {fmt % args}\n")

    return Handler


def make_server(ctx: ChatContext, host: str | None = None, port: int | None = None) -> GuardedHTTPServer:
    """A ready (not yet serving) HTTP server; port 0 picks a free port (see `server.server_address`).
    Host and port default to the context's config."""
    address = (ctx.cfg.host if host is None else host, ctx.cfg.port if port is None else port)
    return GuardedHTTPServer(address, make_handler(ctx), ctx.cfg.max_connections)


def load_context(model_dir: str, dtype: str, device: str, max_batch: int, default_max_tokens: int,
                 cfg: ServeConfig | None = None) -> ChatContext:
    """Load the engine and processors of an HF folder; `cfg` gives the limits (defaults when None)."""
    from transformers import AutoImageProcessor

    from nemo_vtp.generation.torch_engine import TorchEngine

    cfg = (cfg or ServeConfig()).model_copy(update={"max_batch": max_batch, "max_tokens": default_max_tokens})
    engine = TorchEngine.from_pretrained(model_dir, dtype=dtype, device=device, max_batch=max_batch)
    has_images = (Path(model_dir) / "preprocessor_config.json").is_file()
    image_processor = AutoImageProcessor.from_pretrained(model_dir) if has_images else None
    model_len = engine.model.config.get_text_config().max_position_embeddings
    longest_token = max(len(token) for token in engine.tokenizer.get_vocab())
    return ChatContext(engine=engine, tokenizer=engine.tokenizer, image_processor=image_processor,
                       model_name=cfg.served_model_name or Path(model_dir).resolve().name,
                       max_model_len=cfg.max_model_len or model_len, max_token_chars=longest_token, cfg=cfg)


def _default(name: str) -> Any:
    return ServeConfig.model_fields[name].default


def parse_args(argv: list[str]) -> tuple[str, ServeConfig]:
    """Command line -> (model folder, ServeConfig); every default comes from ServeConfig."""
    p = argparse.ArgumentParser(prog="nemo-vtp serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="HF Qwen2.5-VL folder (weights, tokenizer, image processor)")
    p.add_argument("--host", default=_default("host"), help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=_default("port"), help="TCP port; 0 picks a free one")
    p.add_argument("--device", default=_default("device"), help="torch device for the engine, e.g. cpu or cuda")
    p.add_argument("--dtype", default=_default("dtype"), choices=["auto", "float32", "bfloat16"])
    p.add_argument("--max-batch", type=int, default=_default("max_batch"), help="sequences per forward; the largest n")
    p.add_argument("--max-tokens", type=int, default=_default("max_tokens"), help="max_tokens when a request sets none")
    p.add_argument("--served-model-name", default=None, help="model id to report (default: folder name)")
    p.add_argument("--api-key", default=None, help=f"bearer token required on every route but /health "
                                                   f"(default: ${API_KEY_ENV}; unset: no authentication)")
    p.add_argument("--max-model-len", type=int, default=None, help="prompt + completion tokens (default: the model's)")
    p.add_argument("--max-body-bytes", type=int, default=_default("max_body_bytes"), help="request body cap")
    p.add_argument("--max-image-pixels", type=int, default=_default("max_image_pixels"), help="raw image area cap")
    p.add_argument("--max-images-per-request", type=int, default=_default("max_images_per_request"))
    p.add_argument("--max-concurrent-decodes", type=int, default=_default("max_concurrent_decodes"))
    p.add_argument("--allowed-local-media-path", default=None, help="folder image paths may name (default: none)")
    p.add_argument("--max-connections", type=int, default=_default("max_connections"), help="open connections cap")
    p.add_argument("--request-timeout-s", type=float, default=_default("request_timeout_s"),
                   help="seconds to receive one request or send one reply")
    args = vars(p.parse_args(argv))
    model = args.pop("model")
    args["api_key"] = args["api_key"] or os.environ.get(API_KEY_ENV) or None
    return model, ServeConfig(**args)


def check_setup(model: str, cfg: ServeConfig) -> str | None:
    """What is wrong with the command line before anything loads, or None."""
    if not (Path(model) / "config.json").is_file():
        return f"--model {model}: no config.json there (expected an HF model folder)"
    root = cfg.allowed_local_media_path
    if root is not None and not Path(root).is_dir():
        return f"--allowed-local-media-path {root}: not a folder"
    return None


def main(argv: list[str]) -> int:
    try:
        model, cfg = parse_args(argv)
    except ValidationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problem = check_setup(model, cfg)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if cfg.api_key is None and cfg.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {cfg.host} without an API key (--api-key or ${API_KEY_ENV})", file=sys.stderr)
    ctx = load_context(model, cfg.dtype, cfg.device, cfg.max_batch, cfg.max_tokens, cfg)
    server = make_server(ctx)
    host, port = server.server_address[:2]
    auth = "API key required" if cfg.api_key else "no API key"
    print(f"serving {ctx.model_name} on http://{host}:{port}/v1 ({auth}; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
