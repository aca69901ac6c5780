"""A local fake Alpaca (trading + market data) server for tests: real HTTP on 127.0.0.1.

The real alpaca-py ``TradingClient`` and ``StockHistoricalDataClient`` talk to it through
``url_override``; the venue behaviour is ``fake_alpaca_venue.FakeAlpacaVenue``. This module
adds the transport: a threaded ``http.server`` on an ephemeral port, an auth-header check,
a log of every request (``FakeAlpaca.requests``) so tests can assert exactly what was sent,
and fault injection (429/5xx, HTML bodies, lost responses, hangs, seeded random failures).

Usage::

    with FakeAlpaca(bars=closes_frame, cash=10_000) as fake:
        broker = AlpacaBroker(..., base_url=fake.url, data_url=fake.url)
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from fake_alpaca_shapes import FakeOrder  # noqa: F401 - re-exported for tests
from fake_alpaca_venue import BUYING_POWER_CODE, DUPLICATE_CID_CODE, FakeAlpacaVenue  # noqa: F401

HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the server received. ``status`` is what it answered (0 = hung/aborted)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    at_secs: float
    status: int


@dataclass(slots=True)
class Fault:
    """An injected failure: ``status`` with ``body`` (or a hang of ``hang_secs``).

    ``after`` = the request is processed first, then the failure is returned (a lost
    response: the order exists but the client never hears so).
    """

    status: int = 500
    body: str = '{"code":50010000,"message":"internal server error"}'
    hang_secs: float = 0.0
    after: bool = False
    path_prefix: str = ""
    method: str = ""
    lose_response: bool = False  # processed, then the connection drops without an answer


class FakeAlpaca(FakeAlpacaVenue):
    """The venue served over HTTP, with a request log and injectable faults."""

    def __init__(
        self, *, api_key: str | None = None, secret_key: str | None = None, **venue: Any
    ) -> None:
        """``api_key``/``secret_key``: if given, requests must carry exactly these; else
        any non-empty key headers pass. ``venue``: see ``FakeAlpacaVenue``."""
        super().__init__(**venue)
        self.api_key = api_key
        self.secret_key = secret_key
        self.requests: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._random_fraction = 0.0
        self._random_statuses: tuple[int, ...] = (500,)
        self._rng = random.Random(0)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started_secs = time.monotonic()

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "FakeAlpaca not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # a hung handler must not block stop()
        server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- fault injection
    def fail_next(
        self,
        count: int,
        status: int = 500,
        *,
        html: bool = False,
        after: bool = False,
        path_prefix: str = "",
        method: str = "",
    ) -> None:
        """The next ``count`` requests matching ``method`` (any if "") and ``path_prefix``
        answer ``status`` (an HTML page if ``html``, else Alpaca's JSON error shape)."""
        body = HTML_502 if html else json.dumps({"code": status * 100_000, "message": "injected"})
        fault = Fault(status, body, 0.0, after, path_prefix, method)
        with self._lock:
            self._faults.extend(replace(fault) for _ in range(count))

    def answer_next(self, path_prefix: str, payload: Any, *, status: int = 200,
                    method: str = "GET", count: int = 1) -> None:
        """The next ``count`` matching requests answer ``payload`` (JSON, or raw text when a
        str) with ``status``: a venue answer of the wrong type or shape."""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        fault = Fault(status, body, 0.0, False, path_prefix, method)
        with self._lock:
            self._faults.extend(replace(fault) for _ in range(count))

    def hang_next(
        self, count: int, hang_secs: float, *, path_prefix: str = "", method: str = ""
    ) -> None:
        """The next ``count`` matching requests stall ``hang_secs`` before answering."""
        fault = Fault(200, "", hang_secs, False, path_prefix, method)
        with self._lock:
            self._faults.extend(replace(fault) for _ in range(count))

    def lose_response_next(
        self, count: int = 1, *, path_prefix: str = "/v2/orders", method: str = "POST"
    ) -> None:
        """The next ``count`` matching requests are processed (an order is created), then the
        connection is closed with no answer: the client sees a dropped connection and must
        find out on its own whether the venue acted. Logged with status 0."""
        fault = Fault(0, "", 0.0, True, path_prefix, method, lose_response=True)
        with self._lock:
            self._faults.extend(replace(fault) for _ in range(count))

    def fail_randomly(
        self, fraction: float, *, seed: int = 0, statuses: Iterable[int] = (500, 429, 502)
    ) -> None:
        """Fail ``fraction`` of all requests (seeded), half of them after processing."""
        with self._lock:
            self._random_fraction = fraction
            self._random_statuses = tuple(statuses)
            self._rng = random.Random(seed)

    def clear_faults(self) -> None:
        """Drop pending injected faults and stop random failures."""
        with self._lock:
            self._faults.clear()
            self._random_fraction = 0.0

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if path.startswith(fault.path_prefix) and fault.method in ("", method):
                    return self._faults.pop(i)
            if self._random_fraction and self._rng.random() < self._random_fraction:
                status = self._rng.choice(self._random_statuses)
                body = HTML_502 if status == 502 else '{"code":50010000,"message":"flaky"}'
                return Fault(status, body, 0.0, self._rng.random() < 0.5, "")
        return None

    # ---------------------------------------------------------------- log queries
    def logged(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Requests received, filtered by method and path prefix."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (path is None or r.path.startswith(path))
            ]

    def order_posts(self) -> list[RequestRecord]:
        return self.logged("POST", "/v2/orders")

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeAlpaca
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: avoid a 40 ms stall

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's stderr access log."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        fake = self.server_fake
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        at_secs = time.monotonic() - fake._started_secs
        status, payload_text = self._answer(fake, method, parts.path, query, body, at_secs)
        if status == -1:  # processed; the answer is lost on the way back
            fake._record(RequestRecord(method, parts.path, query, body, at_secs, 0))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if status:
            fake._record(RequestRecord(method, parts.path, query, body, at_secs, status))
        else:
            status, payload_text = fake.handle_json(method, parts.path, query, body)
        data = payload_text.encode()
        self.send_response(status)
        is_html = payload_text.startswith("<html")
        self.send_header("Content-Type", "text/html" if is_html else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)

    def _answer(
        self,
        fake: FakeAlpaca,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        at_secs: float,
    ) -> tuple[int, str]:
        """(status, body text) to send; status 0 = the request hung (already logged with
        status 0 on arrival, so tests see it even while it stalls) and is answered now;
        -1 = processed, then no answer at all (a lost response)."""
        key = self.headers.get("APCA-API-KEY-ID")
        secret = self.headers.get("APCA-API-SECRET-KEY")
        if (
            not key
            or not secret
            or (fake.api_key and key != fake.api_key)
            or (fake.secret_key and secret != fake.secret_key)
        ):
            return 401, json.dumps({"code": 40110000, "message": "request is not authorized"})
        fault = fake._take_fault(method, path)
        if fault is not None and fault.hang_secs:
            fake._record(RequestRecord(method, path, query, body, at_secs, 0))
            time.sleep(fault.hang_secs)
            return 0, ""
        if fault is not None and not fault.after:
            return fault.status, fault.body
        status, text = fake.handle_json(method, path, query, body)
        if fault is not None and fault.lose_response:
            return -1, ""
        if fault is not None:
            return fault.status, fault.body
        return status, text
