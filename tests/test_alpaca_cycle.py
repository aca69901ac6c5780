"""``allocbot once`` end to end against FakeAlpaca: a subprocess with the real CLI, config
``[broker] kind = "alpaca"`` pointing at the local server, keys in the environment."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from conftest import json_lines, run_cli
from fake_alpaca import FakeAlpaca

API_KEY = "PKCYCLEKEY0123456789"
SECRET_KEY = "CycleSecretKey0123456789abcdefghijklmnop"
KEYS_ENV = {"APCA_API_KEY_ID": API_KEY, "APCA_API_SECRET_KEY": SECRET_KEY}
UNIVERSE = ["SPY", "TLT", "IEF", "GLD", "DBC"]


def recent_bars(days: int = 400, seed: int = 11) -> pd.DataFrame:
    """Random-walk closes on business days ending today (New York), as the cycle asks for
    history up to the clock's date."""
    today = datetime.now(ZoneInfo("America/New_York")).date()
    index = pd.bdate_range(end=pd.Timestamp(today), periods=days, name="date")
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.008, (days, len(UNIVERSE))), axis=0))
    return pd.DataFrame(closes.round(4), index=index, columns=UNIVERSE)


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    bars = recent_bars()
    spy_qty = float(np.floor(80_000 / bars["SPY"].iloc[-1]))  # 80% in SPY: must sell first
    with FakeAlpaca(
        bars=bars,
        cash=20_000.0,
        positions={"SPY": (spy_qty, 90.0)},
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        bars_page_size=500,
        fill_polls=2,
    ) as server:
        server.assets["DBC"] = (True, False)  # whole shares only
        yield server
    assert server.errors == []


def alpaca_config(write_config: Any, fake: FakeAlpaca, **alpaca: Any) -> Path:
    return write_config(
        {
            "broker": {"kind": "alpaca", "order_wait_secs": 3},
            "alpaca": {
                "base_url": fake.url,
                "data_url": fake.url,
                "http_timeout_secs": 2.0,
                "retry_budget_secs": 10.0,
                "poll_interval_secs": 0.02,
                **alpaca,
            },
            "universe": {"symbols": UNIVERSE},
        }
    )


def posted_orders(fake: FakeAlpaca) -> list[dict[str, Any]]:
    return [r.body for r in fake.order_posts()]


def scan_for_keys(*texts: str | bytes) -> list[str]:
    found = []
    for text in texts:
        blob = text if isinstance(text, bytes) else text.encode()
        found += [k for k in (API_KEY, SECRET_KEY) if k.encode() in blob]
    return found


def test_once_alpaca_rebalances_with_sells_before_buys(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    proc = run_cli("once", "--config", str(alpaca_config(write_config, fake)), env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = json_lines(proc.stdout)
    finished = [e for e in events if e["event"] == "cycle_finished"]
    assert finished and finished[0]["status"] == "finished"
    posts = posted_orders(fake)
    sides = [p["side"] for p in posts]
    assert "sell" in sides and "buy" in sides
    assert sides == sorted(sides, key=lambda s: s != "sell")  # every sell before any buy
    cids = [p["client_order_id"] for p in posts]
    assert len(cids) == len(set(cids))
    dbc = [p for p in posts if p["symbol"] == "DBC"]
    assert dbc and float(dbc[0]["qty"]).is_integer()
    assert all(o.status == "filled" for o in fake.orders_created())
    weights = {s: float(q) * fake.last_close(s) for s, (q, _) in fake.positions.items()}
    total = sum(weights.values()) + float(fake.cash)
    assert weights["TLT"] / total == pytest.approx(0.40, abs=0.02)
    assert weights["SPY"] / total == pytest.approx(0.30, abs=0.02)


def test_once_alpaca_market_closed_skips_without_orders(
    fake: FakeAlpaca, write_config: Any
) -> None:
    fake.is_open = False
    proc = run_cli("once", "--config", str(alpaca_config(write_config, fake)), env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(e["event"] == "market_closed" for e in json_lines(proc.stdout))
    assert fake.order_posts() == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_once_alpaca_flaky_server_rebalances_or_fails_cleanly_never_duplicates(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path, seed: int
) -> None:
    fake.fail_randomly(0.25, seed=seed)
    config = alpaca_config(write_config, fake, retry_budget_secs=1.0, http_timeout_secs=1.0)
    proc = run_cli("once", "--config", str(config), env=KEYS_ENV, timeout=60)
    events = [e["event"] for e in json_lines(proc.stdout)]
    if proc.returncode == 0:
        assert "cycle_finished" in events
    else:
        assert proc.returncode == 1 and ({"cycle_failed", "startup_failed"} & set(events))
    created = fake.orders_created()
    assert len({o.client_order_id for o in created}) == len(created)
    per_symbol_side = [(o.symbol, o.side) for o in created]
    assert len(per_symbol_side) == len(set(per_symbol_side))  # never a second order
    assert "Traceback" not in proc.stderr


def test_once_alpaca_second_run_sends_no_duplicate_order(
    fake: FakeAlpaca, write_config: Any
) -> None:
    config = str(alpaca_config(write_config, fake))
    assert run_cli("once", "--config", config, env=KEYS_ENV).returncode == 0
    first = len(fake.orders_created())
    proc = run_cli("once", "--config", config, env=KEYS_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cids = [p["client_order_id"] for p in posted_orders(fake)]
    assert len(cids) == len(set(cids))
    assert len(fake.orders_created()) == first  # rebalanced already: nothing more to do


def test_once_alpaca_keys_absent_from_output_and_state(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    fake.fail_next(3, 502, html=True)
    fake.fail_next(
        1, 403, path_prefix="/v2/orders", method="POST"
    )  # a rejection travels into the journal
    proc = run_cli("once", "--config", str(alpaca_config(write_config, fake)), env=KEYS_ENV)
    state_files = [p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert state_files
    assert scan_for_keys(proc.stdout, proc.stderr, *state_files) == []
