"""The HTTP layer of `nemo-vtp serve` that holds under hostile clients.

- `RequestError` / `error_body`: a refused request as an OpenAI-style JSON error.
- `content_length`: the body length a POST declares, or 400/411/413 (never a negative or unparsed one).
- `bearer_ok`: the API-key check (constant-time compare).
- `DeadlineReader`: socket reads that fail once a per-request deadline passes, so a client that trickles
  one byte a second (slowloris) cannot keep a connection, and its thread, forever.
- `GuardedHTTPServer`: a threading server with a connection cap. At the cap a new connection closes the
  oldest connection still waiting for its request (idle keep-alive or half-open); when every
  connection is busy (a request being answered) the new one gets an immediate 503 and is closed.
"""

from __future__ import annotations

import hmac
import io
import json
import math
import re
import socket
import threading
import time
from http.server import ThreadingHTTPServer

_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII digits only: int() would also take "-1", "+5", "1_0" and "٣"


class RequestError(Exception):
    """A request we refuse: HTTP status, message, and the offending field (OpenAI error shape)."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_body(err: RequestError) -> dict:
    kind = "invalid_request_error" if err.status < 500 else "server_error"
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.status}}


def content_length(headers, max_body_bytes: int) -> int:
    """The declared body length of a request, in bytes; RequestError 400 (malformed or conflicting),
    411 (absent, or a chunked body) or 413 (over `max_body_bytes`).

    >>> from email.message import Message; h = Message(); h["Content-Length"] = "-1"
    >>> content_length(h, 100)
    Traceback (most recent call last):
    nemo_vtp.generation.http_guard.RequestError: Content-Length must be a non-negative integer, got '-1'
    """
    if headers.get("Transfer-Encoding") is not None:
        raise RequestError(411, "chunked request bodies are not accepted: send a Content-Length")
    values = {v.strip() for v in headers.get_all("Content-Length") or []}
    if not values:
        raise RequestError(411, "a POST needs a Content-Length header")
    if len(values) > 1:
        raise RequestError(400, "conflicting Content-Length headers")
    value = values.pop()
    if not _DIGITS.fullmatch(value):
        raise RequestError(400, f"Content-Length must be a non-negative integer, got {value[:40]!r}")
    length = int(value)
    if length > max_body_bytes:
        raise RequestError(413, f"request body of {length} bytes exceeds {max_body_bytes}")
    return length


def bearer_ok(authorization: str | None, api_key: str) -> bool:
    """Whether an `Authorization` header carries `Bearer <api_key>` (compared in constant time).

    >>> bearer_ok("Bearer s3cret", "s3cret"), bearer_ok("bearer s3cret", "s3cret"), bearer_ok(None, "s3cret")
    (True, True, False)
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


class DeadlineReader(io.RawIOBase):
    """Reads from a socket until `deadline` (time.monotonic() seconds), then raises TimeoutError.

    A plain socket timeout restarts on every byte received; this one does not."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self.sock = sock
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def refuse_connection(sock: socket.socket, message: str) -> None:
    """Answer 503 without reading the request and close, never blocking the accepting thread."""
    body = json.dumps(error_body(RequestError(503, message))).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\nRetry-After: 1\r\n\r\n").encode()
    try:
        sock.setblocking(False)
        sock.send(head + body)  # a fresh socket's send buffer holds it: no wait
        sock.recv(65536)  # drop what the client already sent, so that closing does not reset the reply away
    except OSError:
        pass
    finally:
        sock.close()


class GuardedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most `max_connections` open connections (one thread each).

    Handlers call `mark_waiting(sock)` before reading a request and `mark_busy(sock)` once it is read;
    only waiting connections may be closed to make room for a new one."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog: accepting is fast, a burst should not be dropped by the kernel

    def __init__(self, address, handler, max_connections: int):
        super().__init__(address, handler)
        self.max_connections = max_connections
        self._guard = threading.Lock()
        self._waiting: dict[socket.socket, float] = {}  # connection -> when it began waiting for a request
        self._busy: set[socket.socket] = set()
        self.evicted = 0  # connections closed to make room (for logs and tests)
        self.refused = 0  # connections answered 503

    def open_connections(self) -> int:
        with self._guard:
            return len(self._waiting) + len(self._busy)

    def mark_waiting(self, sock: socket.socket) -> None:
        with self._guard:
            self._busy.discard(sock)
            self._waiting[sock] = time.monotonic()

    def mark_busy(self, sock: socket.socket) -> None:
        with self._guard:
            if self._waiting.pop(sock, None) is not None:
                self._busy.add(sock)

    def process_request(self, request, client_address) -> None:
        with self._guard:
            admitted = len(self._waiting) + len(self._busy) < self.max_connections or self._evict_oldest_waiting()
            if admitted:
                self._waiting[request] = time.monotonic()
            else:
                self.refused += 1
        if not admitted:
            refuse_connection(request, f"the server is at its limit of {self.max_connections} connections busy "
                                       "with requests: retry later")
            return
        super().process_request(request, client_address)

    def _evict_oldest_waiting(self) -> bool:
        """Close the connection that has waited longest for its request (caller holds the guard)."""
        if not self._waiting:
            return False
        oldest = min(self._waiting, key=self._waiting.__getitem__)
        del self._waiting[oldest]
        try:
            oldest.shutdown(socket.SHUT_RDWR)  # its thread reads EOF and ends
        except OSError:
            pass
        self.evicted += 1
        return True

    def shutdown_request(self, request) -> None:
        with self._guard:
            self._waiting.pop(request, None)
            self._busy.discard(request)
        super().shutdown_request(request)
