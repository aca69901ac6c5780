"""`allocbot weights` works with every registered strategy (the README's table)."""

from __future__ import annotations

import math
from typing import Any

import pytest

import strategies
from bot.cli.weights import target_weights_report
from bot.config import parse_config
from tests.conftest import REPO, SAMPLE_PRICES

NEEDS_PARAMS: dict[str, dict[str, Any]] = {
    "fixed": {"preset": "permanent_portfolio"},
    "trend_filter": {"base": "equal_weight"},
    "vol_target": {"base": "equal_weight"},
    "core_satellite": {"core": {"name": "fixed", "params": {"preset": "sixty_forty"}},
                       "satellite": "momentum"},
    "regime_kmeans": {"regime_weights": [{"SPY": 0.6, "IEF": 0.4}, {"IEF": 0.5, "GLD": 0.5}]},
    "macro_regime": {"macro_file": str(SAMPLE_PRICES.parent / "sample_macro.csv")},
    "screen": {"base": "equal_weight", "top_fraction": 0.5,
               "scores": {"SPY": 1, "TLT": 2, "IEF": 3, "GLD": 4, "DBC": 5, "SHY": 6, "VNQ": 7,
                          "EFA": 8}},
    "sector_cap": {"base": "equal_weight", "sectors": {"SPY": "equity", "TLT": "bonds"},
                   "sector_limits": {"equity": 0.6}},
}


@pytest.mark.parametrize("name", strategies.available())
def test_weights_report_every_strategy_gives_valid_weights(name):
    raw = {
        "sim": {"prices": str(SAMPLE_PRICES)},
        "strategy": {"name": name, "params": NEEDS_PARAMS.get(name, {})},
        "risk": {"max_var": 0.03},
    }
    cfg = parse_config(raw, REPO)
    report = target_weights_report(cfg, SAMPLE_PRICES, None)
    weights = report["weights"]
    assert report["strategy"] == name
    assert set(weights) == {"SPY", "TLT", "IEF", "GLD", "DBC", "SHY", "VNQ", "EFA"}
    assert all(w >= 0 and math.isfinite(w) for w in weights.values())
    assert sum(weights.values()) + report["cash"] == pytest.approx(1.0, abs=1e-9)
    assert report["var"] <= 0.03 + 1e-9
