"""Strategy parameters in the wrong unit or of the wrong type are refused at construction,
naming the key: a percentage typed as a whole number (target_volatility = 10 for 10 %), a
bool or a numeric string where a number is expected, an empty ``fixed`` weights table, a
missing or malformed data file; and ``sectors`` symbols are exposed to the preflight."""

from __future__ import annotations

import pytest

import strategies
from bot.sample_market.macro import SAMPLE_MACRO_PATH as SAMPLE_MACRO
from strategies.base import StrategyConfigError


def refused(name: str, **params: object) -> str:
    with pytest.raises(StrategyConfigError) as caught:
        strategies.create(name, **params)
    return str(caught.value)


# --- 1, 2: target_volatility is an annual fraction, at most 2.0 (200 % a year) ----------

@pytest.mark.parametrize("name, extra", [("efficient_risk", {}),
                                         ("vol_target", {"base": "equal_weight"})])
@pytest.mark.parametrize("target", [10, 2.5])
def test_target_volatility_above_200_percent_is_refused_as_a_fraction(name, extra, target):
    message = refused(name, target_volatility=target, **extra)
    assert message.startswith("target_volatility: ")
    assert "annual volatility as a fraction (0.10 = 10 %)" in message
    assert f"got {target!r}" in message and "2.0]" in message
    # the ceiling itself is accepted
    assert strategies.create(name, target_volatility=2.0, **extra).target_volatility == 2.0


# --- 3: a view's return is an annual fraction, |r| <= 1.0 ------------------------------

@pytest.mark.parametrize("ret", [8, -1.5])
def test_black_litterman_view_return_in_percent_is_refused(ret):
    views = [{"assets": {"SPY": 1}, "return": 0.02}, {"assets": {"TLT": 1}, "return": ret}]
    message = refused("black_litterman", views=views)
    assert message.startswith("views[2].return: ") and "fraction (0.08 = 8 %)" in message
    assert f"got {ret!r}" in message
    # ±100 % a year is accepted
    bl = strategies.create("black_litterman", views=[{"assets": {"SPY": 1}, "return": -1.0},
                                                     {"assets": {"TLT": 1}, "return": 1}])
    assert [v.expected_return for v in bl.parsed_views] == [-1.0, 1.0]


# --- 4: a strategy's risk_free_rate has the [backtest] risk_free_rate's range -------------

@pytest.mark.parametrize("rate", [4.5, 0.51, -0.06])
def test_max_sharpe_risk_free_rate_outside_the_backtest_range_is_refused(rate):
    message = refused("max_sharpe", risk_free_rate=rate)
    assert message.startswith("risk_free_rate: ") and "[-0.05, 0.5]" in message
    assert "fraction" in message
    for inside in (-0.05, 0.0, 0.5):  # the range's ends are accepted
        assert strategies.create("max_sharpe", risk_free_rate=inside).risk_free_rate == inside


def test_risk_free_rate_range_matches_the_backtest_config():
    from bot.config import BacktestSection
    from strategies.base import RISK_FREE_RATE_RANGE

    metadata = BacktestSection.model_fields["risk_free_rate"].metadata
    ge = next(m.ge for m in metadata if hasattr(m, "ge"))
    le = next(m.le for m in metadata if hasattr(m, "le"))
    assert (ge, le) == RISK_FREE_RATE_RANGE


# --- 5: bools and numeric strings are not numbers --------------------------------------

@pytest.mark.parametrize("name, params, key", [
    ("fixed", {"weights": {"SPY": True}}, "weights.SPY: "),
    ("fixed", {"weights": {"SPY": "0.5"}}, "weights.SPY: "),
    ("mean_variance", {"risk_aversion": True}, "risk_aversion: "),
    ("mean_variance", {"risk_aversion": "3"}, "risk_aversion: "),
    ("min_variance", {"bounds": ["0", "0.3"]}, "bounds: "),
    ("min_variance", {"bounds": {"SPY": [False, True]}}, "bounds.SPY: "),
    ("risk_parity", {"budgets": {"SPY": True}}, "budgets.SPY: "),
    ("black_litterman", {"views": [{"assets": {"SPY": 1}, "return": True}]},
     "views[1].return: "),
    ("black_litterman", {"risk_aversion": True}, "risk_aversion: "),
    ("max_sharpe", {"market_weights": {"SPY": True}, "expected_returns": "equilibrium"},
     "market_weights.SPY: "),
])
def test_bool_or_string_where_a_number_is_expected_is_refused(name, params, key):
    message = refused(name, **params)
    assert message.startswith(key) and "expected" in message


