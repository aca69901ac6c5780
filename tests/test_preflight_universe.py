"""Strategy parameters that can never work with the configured universe, which
``check-config`` (and ``run``/``once``, the same preflight) used to accept while every cycle
then held: bounds no fully invested portfolio satisfies, a momentum ``k`` above the number
of symbols, an estimator strategy on a one-symbol universe. Each is now refused up front:
exit 2, one line naming the key, nothing created. The universe counted is the one the
strategy sees: ``[universe].symbols`` less ``[universe].exclude``. Commands run in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import strategies
from brokers.prices import load_price_csv
from strategies import StrategyError
from tests.conftest import SAMPLE_PRICES, one_line_error, run_cli_in_process

# The conftest's base config: five symbols, a sim broker on the bundled sample.
UNIVERSE = ["SPY", "TLT", "IEF", "GLD", "DBC"]


def check_config(config: Path) -> Any:
    return run_cli_in_process("check-config", "--config", str(config))


def one_problem(proc: Any) -> str:
    """The command's single stderr line (``one_line_error``) reporting one problem: the
    configs below are valid but for the one under test."""
    line = one_line_error(proc)
    assert "1 problem(s): " in line, line
    return line


def passes(proc: Any) -> None:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


def strategy(name: str, **params: Any) -> dict[str, dict[str, Any]]:
    return {"strategy": {"name": name, "params": params or None}}


# ---- 1. bounds of the mean-variance family ------------------------------------------------

@pytest.mark.parametrize("name,bounds,feasible,reason", [
    ("min_variance", [0, 0.1], [0, 0.2],
     "the upper bounds sum to 0.5 over 5 assets, below the full-investment constraint"),
    ("efficient_risk", [0, 0.15], [0, 0.25], "the upper bounds sum to 0.75 over 5 assets"),
    ("max_sharpe", [0.25, 1], [0.2, 1],
     "the lower bounds sum to 1.25 over 5 assets, above the full-investment constraint"),
    ("mean_variance", {"SPY": [0.6, 1], "TLT": [0.6, 1]}, {"SPY": [0.6, 1], "TLT": [0.4, 1]},
     "the lower bounds sum to 1.2 over 5 assets"),
    ("black_litterman", {"SPY": [0.6, 1], "TLT": [0.6, 1]}, [0, 0.2],
     "the lower bounds sum to 1.2 over 5 assets"),
])
def test_check_config_refuses_bounds_no_fully_invested_portfolio_satisfies(
        write_config, name, bounds, feasible, reason):
    """It used to pass (exit 0); every cycle then held on the same check at run time."""
    line = one_problem(check_config(write_config(strategy(name, bounds=bounds))))
    assert f"[strategy.params].bounds: bounds infeasible: {reason}" in line
    passes(check_config(write_config(strategy(name, bounds=feasible))))


def test_the_bounds_message_is_the_run_times(write_config):
    """One rule, one wording: check-config says what every cycle would have logged."""
    built = strategies.create("min_variance", bounds=[0, 0.1], lookback_days=60)
    prices = load_price_csv(SAMPLE_PRICES)[UNIVERSE].iloc[:300]
    with pytest.raises(StrategyError) as run_time:
        built.target_weights(prices)
    line = one_problem(check_config(write_config(strategy("min_variance",
                                                             bounds=[0, 0.1]))))
    assert f"[strategy.params].bounds: {run_time.value}" in line


def test_bounds_count_the_universe_less_its_exclusions(write_config):
    """Five symbols at most 0.25 each can be fully invested; the three the strategy sees
    once two are excluded cannot."""
    params = strategy("min_variance", bounds=[0, 0.25])
    passes(check_config(write_config(params)))
    config = write_config({**params, "universe": {"symbols": UNIVERSE,
                                                  "exclude": ["GLD", "DBC"]}})
    line = one_problem(check_config(config))
    assert "[strategy.params].bounds: bounds infeasible: the upper bounds sum to 0.75 over 3 " \
           "assets" in line


# ---- 2. momentum's k --------------------------------------------------------------------

def test_check_config_refuses_a_momentum_k_above_the_universe(write_config):
    line = one_problem(check_config(write_config(strategy("momentum", lookback=126, k=6))))
    assert "[strategy.params].k: 6 assets to hold" in line
    assert "has 5" in line and "set k to at most 5" in line
    passes(check_config(write_config(strategy("momentum", lookback=126, k=5))))
    config = write_config({**strategy("momentum", lookback=126, k=5),
                           "universe": {"symbols": UNIVERSE, "exclude": ["DBC"]}})
    assert "set k to at most 4" in one_problem(check_config(config))


def test_once_refuses_it_before_opening_anything_and_runs_a_valid_k(write_config, tmp_path):
    """``once`` runs the same preflight: exit 2 (not a held cycle, exit 0), no state; with
    a k the universe can hold the cycle runs as before."""
    line = one_problem(run_cli_in_process("once", "--config",
                                             str(write_config(strategy("momentum", lookback=126, k=6)))))
    assert "[strategy.params].k:" in line
    assert not (tmp_path / "state" / "allocbot.sqlite").exists()
    proc = run_cli_in_process("once", "--config", str(write_config(strategy("momentum", lookback=126, k=5))))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert (tmp_path / "state" / "allocbot.sqlite").exists()


# ---- nested strategies and the fallback: the nested key --------------------------------

@pytest.mark.parametrize("overrides,key", [
    (strategy("core_satellite", core="equal_weight",
              satellite={"name": "momentum", "params": {"k": 9, "lookback": 126}}),
     "[strategy.params].satellite.params.k: 9 assets to hold"),
    (strategy("sector_cap", base={"name": "min_variance", "params": {"bounds": [0, 0.1]}},
              sectors={"SPY": "equity"}, sector_limits={"equity": 0.5}),
     "[strategy.params].base.params.bounds: bounds infeasible"),
    (strategy("vol_target", base={"name": "trend_filter", "params": {
        "base": {"name": "momentum", "params": {"k": 7, "lookback": 126}}}}),
     "[strategy.params].base.params.base.params.k: 7 assets to hold"),
    (strategy("screen", base={"name": "momentum", "params": {"k": 6, "lookback": 126}},
              scores={"SPY": 1.0, "TLT": 0.5}, top_fraction=0.5, unscored="exclude"),
     "[strategy.params].base.params.k: 6 assets to hold"),
    (strategy("regime_kmeans", lookback_days=200,
              regime_strategy={"name": "max_sharpe", "params": {"bounds": [0.3, 1]}}),
     "[strategy.params].regime_strategy.params.bounds: bounds infeasible"),
    ({"strategy": {"name": "fixed", "params": {"preset": "all_weather"},
                   "fallback": {"name": "min_variance", "params": {"bounds": [0.25, 1]}}}},
     "[strategy].fallback.params.bounds: bounds infeasible: the lower bounds sum to 1.25"),
])
def test_a_nested_strategy_or_the_fallback_is_refused_under_its_own_key(write_config,
                                                                        overrides, key):
    line = one_problem(check_config(write_config(overrides)))
    assert key in line


def test_an_unused_nested_base_is_not_checked(write_config):
    """macro_regime runs its base only when tilt < 1."""
    base = {"name": "momentum", "params": {"k": 9, "lookback": 126}}
    params = {"macro_file": str(SAMPLE_PRICES.parent / "sample_macro.csv"), "base": base}
    passes(check_config(write_config(strategy("macro_regime", **params, tilt=1.0))))
    line = one_problem(check_config(write_config(strategy("macro_regime", **params,
                                                             tilt=0.5))))
    assert "[strategy.params].base.params.k: 9 assets to hold" in line


# ---- 3. a one-symbol universe ----------------------------------------------------------

ONE_SYMBOL = {"universe": {"symbols": ["SPY"]},
              "sim": {"replay_start": None}}  # (the default start fits any warm-up)
NEEDS_TWO = "needs at least 2 symbols in the universe it sees ([universe].symbols less " \
            "[universe].exclude) to estimate from their returns, and it has 1 (SPY)"


@pytest.mark.parametrize("name,params", [
    ("min_variance", {}), ("mean_variance", {}), ("max_sharpe", {}), ("efficient_risk", {}),
    ("black_litterman", {}), ("risk_parity", {}), ("hrp", {}), ("momentum", {"k": 1, "lookback": 126}),
    ("vol_target", {"base": {"name": "fixed", "params": {"weights": {"SPY": 1.0}}}}),
    ("regime_kmeans", {"lookback_days": 200, "regime_weights": [{"SPY": 1.0}, {"SPY": 0.5}]}),
    ("inverse_volatility", {}), ("ml_regression", {}), ("direct_reinforcement", {}),
])
def test_an_estimator_strategy_on_one_symbol_is_refused(write_config, name, params):
    """It used to pass; every cycle then held with "fewer than 2 assets with full history
    ... ['SPY']", though SPY had all its history."""
    line = one_problem(check_config(write_config({**ONE_SYMBOL, **strategy(name, **params)})))
    assert f"[strategy].name: strategy {name!r} {NEEDS_TWO}" in line


