"""Print what monitoring costs the cycle and the operator.

Run: ``python benchmarks/bench_monitoring.py``. Figures, not asserts:

* the logging tap per event (metrics update + alert rule + a rate-limited alert offer),
  against the same event rendered with no tap (the cost every log line already pays);
* one ``/metrics`` exposition of the registry;
* the status page: ``build_status_report`` + ``render_page`` on a journal of N cycles
  (a sim run made here with ``allocbot run --max-cycles N`` in a temp dir).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import structlog  # noqa: E402

from bot.config import load_config  # noqa: E402
from bot.logs import configure_logging  # noqa: E402
from bot.monitoring.alerts import AlertRules, RateLimiter  # noqa: E402
from bot.monitoring.metrics import CycleMetrics  # noqa: E402
from bot.monitoring.observed import ObservedState  # noqa: E402
from bot.monitoring.page import render_page  # noqa: E402
from bot.monitoring.sender import AlertSender  # noqa: E402
from bot.monitoring.status_report import build_status_report  # noqa: E402
from bot.monitoring.tap import MonitoringTap  # noqa: E402

EVENTS = 20_000
CYCLES = 250


def per_event_us(taps: list) -> float:
    configure_logging("json", "info", io.StringIO(), taps=taps)
    log = structlog.get_logger("bench")
    start = time.perf_counter()
    for i in range(EVENTS):
        if i % 2:
            log.info("cycle_finished", status="finished", equity_after=100_000.0 + i,
                     cash_after=10.0, var=0.012, drawdown=0.01, max_drift=0.02, duration_ms=40.0)
        else:
            log.warning("order_rejected", symbol="SPY", side="buy", reason="buying power")
    return (time.perf_counter() - start) / EVENTS * 1e6


def main() -> None:
    bare = per_event_us([])
    metrics = CycleMetrics(var_limit=0.02)
    sender = AlertSender(["json://127.0.0.1:9/"], RateLimiter(3600), 5.0)  # never started
    tapped = per_event_us([MonitoringTap(ObservedState(), metrics, AlertRules(3), sender)])
    configure_logging("json", "info", io.StringIO(), taps=())
    print(f"log event, no tap:        {bare:8.1f} µs")
    print(f"log event, monitoring tap: {tapped:8.1f} µs  (+{tapped - bare:.1f} µs per event)")

    from prometheus_client import generate_latest

    start = time.perf_counter()
    for _ in range(200):
        body = generate_latest(metrics.registry)
    print(f"/metrics exposition:       {(time.perf_counter() - start) / 200 * 1e3:8.2f} ms "
          f"({len(body)} bytes)")

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        text = (REPO / "config.toml").read_text()
        config.write_text(text.replace('state_dir = "state"', f'state_dir = "{tmp}/state"')
                          .replace("interval_secs = 1", "interval_secs = 0.01")
                          .replace('# prices = "path/to/closes.csv"',
                                   f'prices = "{REPO}/bot/sample_market/sample_prices.csv"'))
        subprocess.run([sys.executable, "-m", "bot", "run", "--config", str(config),
                        "--max-cycles", str(CYCLES)], check=True, capture_output=True, cwd=REPO)
        cfg = load_config(config)
        start = time.perf_counter()
        for _ in range(20):
            html = render_page(build_status_report(cfg))
        print(f"status page ({CYCLES} cycles):  {(time.perf_counter() - start) / 20 * 1e3:8.1f} ms "
              f"({len(html) / 1024:.0f} KiB HTML)")


if __name__ == "__main__":
    main()
