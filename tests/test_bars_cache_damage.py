"""A damaged Alpaca bars-cache file (state/cache/alpaca-iex/<SYMBOL>.csv: empty after a power
loss, binary or text junk, a row that is not a date and a close) costs one refetch, not every
cycle: ``allocbot once`` against FakeAlpaca (in-process, loopback) logs ``bars_cache_discarded``
naming the file and why, fetches the symbol's bars again, trades, and leaves a readable cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from conftest import json_lines, run_cli_in_process
from fake_alpaca import FakeAlpaca

API_KEY = "PKCACHEKEY0123456789"
SECRET_KEY = "CacheSecretKey0123456789abcdefghijklmnop"
KEYS_ENV = {"APCA_API_KEY_ID": API_KEY, "APCA_API_SECRET_KEY": SECRET_KEY}
UNIVERSE = ["SPY", "TLT", "IEF", "GLD", "DBC"]

DAMAGE = {
    "empty": b"",  # a rename that reached the disk before the data did
    "binary": bytes([0x91, 0xCE, 0x00, 0xFF, 0x13, 0x88, 0xE9, 0x7F]) * 25,
    "text_junk": b"hello world\n",
    "bad_rows": b"date,close\n2025-01-0\n2025-01-03,abc\n",
}


@pytest.fixture
def fake() -> Iterator[FakeAlpaca]:
    today = datetime.now(ZoneInfo("America/New_York")).date()
    index = pd.bdate_range(end=pd.Timestamp(today), periods=400, name="date")
    rng = np.random.default_rng(5)
    closes = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.008, (400, len(UNIVERSE))), axis=0))
    bars = pd.DataFrame(closes.round(4), index=index, columns=UNIVERSE)
    with FakeAlpaca(bars=bars, cash=100_000.0, api_key=API_KEY, secret_key=SECRET_KEY,
                    bars_page_size=500, fill_polls=1) as server:
        yield server
    assert server.errors == []


def once(write_config: Any, fake: FakeAlpaca) -> tuple[int, list[dict[str, Any]], str]:
    path = write_config({
        "broker": {"kind": "alpaca", "order_wait_secs": 3},
        "alpaca": {"base_url": fake.url, "data_url": fake.url, "http_timeout_secs": 2.0,
                   "retry_budget_secs": 5.0, "retry_backoff_secs": 0.02,
                   "retry_backoff_max_secs": 0.2, "poll_interval_secs": 0.02},
        "universe": {"symbols": UNIVERSE},
    })
    proc = run_cli_in_process("once", "--config", str(path), env=KEYS_ENV)
    return proc.returncode, json_lines(proc.stdout), proc.stderr


def gld_bar_requests(fake: FakeAlpaca) -> list[dict[str, str]]:
    return [r.query for r in fake.logged("GET", "/v2/stocks/bars")
            if "GLD" in r.query.get("symbols", "").split(",")]


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_damaged_symbol_file_is_discarded_refetched_and_the_cycle_trades(
    damage: str, fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    code, _, err = once(write_config, fake)
    assert code == 0, err[-2000:]
    cache = tmp_path / "state" / "cache" / "alpaca-iex"
    good_closes = pd.read_csv(cache / "GLD.csv")
    good_span = json.loads((cache / "coverage.json").read_text())["GLD"]
    first_start = gld_bar_requests(fake)[0]["start"]

    (cache / "GLD.csv").write_bytes(DAMAGE[damage])
    fake.requests.clear()
    code, events, err = once(write_config, fake)

    assert code == 0, (damage, [e for e in events if e["event"] == "cycle_failed"], err[-2000:])
    assert [e["status"] for e in events if e["event"] == "cycle_finished"] == ["finished"]
    discarded = [e for e in events if e["event"] == "bars_cache_discarded"]
    assert len(discarded) == 1, discarded
    assert discarded[0]["level"] == "warning"
    assert discarded[0]["path"] == str(cache / "GLD.csv") and discarded[0]["reason"]
    # its coverage was forgotten: GLD's whole lookback fetched again, not just a tail
    assert {q["start"] for q in gld_bar_requests(fake)} == {first_start}
    # and the cache holds GLD again, as it was before the damage
    pd.testing.assert_frame_equal(pd.read_csv(cache / "GLD.csv"), good_closes)
    assert json.loads((cache / "coverage.json").read_text())["GLD"] == good_span


def test_unreadable_coverage_file_is_discarded_once_and_rebuilt(
    fake: FakeAlpaca, write_config: Any, tmp_path: Path
) -> None:
    assert once(write_config, fake)[0] == 0
    cache = tmp_path / "state" / "cache" / "alpaca-iex"
    good = json.loads((cache / "coverage.json").read_text())
    (cache / "coverage.json").write_bytes(b"[]")  # JSON, but not the symbol -> span table
    code, events, err = once(write_config, fake)
    assert code == 0, err[-2000:]
    discarded = [e for e in events if e["event"] == "bars_cache_discarded"]
    assert [e["path"] for e in discarded] == [str(cache / "coverage.json")]
    assert json.loads((cache / "coverage.json").read_text()) == good

