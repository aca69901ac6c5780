"""Error texts a user sees name the real cause, and print dates as YYYY-MM-DD (never as
``2022-06-01 00:00:00``): the risk step's and strategies' date messages, the backtest's
too-short / empty window, a non-finite volatility, a universe symbol the price file lacks."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import strategies
from bot.core.risk import RiskLimits, apply_risk_limits
from brokers.errors import BrokerDataError
from brokers.prices import load_universe_prices
from strategies.base import StrategyError
from strategies.errors import InputDataError
from strategies.static import inverse_volatility_weights
from tests.conftest import SAMPLE_PRICES, capture_logs, run_cli_in_process

RAW_TIME = "00:00:00"


def _frame(data: dict[str, np.ndarray], start: str = "2022-01-03") -> pd.DataFrame:
    n = len(next(iter(data.values())))
    return pd.DataFrame(data, index=pd.bdate_range(start, periods=n, name="date"))


def _walk(n: int, symbols: tuple[str, ...] = ("A", "B", "C"), seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rets = rng.normal(0.0, 0.01, size=(n, len(symbols)))
    return _frame({s: 100 * np.exp(np.cumsum(rets[:, i])) for i, s in enumerate(symbols)})


def _falling_a_with_unpriced_safe_c(n: int = 60) -> pd.DataFrame:
    """A falls steadily (a momentum loser, below its trend), B rises, the safe asset C has no
    price on the as-of date."""
    t = np.arange(n)
    prices = _frame({"A": 100 * np.exp(-0.002 * t + 1e-3 * np.sin(t)),
                     "B": 100 * np.exp(0.002 * t + 2e-3 * np.sin(t)),
                     "C": 100 * np.exp(0.0001 * t + 3e-3 * np.sin(t))})
    prices.iloc[-1, prices.columns.get_loc("C")] = np.nan
    return prices


# --- 1. dates as YYYY-MM-DD, not pandas Timestamps -----------------------------------------


def _risk_window() -> tuple[Callable[[], object], str]:
    prices = _walk(300, ("SPY", "GLD"))
    prices.loc[prices.index[:100], "GLD"] = np.nan  # listed late: no full window
    return (lambda: apply_risk_limits(pd.Series({"SPY": 0.5, "GLD": 0.5}), prices,
                                      RiskLimits()),
            f"window ending {prices.index[-1].date()})")


def _fixed_unpriced() -> tuple[Callable[[], object], str]:
    prices = _walk(5)
    prices.iloc[-1, prices.columns.get_loc("B")] = np.nan
    s = strategies.create("fixed", weights={"A": 0.5, "B": 0.5})
    return (lambda: s.target_weights(prices),
            f"no price for B on the as-of date {prices.index[-1].date()}")


def _momentum_safe_asset() -> tuple[Callable[[], object], str]:
    prices = _falling_a_with_unpriced_safe_c()
    s = strategies.create("momentum", k=2, lookback=20, absolute_momentum=True,
                          safe_asset="C")
    return (lambda: s.target_weights(prices[["A", "B", "C"]]),
            f"safe_asset 'C' has no price on the as-of date {prices.index[-1].date()}")


def _trend_filter_safe_asset() -> tuple[Callable[[], object], str]:
    prices = _falling_a_with_unpriced_safe_c()
    s = strategies.create("trend_filter", base={"name": "fixed", "params": {"weights": {"A": 1.0}}},
                          window=20, safe_asset="C")
    return (lambda: s.target_weights(prices),
            f"safe_asset 'C' has no price on the as-of date {prices.index[-1].date()}")


def _inverse_volatility_flat() -> tuple[Callable[[], object], str]:
    prices = _walk(80)
    prices["B"] = 50.0  # constant: zero volatility
    s = strategies.create("inverse_volatility")
    return (lambda: s.target_weights(prices),
            f"zero volatility for ['B'] in the 63-day window ending {prices.index[-1].date()}")


@pytest.mark.parametrize("case", [_risk_window, _fixed_unpriced, _momentum_safe_asset,
                                  _trend_filter_safe_asset, _inverse_volatility_flat],
                         ids=lambda f: f.__name__.lstrip("_"))
def test_date_in_message_is_printed_as_a_day(case) -> None:
    call, expected = case()
    with pytest.raises((StrategyError, InputDataError, ValueError)) as caught:
        call()
    text = str(caught.value)
    assert expected in text
    assert RAW_TIME not in text


def test_trend_filter_asset_excluded_event_asof_is_a_day() -> None:
    prices = _walk(40)
    prices.loc[prices.index[:30], "B"] = np.nan  # fewer closes than the window
    s = strategies.create("trend_filter",
                          base={"name": "fixed", "params": {"weights": {"A": 0.5, "B": 0.5}}},
                          window=20)
    with capture_logs() as logs:
        s.target_weights(prices)
    excluded = [e for e in logs if e["event"] == "asset_excluded" and e["symbol"] == "B"]
    assert excluded, logs
    assert excluded[0]["asof"] == str(prices.index[-1].date())


# --- 2. backtest window: blame the short file / the empty date range -----------------------


def test_backtest_short_price_file_names_its_rows_not_a_start_date(write_config, tmp_path):
    short = pd.read_csv(SAMPLE_PRICES).tail(30)
    path = tmp_path / "short30.csv"
    short.to_csv(path, index=False)
    config = write_config({"sim": {"prices": str(path), "replay_start": None}})
    proc = run_cli_in_process("backtest", "--config", str(config), "--prices", str(path),
                              "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "the price data has 30 rows (2024-11-18 to 2024-12-31)" in proc.stderr
    assert "need 252 rows of history before the first backtest day" in proc.stderr
    assert "between start" not in proc.stderr and RAW_TIME not in proc.stderr


def test_backtest_weekend_range_names_the_dates_given(write_config, tmp_path):
    config = write_config()
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2010-07-10",
                              "--end", "2010-07-11", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert ("no trading day in the price data between start date 2010-07-10 and end date "
            "2010-07-11") in proc.stderr
    assert "warm-up" not in proc.stderr and "2010-07-12" not in proc.stderr


# --- 3. non-finite volatility is not "zero volatility" -------------------------------------


def test_inverse_volatility_infinite_return_says_non_finite_without_warnings() -> None:
    prices = _walk(80)
    prices.iloc[-3, prices.columns.get_loc("B")] = 1e-200
    prices.iloc[-2, prices.columns.get_loc("B")] = 1e200  # an infinite return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning fails the test
        with pytest.raises(StrategyError) as caught:
            inverse_volatility_weights(prices, 63)
    text = str(caught.value)
    assert f"non-finite volatility for ['B'] in the 63-day window ending " \
           f"{prices.index[-1].date()}" in text
    assert "zero volatility" not in text and RAW_TIME not in text


# --- 4. a universe symbol the price file lacks: name the file ------------------------------


def _no_efa_csv(tmp_path: Path) -> Path:
    path = tmp_path / "no_efa.csv"
    pd.read_csv(SAMPLE_PRICES).drop(columns=["EFA"]).to_csv(path, index=False)
    return path


def test_load_universe_prices_missing_symbol_names_the_file(tmp_path):
    path = _no_efa_csv(tmp_path)
    with pytest.raises(BrokerDataError) as caught:
        load_universe_prices(path, ["SPY", "EFA"])
    assert f"universe symbol(s) EFA not in the price file {path} (available: SPY," \
        in str(caught.value)


@pytest.mark.parametrize("command", ["weights", "backtest"])
def test_cli_missing_universe_symbol_names_the_price_file(write_config, tmp_path, command):
    path = _no_efa_csv(tmp_path)
    config = write_config({"universe": {"symbols": ["SPY", "TLT", "EFA"]}})
    extra = ("--out", str(tmp_path / "o")) if command == "backtest" else ()
    proc = run_cli_in_process(command, "--config", str(config), "--prices", str(path), *extra)
    assert proc.returncode == 2
    assert f"EFA not in the price file {path}" in proc.stderr
