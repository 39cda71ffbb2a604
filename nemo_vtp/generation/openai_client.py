"""A small blocking client for an OpenAI-compatible `POST /v1/chat/completions` (vLLM, `nemo-vtp serve`).

Shared by the reward judge (`nemo_vtp.rewards.judge`) and the data-engine teachers
(`nemo_vtp.data.teachers`). Standard library only (urllib), so neither needs an HTTP dependency.
Every failure becomes one `ChatEndpointError` whose `kind` says what happened:
"http" (a 4xx/5xx status), "timeout", "connection" (refused, reset, DNS) or "bad_reply" (not JSON,
or no `choices`). `with_retries` is the one retry loop (exponential backoff) both callers use.

A socket timeout bounds each read, not a reply: a server that trickles one byte a second never trips
it. `post(body, deadline=...)` also bounds the whole exchange (connect, headers, body): a timer shuts
the socket down at the deadline, and the blocked read returns at once.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
T = TypeVar("T")


class ChatEndpointError(RuntimeError):
    """A request that produced no usable reply; `kind` in {http, timeout, connection, bad_reply}."""

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.status = kind, message, status


def chat_url(base_url: str) -> str:
    """The chat-completions URL of a server root; a trailing `/v1` is accepted.

    >>> chat_url("http://127.0.0.1:8000/"), chat_url("http://h:1/v1")
    ('http://127.0.0.1:8000/v1/chat/completions', 'http://h:1/v1/chat/completions')
    """
    root = base_url.rstrip("/").removesuffix("/v1")
    return root + "/v1/chat/completions"


class _DeadlineConnection:
    """Mixed into http.client's connection classes: at `deadline` (time.monotonic()) the socket is shut
    down, so any read still blocked on a slow server returns; `expired` then tells why."""

    def __init__(self, *args, deadline: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline, self.expired, self._timer = deadline, False, None

    def connect(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.expired = True
            raise TimeoutError("the deadline passed before connecting")
        self.timeout = min(self.timeout, remaining) if isinstance(self.timeout, (int, float)) else remaining
        super().connect()
        sock = self.sock  # urllib drops `self.sock` once the headers are in; the reply still reads from it
        self._timer = threading.Timer(remaining, self._expire, args=(sock,))
        self._timer.daemon = True
        self._timer.start()

    def _expire(self, sock: socket.socket) -> None:
        self.expired = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed: the reply was complete
            pass

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _DeadlineHTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


def _opener_with_deadline(proxies: dict | None, deadline: float, connections: list) -> urllib.request.OpenerDirector:
    """An opener whose HTTP(S) connections shut down at `deadline`; each one is appended to `connections`."""

    def factory(cls):
        def make(host, **kwargs):
            connections.append(cls(host, deadline=deadline, **kwargs))
            return connections[-1]
        return make

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(factory(_DeadlineHTTPConnection), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            extra = {"check_hostname": self._check_hostname} if hasattr(self, "_check_hostname") else {}  # <3.12
            return self.do_open(factory(_DeadlineHTTPSConnection), req, context=self._context, **extra)

    return urllib.request.build_opener(urllib.request.ProxyHandler(proxies), HTTP(), HTTPS())


class ChatEndpoint:
    """One server: `post(body) -> reply dict`. Loopback servers bypass any http_proxy of the environment."""

    def __init__(self, base_url: str, *, timeout_s: float, api_key_env: str | None = None):
        self.url = chat_url(base_url)
        self.timeout_s = timeout_s
        self.api_key_env = api_key_env
        self._proxies = {} if urlparse(self.url).hostname in _LOOPBACK else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(self._proxies))

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.api_key_env, '')}"
        return headers

    def post(self, body: dict, deadline: float | None = None) -> dict:
        """Send one request; the decoded reply (a dict with `choices`) or ChatEndpointError. `deadline`
        (time.monotonic()) bounds the whole exchange; without it each socket read has `timeout_s`."""
        if deadline is None:
            return self._exchange(self._opener, body)
        connections: list[_DeadlineConnection] = []
        try:
            return self._exchange(_opener_with_deadline(self._proxies, deadline, connections), body)
        except ChatEndpointError as err:
            if any(c.expired for c in connections):
                raise ChatEndpointError("timeout", f"no complete reply from {self.url} by the deadline "
                                        f"({err.kind}: {err.message})") from None
            raise
        finally:
            for connection in connections:
                connection.cancel()

    def _exchange(self, opener: urllib.request.OpenerDirector, body: dict) -> dict:
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=self._headers(), method="POST")
        try:
            with opener.open(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace") if err.fp else ""
            raise ChatEndpointError("http", f"HTTP {err.code} from {self.url}: {detail}", err.code) from None
        except (TimeoutError, socket.timeout) as err:
            raise ChatEndpointError("timeout", f"no reply from {self.url} within {self.timeout_s} s ({err})") from None
        except urllib.error.URLError as err:
            kind = "timeout" if isinstance(err.reason, (TimeoutError, socket.timeout)) else "connection"
            raise ChatEndpointError(kind, f"{self.url}: {err.reason}") from None
        except (ConnectionError, OSError, http.client.HTTPException) as err:  # reset or cut mid-reply (server killed)
            raise ChatEndpointError("connection", f"{self.url}: {type(err).__name__}: {err}") from None
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ChatEndpointError("bad_reply", f"reply is not JSON ({err}): {raw[:200]!r}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list) or not payload["choices"]:
            raise ChatEndpointError("bad_reply", f"reply has no choices: {str(payload)[:200]}")
        return payload


def with_retries(fn: Callable[[int], T], *, max_retries: int, backoff_s: float, retry_on: tuple[type, ...],
                 what: str = "request", deadline: float | None = None) -> T:
    """Call `fn(attempt)` for attempt 0, 1, ... until it returns; on an exception of `retry_on` wait
    backoff_s * 2**attempt seconds and try again, at most `max_retries` more times, then re-raise.
    With a `deadline` (time.monotonic()), no retry starts whose backoff would end past it."""
    for attempt in range(max_retries + 1):
        try:
            return fn(attempt)
        except retry_on as err:
            log.warning("%s attempt %d/%d failed: %s", what, attempt + 1, max_retries + 1, err)
            delay = backoff_s * 2**attempt
            if attempt == max_retries or (deadline is not None and time.monotonic() + delay >= deadline):
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")
