"""``screen`` (score screens, point in time) and ``sector_cap`` (post-hoc sector limits)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import strategies
from strategies.base import StrategyConfigError, StrategyError
from strategies.errors import InputDataError
from strategies.sector_cap import cap_sectors
from tests.conftest import invoke_cli, random_walk_prices

SYMBOLS = ["SPY", "TLT", "IEF", "GLD"]
SCORES = {"SPY": 1.0, "TLT": 4.0, "IEF": 3.0, "GLD": 2.0}


@pytest.fixture
def prices():
    return random_walk_prices(SYMBOLS, 300)


def write_scores(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scores.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_screen_min_score_pro_rata_spreads_dropped_weight_over_kept(prices):
    s = strategies.create("screen", base="equal_weight", scores=SCORES, min_score=2.5)
    w = s.target_weights(prices)
    assert w.to_dict() == pytest.approx({"SPY": 0.0, "TLT": 0.5, "IEF": 0.5, "GLD": 0.0})


def test_screen_top_fraction_cash_leaves_dropped_weight_uninvested(prices):
    s = strategies.create("screen", base="equal_weight", scores=SCORES, top_fraction=0.5,
                          redistribute="cash")
    w = s.target_weights(prices)
    assert w.to_dict() == pytest.approx({"SPY": 0.0, "TLT": 0.25, "IEF": 0.25, "GLD": 0.0})


def test_screen_dated_scores_used_only_from_their_date(prices, tmp_path):
    t = prices.index[200]
    later = prices.index[201].strftime("%Y-%m-%d")
    path = write_scores(tmp_path, "date,symbol,score\n"
                        "2000-01-03,SPY,9\n2000-01-03,TLT,1\n2000-01-03,IEF,1\n2000-01-03,GLD,1\n"
                        f"{later},SPY,0\n")
    s = strategies.create("screen", base="equal_weight", score_file=path, min_score=5)
    assert s.target_weights(prices.loc[:t])["SPY"] == pytest.approx(1.0)
    assert s.target_weights(prices.loc[:later]).sum() == 0.0  # SPY now fails; nobody passes


def test_screen_scores_after_t_perturbed_weights_on_t_unchanged(prices, tmp_path):
    t = prices.index[150]
    rows = "".join(f"{d:%Y-%m-%d},{s},{v}\n" for d in prices.index[::20]
                   for s, v in SCORES.items())
    base = write_scores(tmp_path, "date,symbol,score\n" + rows)
    shaken = "".join(f"{d:%Y-%m-%d},{s},{-v if d > t else v}\n" for d in prices.index[::20]
                     for s, v in SCORES.items())
    other = tmp_path / "other.csv"
    other.write_text("date,symbol,score\n" + shaken, encoding="utf-8")
    a = strategies.create("screen", base="inverse_volatility", score_file=base, top_fraction=0.5)
    b = strategies.create("screen", base="inverse_volatility", score_file=str(other),
                          top_fraction=0.5)
    for day in prices.index[100:151]:
        pd.testing.assert_series_equal(a.target_weights(prices.loc[:day]),
                                       b.target_weights(prices.loc[:day]))
    assert not a.target_weights(prices).equals(b.target_weights(prices))


def test_screen_universe_symbol_without_score_raises_naming_it(prices):
    s = strategies.create("screen", base="equal_weight", scores={"SPY": 1, "TLT": 2},
                          min_score=0)
    with pytest.raises(StrategyError, match=r"\['IEF', 'GLD'\]"):
        s.target_weights(prices)
    lax = strategies.create("screen", base="equal_weight", scores={"SPY": 1, "TLT": 2},
                            min_score=0, unscored="exclude")
    assert lax.target_weights(prices)[["IEF", "GLD"]].sum() == 0.0


def test_screen_scores_outside_universe_ignored(prices):
    s = strategies.create("screen", base="equal_weight", scores={**SCORES, "XLK": 99.0},
                          top_fraction=0.25)
    assert s.target_weights(prices).idxmax() == "TLT"  # XLK is not ranked


@pytest.mark.parametrize("text,named", [
    ("symbol,score\nSPY,abc\n", r"row 2 \(SPY\)"),
    ("symbol,value\nSPY,1\n", "missing column"),
    ("date,symbol,score\n2020-13-01,SPY,1\n", "2020-13-01"),
    ("date,symbol,score\n2020-01-02,SPY,1\n2020-01-02,SPY,2\n", "scored twice"),
])
def test_screen_bad_score_file_raises_input_error_naming_row(tmp_path, text, named):
    with pytest.raises(InputDataError, match=named):
        strategies.create("screen", base="equal_weight", score_file=write_scores(tmp_path, text),
                          min_score=0)


@pytest.mark.parametrize("params,key", [
    ({"scores": SCORES}, "min_score or top_fraction"),
    ({"scores": SCORES, "min_score": 1, "top_fraction": 0.5}, "min_score or top_fraction"),
    ({"scores": SCORES, "top_fraction": 1.5}, "top_fraction"),
    ({"scores": SCORES, "min_score": 1, "redistribute": "x"}, "redistribute"),
    ({"min_score": 1}, "score_file or scores"),
])
def test_screen_bad_params_raise_config_error_naming_key(params, key):
    with pytest.raises(StrategyConfigError, match=key):
        strategies.create("screen", base="equal_weight", **params)


def test_cap_sectors_excess_goes_pro_rata_to_sectors_with_room():
    w = pd.Series({"SPY": 0.5, "EFA": 0.3, "TLT": 0.1, "GLD": 0.1})
    out = cap_sectors(w, {"SPY": "equity", "EFA": "equity", "TLT": "bonds"}, {"equity": 0.6})
    assert out[["SPY", "EFA"]].sum() == pytest.approx(0.6)
    assert out["SPY"] / out["EFA"] == pytest.approx(0.5 / 0.3)
    assert out["TLT"] == pytest.approx(0.2) and out["GLD"] == pytest.approx(0.2)


def test_cap_sectors_no_room_leaves_excess_in_cash():
    w = pd.Series({"SPY": 0.7, "TLT": 0.3})
    out = cap_sectors(w, {"SPY": "equity", "TLT": "bonds"}, {"equity": 0.6, "bonds": 0.3})
    assert out.to_dict() == pytest.approx({"SPY": 0.6, "TLT": 0.3})


def test_cap_sectors_receiving_sector_capped_in_turn():
    w = pd.Series({"SPY": 0.6, "TLT": 0.2, "GLD": 0.2})
    out = cap_sectors(w, {"SPY": "equity", "TLT": "bonds", "GLD": "gold"},
                      {"equity": 0.4, "bonds": 0.25})
    assert out.to_dict() == pytest.approx({"SPY": 0.4, "TLT": 0.25, "GLD": 0.35})


def test_sector_cap_symbol_outside_universe_raises_naming_it(prices):
    s = strategies.create("sector_cap", base="equal_weight",
                          sectors={"SPY": "equity", "XLK": "equity"}, sector_limits={"equity": 0.5})
    with pytest.raises(StrategyError, match="XLK"):
        s.target_weights(prices)


def test_sector_cap_limit_for_unknown_sector_raises_naming_it():
    with pytest.raises(StrategyConfigError, match="credit"):
        strategies.create("sector_cap", base="equal_weight", sectors={"SPY": "equity"},
                          sector_limits={"credit": 0.2})


def test_sector_cap_prices_after_t_perturbed_weights_on_t_unchanged(prices):
    s = strategies.create("sector_cap", base="inverse_volatility",
                          sectors={"SPY": "equity", "TLT": "bonds", "IEF": "bonds"},
                          sector_limits={"bonds": 0.3})
    t = prices.index[250]
    shaken = prices.copy()
    shaken.loc[shaken.index > t] *= 1.5
    for day in prices.index[240:251]:
        pd.testing.assert_series_equal(s.target_weights(prices.loc[:day]),
                                       s.target_weights(shaken.loc[:day]))
    assert s.target_weights(prices)[["TLT", "IEF"]].sum() == pytest.approx(0.3)


@pytest.mark.parametrize("name,params", [
    ("screen", {"base": "equal_weight", "scores": SCORES, "top_fraction": 0.5}),
    ("sector_cap", {"base": "equal_weight", "sectors": {"SPY": "equity", "TLT": "bonds"},
                    "sector_limits": {"equity": 0.1}}),
])
def test_cli_weights_and_backtest_run_for_wrappers(write_config, tmp_path, name, params):
    config = write_config({"universe": {"symbols": SYMBOLS},
                           "strategy": {"name": name, "params": params},
                           "backtest": {"calendar": "monthly", "tearsheet": False}})
    shown = invoke_cli("weights", "--config", str(config))
    assert shown.exit_code == 0, shown.stderr
    out = tmp_path / "bt"
    run = invoke_cli("backtest", "--config", str(config), "--start", "2020-01-02", "--end",
                     "2020-06-30", "--out", str(out))
    assert run.exit_code == 0, run.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"]["rebalances"] >= 6
