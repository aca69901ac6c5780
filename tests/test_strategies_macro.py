"""``macro_regime``: point-in-time macro series, lags, staleness, the synthetic macro file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import strategies
from bot.sample_market.generator import SAMPLE_PRICES_PATH, SEED, generate_sample_market, render_csv
from bot.sample_market.macro import MACRO_DECIMALS, SAMPLE_MACRO_PATH, generate_sample_macro
from strategies.base import StrategyConfigError, StrategyError
from strategies.errors import InputDataError
from strategies.macro_regime import ALL_WEATHER_SEASONS, REGIMES
from tests.conftest import invoke_cli, random_walk_prices

SYMBOLS = ["SPY", "TLT", "IEF", "GLD", "DBC"]


def write_macro(tmp_path: Path, frame: pd.DataFrame, name: str = "macro.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index_label="date", date_format="%Y-%m-%d")
    return str(path)


def monthly_macro(growth: list[float], inflation: list[float]) -> pd.DataFrame:
    index = pd.date_range("2019-01-31", periods=len(growth), freq="ME")
    return pd.DataFrame({"gdp_growth": growth, "cpi_inflation": inflation}, index=index)


@pytest.fixture
def prices():
    return random_walk_prices(SYMBOLS, 600, start="2019-01-01")


def test_sample_macro_regenerates_committed_csv_byte_for_byte():
    macro = generate_sample_macro(generate_sample_market(SEED))
    assert render_csv(macro, MACRO_DECIMALS).encode("utf-8") == SAMPLE_MACRO_PATH.read_bytes()


def test_sample_macro_growth_lower_in_stress_months():
    market = generate_sample_market(SEED)
    macro = generate_sample_macro(market)
    stress = pd.Series(market.stress, index=market.prices.index).resample("ME").mean()
    calm_growth = macro["gdp_growth"][stress.to_numpy() < 0.1].mean()
    stress_growth = macro["gdp_growth"][stress.to_numpy() > 0.5].mean()
    assert stress_growth < calm_growth - 1.0


def test_macro_regime_holds_the_season_of_the_published_trend(prices, tmp_path):
    growth = [1.0] * 12 + [3.0]  # rising against its trailing mean
    inflation = [3.0] * 12 + [1.0]  # falling
    path = write_macro(tmp_path, monthly_macro(growth, inflation))
    s = strategies.create("macro_regime", macro_file=path,
                          publication_lag_days={"gdp_growth": 0, "cpi_inflation": 0})
    w = s.target_weights(prices.loc[:"2020-01-31"])
    expected = pd.Series(dict(ALL_WEATHER_SEASONS["growth_up_inflation_down"]))
    pd.testing.assert_series_equal(w[w > 0].sort_index(), expected.sort_index(),
                                   check_names=False)


def test_macro_regime_value_unused_before_date_plus_lag(prices, tmp_path):
    growth = [1.0] * 12 + [3.0]
    inflation = [1.0] * 12 + [3.0]
    path = write_macro(tmp_path, monthly_macro(growth, inflation))  # last value 2020-01-31
    s = strategies.create("macro_regime", macro_file=path, max_staleness_days=400,
                          publication_lag_days={"gdp_growth": 30, "cpi_inflation": 10})
    with pytest.raises(StrategyError, match="'gdp_growth': 12 value"):
        s.regime(pd.Timestamp("2020-02-29"))  # 2020-01-31 is published 2020-03-01
    assert s.regime(pd.Timestamp("2020-03-01")) == "growth_up_inflation_up"


def test_macro_regime_macro_after_t_perturbed_weights_on_t_unchanged(prices, tmp_path):
    rng = np.random.default_rng(3)
    index = pd.date_range("2017-01-31", periods=48, freq="ME")
    macro = pd.DataFrame({"gdp_growth": rng.normal(2, 1, 48),
                          "cpi_inflation": rng.normal(2, 1, 48)}, index=index)
    t = pd.Timestamp("2020-06-30")
    shaken = macro.copy()
    # values dated before t but published after it (lag) must not matter either
    shaken.loc[shaken.index + pd.Timedelta(days=30) > t] *= -3.0
    a = strategies.create("macro_regime", macro_file=write_macro(tmp_path, macro, "a.csv"),
                          publication_lag_days={"gdp_growth": 30, "cpi_inflation": 30})
    b = strategies.create("macro_regime", macro_file=write_macro(tmp_path, shaken, "b.csv"),
                          publication_lag_days={"gdp_growth": 30, "cpi_inflation": 30})
    days = prices.loc["2020-01-01":t].index
    assert [a.regime(d) for d in days] == [b.regime(d) for d in days]
    later = prices.loc["2020-07-01":"2020-12-31"].index
    assert [a.regime(d) for d in later] != [b.regime(d) for d in later]


def test_macro_regime_stale_series_raises_naming_series_and_date(prices, tmp_path):
    path = write_macro(tmp_path, monthly_macro([1.0] * 13, [1.0] * 13))  # ends 2020-01-31
    s = strategies.create("macro_regime", macro_file=path, max_staleness_days=60,
                          publication_lag_days={"gdp_growth": 0, "cpi_inflation": 0})
    assert s.regime(pd.Timestamp("2020-03-31")) == "growth_down_inflation_down"
    with pytest.raises(StrategyError, match=r"'gdp_growth' is stale on 2020-04-01.*2020-01-31"):
        s.regime(pd.Timestamp("2020-04-01"))


def test_macro_regime_empty_cells_are_not_observations(prices, tmp_path):
    macro = monthly_macro([1.0] * 12 + [3.0], [1.0] * 12 + [3.0])
    macro.loc[macro.index[-1], "cpi_inflation"] = np.nan  # not yet observed: not filled
    path = write_macro(tmp_path, macro)
    s = strategies.create("macro_regime", macro_file=path,
                          publication_lag_days={"gdp_growth": 0, "cpi_inflation": 0})
    with pytest.raises(StrategyError, match="'cpi_inflation': 12 value"):
        s.regime(pd.Timestamp("2020-02-10"))


@pytest.mark.parametrize("text,named", [
    ("day,gdp_growth\n2020-01-31,1\n", "'date' column"),
    ("date,gdp_growth,cpi_inflation\n2020-01-31,x,1\n", "'gdp_growth' on 2020-01-31"),
    ("date,gdp_growth,cpi_inflation\n2020-02-31,1,1\n", "2020-02-31"),
])
def test_macro_regime_bad_file_raises_input_error_naming_it(tmp_path, text, named):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputDataError, match=named):
        strategies.create("macro_regime", macro_file=str(path))


@pytest.mark.parametrize("params,key", [
    ({}, "macro_file"),
    ({"macro_file": str(SAMPLE_MACRO_PATH), "growth_series": "gdp"}, "'gdp'"),
    ({"macro_file": str(SAMPLE_MACRO_PATH), "publication_lag_days": {"gdp_growth": 30}},
     "cpi_inflation"),
    ({"macro_file": str(SAMPLE_MACRO_PATH), "regime_weights": {"growth_up_inflation_up": {}}},
     "missing"),
])
def test_macro_regime_bad_params_raise_config_error_naming_key(params, key):
    with pytest.raises(StrategyConfigError, match=key):
        strategies.create("macro_regime", **params)


def test_macro_regime_tilt_blends_base_and_season(prices):
    s = strategies.create("macro_regime", macro_file=str(SAMPLE_MACRO_PATH), base="equal_weight",
                          tilt=0.5)
    sample = pd.read_csv(SAMPLE_PRICES_PATH, index_col="date", parse_dates=True)[SYMBOLS]
    w = s.target_weights(sample.loc[:"2015-06-30"])
    season = ALL_WEATHER_SEASONS[s.regime(pd.Timestamp("2015-06-30"))]
    for symbol in SYMBOLS:
        assert w[symbol] == pytest.approx(0.1 + 0.5 * season.get(symbol, 0.0))
    assert set(REGIMES) == set(ALL_WEATHER_SEASONS)


def test_cli_weights_and_backtest_run_macro_regime(write_config, tmp_path):
    config = write_config({"strategy": {"name": "macro_regime",
                                        "params": {"macro_file": str(SAMPLE_MACRO_PATH)}},
                           "backtest": {"calendar": "monthly", "tearsheet": False}})
    shown = invoke_cli("weights", "--config", str(config))
    assert shown.exit_code == 0, shown.stderr
    out = tmp_path / "bt"
    run = invoke_cli("backtest", "--config", str(config), "--start", "2010-01-04", "--end",
                     "2011-12-30", "--out", str(out))
    assert run.exit_code == 0, run.stderr
    trades = pd.read_csv(out / "trades.csv")
    assert trades["date"].nunique() >= 2  # the season changed at least once
    assert json.loads((out / "metrics.json").read_text())["strategy"]["rebalances"] >= 24