# --- 6: an empty fixed weights table ----------------------------------------------------

def test_fixed_empty_weights_table_is_refused():
    message = refused("fixed", weights={})
    assert message.startswith("weights: ") and "empty" in message


# --- 7: data files: a config error naming the key and the file -------------------------

def test_macro_regime_missing_file_is_a_config_error_naming_key_and_file(tmp_path):
    path = tmp_path / "nope.csv"
    message = refused("macro_regime", macro_file=str(path))
    assert message == f"macro_file: {path}: not found"
    # a good file still loads
    assert strategies.create("macro_regime", macro_file=str(SAMPLE_MACRO)).lookback_days == 1


def test_macro_regime_malformed_file_keeps_the_reason(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("day,gdp_growth\n2020-01-31,1\n", encoding="utf-8")
    message = refused("macro_regime", macro_file=str(path))
    assert message.startswith(f"macro_file: {path}: ") and "'date' column" in message


def test_screen_missing_score_file_is_a_config_error_naming_key_and_file(tmp_path):
    path = tmp_path / "nope.csv"
    message = refused("screen", base="equal_weight", score_file=str(path), min_score=0)
    assert message == f"score_file: {path}: not found"


def test_screen_malformed_score_file_keeps_the_reason(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("symbol,score\nSPY,abc\n", encoding="utf-8")
    message = refused("screen", base="equal_weight", score_file=str(path), min_score=0)
    assert message.startswith(f"score_file: {path}: ") and "row 2 (SPY)" in message


# --- 8: sectors symbols are checked against the universe before the first cycle ---------

SECTORS = {"SPY": "equity", "TLT": "bonds", "XYZ": "equity"}


@pytest.mark.parametrize("name, extra", [
    ("min_variance", {}),
    ("max_sharpe", {}),
    ("efficient_risk", {}),
    ("black_litterman", {}),
    ("sector_cap", {"base": "equal_weight"}),
])
def test_symbols_referenced_includes_the_sectors_keys(name, extra):
    strategy = strategies.create(name, sectors=SECTORS, sector_limits={"equity": 0.6}, **extra)
    assert strategy.symbols_referenced()["sectors"] == ("SPY", "TLT", "XYZ")


def test_sector_cap_symbols_referenced_includes_its_base():
    strategy = strategies.create("sector_cap", sectors={"SPY": "equity"},
                                 sector_limits={"equity": 0.6},
                                 base={"name": "fixed", "params": {"weights": {"GLD": 1.0}}})
    assert strategy.symbols_referenced() == {"base.params.weights": ("GLD",),
                                             "sectors": ("SPY",)}


def test_macro_regime_and_screen_name_their_symbols_for_the_start_up_check():
    """check-config refuses a symbol outside the universe by these key paths (before, the
    first cycle found it); a screen's scores may name any symbol and are not listed."""
    from bot.sample_market.macro import SAMPLE_MACRO_PATH

    regimes = {"growth_up_inflation_up": {"DBC": 1.0},
               "growth_up_inflation_down": {"SPY": 0.6, "XYZ": 0.4},
               "growth_down_inflation_up": {"GLD": 1.0},
               "growth_down_inflation_down": {"TLT": 1.0}}
    macro = strategies.create("macro_regime", macro_file=str(SAMPLE_MACRO_PATH),
                              regime_weights=regimes,
                              base={"name": "fixed", "params": {"weights": {"IEF": 1.0}}})
    named = macro.symbols_referenced()
    assert named["regime_weights.growth_up_inflation_down"] == ("SPY", "XYZ")
    assert named["base.params.weights"] == ("IEF",)
    screen = strategies.create("screen", scores={"SPY": 1.0, "QQQ": 2.0}, min_score=0.5,
                               base={"name": "fixed", "params": {"weights": {"SPY": 1.0}}})
    assert screen.symbols_referenced() == {"base.params.weights": ("SPY",)}
