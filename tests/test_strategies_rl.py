"""``direct_reinforcement``: deterministic, trained on its window only, cost-aware, walk-forward."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import strategies
from bot.backtest.walk_forward import WalkForward, build_learner
from strategies.base import StrategyConfigError
from strategies.direct_reinforcement import build_features, policy_pass, train_policies
from tests.conftest import invoke_cli, random_walk_prices

SYMBOLS = ["SPY", "TLT", "IEF", "GLD"]
SMALL = {"lookback_days": 120, "horizons": [5, 21], "vol_window": 10, "epochs": 8}


@pytest.fixture(scope="module")
def prices():
    return random_walk_prices(SYMBOLS, 400, seed=11)


def test_direct_reinforcement_same_seed_same_weights_other_seed_differs(prices):
    a = strategies.create("direct_reinforcement", seed=1, **SMALL).target_weights(prices)
    b = strategies.create("direct_reinforcement", seed=1, **SMALL).target_weights(prices)
    c = strategies.create("direct_reinforcement", seed=2, **SMALL).target_weights(prices)
    pd.testing.assert_series_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy())
    assert a.sum() == pytest.approx(1.0) and (a >= 0).all()


def test_direct_reinforcement_ensemble_averages_member_policies(prices):
    members = [strategies.create("direct_reinforcement", seed=s, **SMALL).target_weights(prices)
               for s in (4, 5)]
    both = strategies.create("direct_reinforcement", seed=4, ensemble=2, **SMALL)
    pd.testing.assert_series_equal(both.target_weights(prices), (members[0] + members[1]) / 2)


def test_direct_reinforcement_prices_after_t_perturbed_weights_up_to_t_unchanged(prices):
    s = strategies.create("direct_reinforcement", **SMALL)
    t = prices.index[300]
    shaken = prices.copy()
    shaken.loc[shaken.index > t] *= np.linspace(0.5, 2.0, (shaken.index > t).sum())[:, None]
    for day in prices.index[[200, 250, 300]]:
        pd.testing.assert_series_equal(s.target_weights(prices.loc[:day]),
                                       s.target_weights(shaken.loc[:day]))


def test_direct_reinforcement_uses_only_its_training_window(prices):
    s = strategies.create("direct_reinforcement", **SMALL)
    older = prices.copy()
    older.iloc[: -(SMALL["lookback_days"] + 1)] *= 3.0  # before the window: irrelevant
    pd.testing.assert_series_equal(s.target_weights(prices), s.target_weights(older))
    inside = prices.copy()
    inside.iloc[-60:-30] *= 1.2
    assert not s.target_weights(prices).equals(s.target_weights(inside))


def test_train_policies_raises_in_sample_net_sharpe(prices):
    returns = prices.pct_change().iloc[1:].to_numpy()
    cube = build_features(returns, (5, 21), 10)
    seeds = np.arange(3)
    start = train_policies(cube, seeds, 1e-3, 0, 0.05, 0.0)
    trained = train_policies(cube, seeds, 1e-3, 60, 0.05, 0.0)
    before = policy_pass(start, cube, 1e-3, with_grad=False).sharpe
    after = policy_pass(trained, cube, 1e-3, with_grad=False).sharpe
    assert (after > before).all()


def test_policy_pass_gradient_matches_finite_differences(prices):
    returns = prices.pct_change().iloc[1:200].to_numpy()
    cube = build_features(returns, (5, 21), 10)
    theta = np.random.default_rng(0).normal(0, 0.5, (1, 4))
    roll = policy_pass(theta, cube, 2e-3, with_grad=True)
    for j in range(4):
        bumped = theta.copy()
        bumped[0, j] += 1e-6
        up = policy_pass(bumped, cube, 2e-3, with_grad=False).sharpe
        assert (up[0] - roll.sharpe[0]) / 1e-6 == pytest.approx(roll.grad[0, j], rel=1e-3,
                                                               abs=1e-7)


def test_direct_reinforcement_higher_cost_trains_a_steadier_policy(prices):
    returns = prices.pct_change().iloc[1:].to_numpy()
    cube = build_features(returns, (5, 21), 10)

    def turnover(cost: float) -> np.ndarray:
        # 20 epochs: turnover 0.001 against 0.2-0.36 (60 gave 0.0007 against 0.23-0.72)
        theta = train_policies(cube, np.arange(3), cost, 20, 0.05, 0.0)
        return policy_pass(theta, cube, cost, with_grad=False).turnover

    assert (turnover(0.05) < turnover(0.0)).all()


def test_direct_reinforcement_short_window_rejected_naming_key():
    with pytest.raises(StrategyConfigError, match="lookback_days"):
        strategies.create("direct_reinforcement", lookback_days=70)


def test_build_learner_sets_training_window_to_train_days():
    s = build_learner("direct_reinforcement", {"epochs": 5}, WalkForward(300, 63))
    assert s.lookback_days == 300


def test_cli_weights_and_walk_forward_backtest_run_direct_reinforcement(write_config, tmp_path):
    config = write_config({"universe": {"symbols": SYMBOLS},
                           "strategy": {"name": "direct_reinforcement", "params": SMALL},
                           "backtest": {"calendar": "monthly", "tearsheet": False}})
    shown = invoke_cli("weights", "--config", str(config))
    assert shown.exit_code == 0, shown.stderr
    out = tmp_path / "bt"
    run = invoke_cli("backtest", "--config", str(config), "--start", "2020-01-02", "--end",
                     "2020-06-30", "--walk-forward", "252:63", "--out", str(out))
    assert run.exit_code == 0, run.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["walk_forward"]["out_of_sample"]
    assert len(metrics["walk_forward"]["folds"]) >= 2