def test_one_symbol_names_the_fallback_or_the_nested_spot_and_spares_single_asset_strategies(
        write_config):
    """fixed, equal_weight, trend_filter and mean_reversion hold one asset as before."""
    for name, params in [("fixed", {"weights": {"SPY": 1.0}}), ("equal_weight", {}),
                         ("trend_filter", {"base": "equal_weight"}), ("mean_reversion", {})]:
        passes(check_config(write_config({**ONE_SYMBOL, **strategy(name, **params)})))
    config = write_config({**ONE_SYMBOL, "strategy": {"name": "equal_weight", "params": None,
                                                      "fallback": "risk_parity"}})
    assert f"[strategy].fallback: strategy 'risk_parity' {NEEDS_TWO}" in one_line_error(
        check_config(config))
    config = write_config({**ONE_SYMBOL, **strategy("core_satellite", core="equal_weight",
                                                    satellite="min_variance")})
    assert f"[strategy.params].satellite: strategy 'min_variance' {NEEDS_TWO}" in \
        one_problem(check_config(config))
    config = write_config({"universe": {"symbols": ["SPY", "TLT"], "exclude": ["TLT"]},
                           **strategy("hrp")})
    assert f"[strategy].name: strategy 'hrp' {NEEDS_TWO}" in one_problem(check_config(config))
