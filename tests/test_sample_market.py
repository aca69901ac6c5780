"""The bundled synthetic sample: reproducible from its seed and shaped like its calibration."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bot.sample_market.__main__ import main as sample_market_main
from bot.sample_market.generator import (
    ALL_VOL_ANNUAL,
    CALM,
    SAMPLE_PRICES_PATH,
    SEED,
    STRESS,
    SYMBOLS,
    generate_sample_market,
    render_csv,
)
from bot.sample_market.macro import SAMPLE_MACRO_PATH
from brokers.calendar import sessions_in_range
from brokers.prices import load_price_csv


@pytest.fixture(scope="module")
def market():
    return generate_sample_market(SEED)


@pytest.fixture(scope="module")
def log_returns():
    return np.log(load_price_csv(SAMPLE_PRICES_PATH)).diff().iloc[1:]


def test_sample_market_regenerates_committed_csv_byte_for_byte(market):
    assert render_csv(market.prices).encode("utf-8") == SAMPLE_PRICES_PATH.read_bytes()


def test_sample_market_covers_twenty_years_of_nyse_sessions(log_returns):
    prices = load_price_csv(SAMPLE_PRICES_PATH)
    assert tuple(prices.columns) == SYMBOLS
    assert prices.index[0] == pd.Timestamp("2005-01-03")
    assert prices.index[-1] == pd.Timestamp("2024-12-31")
    assert [d.date() for d in prices.index] == sessions_in_range(date(2005, 1, 3),
                                                                  date(2024, 12, 31))


@pytest.mark.parametrize("holiday", ["2006-01-16", "2006-07-04", "2006-12-25", "2012-10-29",
                                     "2018-12-05", "2024-07-04", "2024-11-28"])
def test_sample_market_exchange_holiday_has_no_row(holiday):
    prices = load_price_csv(SAMPLE_PRICES_PATH)
    assert pd.Timestamp(holiday) not in prices.index


def test_sample_market_realized_vol_within_25pct_of_calibration(log_returns):
    realized = log_returns.std().to_numpy() * np.sqrt(252)
    ratio = realized / np.array(ALL_VOL_ANNUAL)
    assert np.all(np.abs(ratio - 1) < 0.25), dict(zip(SYMBOLS, ratio.round(3), strict=True))


def test_sample_market_spy_tlt_correlation_negative(log_returns):
    assert log_returns["SPY"].corr(log_returns["TLT"]) < 0


def test_sample_market_has_stress_spells_with_higher_vol(market, log_returns):
    stress = market.stress[1:]
    spells = int(np.sum(np.diff(market.stress.astype(int)) == 1))
    assert 0.05 < stress.mean() < 0.5 and spells >= 5
    spy = log_returns["SPY"].to_numpy()
    assert spy[stress].std() > 1.5 * spy[~stress].std()


def test_sample_market_returns_fat_tailed(log_returns):
    assert (log_returns.kurt() > 1.0).all()


def test_sample_market_dof_matches_median_regime_kurtosis():
    for regime in (CALM, STRESS):
        assert 6 / (regime.dof - 4) == pytest.approx(np.median(regime.excess_kurtosis))


def test_sample_market_other_seed_gives_different_prices(market):
    other = generate_sample_market(SEED + 1)
    assert not np.allclose(other.prices.to_numpy(), market.prices.to_numpy())


def test_module_help_writes_nothing_and_out_writes_the_bundled_files_elsewhere(tmp_path):
    """``python -m bot.sample_market --help`` only prints help (it used to rewrite the
    bundled CSVs); ``--out DIR`` writes both files there, equal to the bundled ones."""
    bundled = [SAMPLE_PRICES_PATH, SAMPLE_MACRO_PATH]
    before = [p.stat().st_mtime_ns for p in bundled]
    shown = CliRunner().invoke(sample_market_main, ["--help"])
    assert shown.exit_code == 0 and "--out" in shown.output
    assert [p.stat().st_mtime_ns for p in bundled] == before
    written = CliRunner().invoke(sample_market_main, ["--out", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert [p.stat().st_mtime_ns for p in bundled] == before
    for path in bundled:
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()
