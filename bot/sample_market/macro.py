"""SYNTHETIC monthly macro series generated together with the sample market's regimes.

Nothing in ``bot/sample_market/sample_macro.csv`` is real data. It is drawn from the same
regime path as ``sample_prices.csv`` (``generate_sample_market(SEED).stress``) and the
sample's DBC closes, so the macro regime and the prices move together, the way the
``macro_regime`` strategy assumes. One row per calendar month end (the reference period;
the strategy's publication lags decide when a value is known), 2005-01..2024-12:

* ``gdp_growth`` (% y/y): AR(1) toward 2.5 − 6 × (share of stress days in the month),
  persistence 0.8, shocks N(0, 0.3²): growth slumps in stress spells;
* ``cpi_inflation`` (% y/y): AR(1) toward 2.2 + 0.04 × (DBC's 12-month return, %),
  persistence 0.85, shocks N(0, 0.15²): commodity prices feed inflation;
* ``policy_rate`` (%): a smoothed Taylor (1993) rule, 0.8 × previous + 0.2 ×
  max(0, 2 + 1.5 (π − 2) + 0.5 (g − 2.5));
* ``curve_slope`` (10y − 2y, %): 2.5 − 0.6 × policy_rate + N(0, 0.15²).

Values are written with 3 decimals from ``numpy.random.default_rng(MACRO_SEED)``, a seed of
its own, so the price file is untouched. ``python -m bot.sample_market`` rewrites both files;
a test checks this one is unchanged. To use real series instead, see README ("Macro data").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import structlog

from bot.sample_market.generator import SEED, SampleMarket, generate_sample_market, render_csv

SAMPLE_MACRO_PATH = Path(__file__).parent / "sample_macro.csv"
MACRO_SEED = 11
MACRO_DECIMALS = 3
SERIES = ("gdp_growth", "cpi_inflation", "policy_rate", "curve_slope")


def generate_sample_macro(market: SampleMarket) -> pd.DataFrame:
    """Monthly synthetic macro series (month-end dates) from the market's regimes (pure)."""
    stress = pd.Series(market.stress, index=market.prices.index)
    stress_share = stress.resample("ME").mean()
    dbc = market.prices["DBC"].resample("ME").last()
    dbc_12m = (dbc / dbc.shift(12) - 1).fillna(0.0).to_numpy() * 100
    rng = np.random.default_rng(MACRO_SEED)
    n = len(stress_share)
    shocks = rng.standard_normal((n, 3))
    growth, inflation, rate, slope = (np.empty(n) for _ in range(4))
    g, pi, i = 2.5, 2.2, 2.0
    for m in range(n):
        g = 0.8 * g + 0.2 * (2.5 - 6.0 * stress_share.iloc[m]) + 0.3 * shocks[m, 0]
        pi = 0.85 * pi + 0.15 * (2.2 + 0.04 * dbc_12m[m]) + 0.15 * shocks[m, 1]
        i = 0.8 * i + 0.2 * max(0.0, 2.0 + 1.5 * (pi - 2.0) + 0.5 * (g - 2.5))
        growth[m], inflation[m], rate[m] = g, pi, i
        slope[m] = 2.5 - 0.6 * i + 0.15 * shocks[m, 2]
    return pd.DataFrame({"gdp_growth": growth, "cpi_inflation": inflation,
                         "policy_rate": rate, "curve_slope": slope},
                        index=pd.DatetimeIndex(stress_share.index, name="date"))


def write_sample_macro(path: Path = SAMPLE_MACRO_PATH) -> None:
    """Write the synthetic macro series, generated from the seeds, to ``path`` (default:
    the bundled ``bot/sample_market/sample_macro.csv``)."""
    macro = generate_sample_macro(generate_sample_market(SEED))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_csv(macro, MACRO_DECIMALS), encoding="utf-8", newline="")
    structlog.get_logger("bot.sample_market").info(
        "sample_macro_written", path=str(path), months=len(macro))
