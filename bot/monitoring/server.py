"""The monitoring HTTP server: stdlib wsgiref on a threading server, one WSGI app routing
``/metrics`` to prometheus_client's app, ``/health``, ``/status.json`` and the page ``/``.

Bound to 127.0.0.1 unless configured otherwise; with ``ALLOCBOT_STATUS_TOKEN`` set every
route wants ``Authorization: Bearer <token>`` (compared in constant time), else 401.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

STATUS_TOKEN_ENV = "ALLOCBOT_STATUS_TOKEN"
Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a stuck client never holds the daemon's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """wsgiref writes every request to stderr; the daemon's stdout is JSON lines only."""


@dataclass(frozen=True, slots=True)
class Routes:
    metrics: Wsgi | None  # prometheus_client.make_wsgi_app(registry)
    health: Callable[[], tuple[bool, str]] | None  # (ok, reason)
    page: Callable[[], str] | None
    status_json: Callable[[], str] | None


def _respond(start_response: Callable[..., Any], status: str, body: bytes,
             content_type: str, extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
               *(extra or [])]
    start_response(status, headers)
    return [body]


def _authorized(environ: dict[str, Any], token: str | None) -> bool:
    if not token:
        return True
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def build_app(routes: Routes, token: str | None) -> Wsgi:
    """The WSGI app; read-only (GET/HEAD only)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not _authorized(environ, token):
            return _respond(start_response, "401 Unauthorized", b"bearer token required\n",
                            "text/plain; charset=utf-8",
                            [("WWW-Authenticate", 'Bearer realm="allocbot"')])
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", b"read-only\n",
                            "text/plain; charset=utf-8", [("Allow", "GET, HEAD")])
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics" and routes.metrics is not None:
            return routes.metrics(environ, start_response)
        if path == "/health" and routes.health is not None:
            ok, reason = routes.health()
            body = json.dumps({"ok": ok, "reason": reason}).encode()
            return _respond(start_response, "200 OK" if ok else "503 Service Unavailable", body,
                            "application/json")
        if path == "/status.json" and routes.status_json is not None:
            return _respond(start_response, "200 OK", routes.status_json().encode(),
                            "application/json")
        if path == "/" and routes.page is not None:
            return _respond(start_response, "200 OK", routes.page().encode(),
                            "text/html; charset=utf-8")
        return _respond(start_response, "404 Not Found", b"not found\n",
                        "text/plain; charset=utf-8")

    return app


# ``close`` waits up to one poll of the serving loop (socketserver's default is 0.5 s): a
# stopping daemon exits within 0.1 s of it; ten idle wake-ups a second cost nothing visible.
SHUTDOWN_POLL_SECS = 0.1


class MonitoringServer:
    """One listening socket serving ``app`` on a daemon thread; port 0 picks a free one."""

    def __init__(self, host: str, port: int, app: Wsgi) -> None:
        self._server = make_server(host, port, app, server_class=_ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self.host = host
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": SHUTDOWN_POLL_SECS},
                                        name=f"allocbot-http-{self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
