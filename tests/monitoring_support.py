"""Test helpers for monitoring: the daemon as a subprocess, a scrape parser and a local
HTTP receiver standing in for an alert webhook (apprise ``json://`` posts to it)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import REPO, SAMPLE_PRICES


def start_daemon(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})})


def read_events_until(proc: subprocess.Popen, event: str, count: int = 1,
                      timeout_secs: float = 90) -> list[dict[str, Any]]:
    """Parse stdout lines until the ``count``-th ``event`` (bounded by ``timeout_secs``)."""
    seen: list[dict[str, Any]] = []
    found = 0
    deadline = time.monotonic() + timeout_secs
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(json.loads(line))
        found += seen[-1].get("event") == event
        if found >= count:
            return seen
    proc.kill()
    raise AssertionError(f"no {event} x{count}; saw {[e.get('event') for e in seen]}; "
                         f"stderr: {proc.stderr.read() if proc.stderr else ''}")


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out, err


def get(url: str, token: str | None = None) -> tuple[int, str]:
    """GET ``url`` → (status, body); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(metrics_text: str) -> dict[str, float]:
    """``name{labels}`` → value from the Prometheus text format."""
    out = {}
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def late_listing_prices(path: Path) -> Path:
    """SPY and TLT, TLT not listed for the first 400 rows: every covariance strategy fails
    with "fewer than 2 assets with full history" until it is (a real cycle failure)."""
    with SAMPLE_PRICES.open() as f:
        rows = list(csv.reader(f))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["date", "SPY", "TLT"])
        for i, row in enumerate(rows[1:600]):
            writer.writerow([row[0], row[1], row[2] if i >= 400 else ""])
    return path


class AlertReceiver:
    """A local webhook: records every POSTed JSON body (apprise ``json://127.0.0.1:PORT/``)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with lock:
                    received.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_port
        # a short poll: shutdown() waits up to one poll interval (0.5 s by default)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def flaky_receiver(failures: int = 1) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook answering 503 to the first ``failures`` POSTs and 200 after; yields (apprise
    URL, the bodies it accepted)."""
    accepted: list[dict[str, Any]] = []
    posts = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with lock:
                posts[0] += 1
                ok = posts[0] > failures
                if ok:
                    accepted.append(body)
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.server_port}/hook", accepted
    finally:
        server.shutdown()
        server.server_close()
