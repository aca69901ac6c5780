"""Small synthetic markets, configs and spaces for the research tests (not a test file)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import random_walk_prices, to_toml

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]
SPACE = """
[objective]
metric = "sharpe"
constraints = ["max_drawdown <= 0.6"]

[space.strategy.params]
k = {int = [1, 3]}
lookback = {int = [20, 60], step = 10}

[space.rebalance]
cash_buffer = {float = [0.0, 0.2]}
"""


def write_market(directory: Path, days: int = 520, seed: int = 11) -> Path:
    path = directory / "prices.csv"
    random_walk_prices(SYMBOLS, days, seed=seed).to_csv(path)
    return path


def write_config(directory: Path, prices: Path, **tables: dict) -> Path:
    doc = {
        "bot": {"state_dir": str(directory / "state")},
        "sim": {"prices": str(prices), "commission_bps": 1.0, "slippage_bps": 2.0},
        "universe": {"symbols": SYMBOLS},
        "strategy": {"name": "momentum", "params": {"k": 2, "lookback": 40}},
        "risk": {"lookback_days": 20},
        # the per-run tearsheets (~0.5 s of charts each) are test_tearsheet's; a test that
        # wants them sets tearsheet = true
        "backtest": {"calendar": "monthly", "tearsheet": False},
    }
    for name, body in tables.items():
        doc[name] = {**doc.get(name, {}), **body}
    path = directory / "config.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


def write_space(directory: Path, text: str = SPACE) -> Path:
    path = directory / "space.toml"
    path.write_text(text, encoding="utf-8")
    return path


def trial_rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "trials.csv").sort_values("trial").reset_index(drop=True)


def logged_events(stderr_lines: list[str], name: str) -> list[dict]:
    """The JSON log lines of event ``name`` (stderr also carries other text)."""
    events = []
    for line in stderr_lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            events.append(event)
    return events
