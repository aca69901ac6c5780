"""The Gymnasium environment: check_env, and the backtest's own equity path and timing."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import strategies
from bot.backtest.engine import BacktestInputError, BacktestSpec, run_backtest
from bot.backtest.gym_env import PortfolioEnv, project_to_simplex
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.engine.cycle import CycleSettings
from brokers.prices import load_price_csv
from brokers.sim.pricing import SimCosts
from tests.conftest import SAMPLE_PRICES, random_walk_prices

UNIVERSE = ("SPY", "TLT", "IEF", "GLD", "DBC")
FIXED = {"SPY": 0.25, "TLT": 0.25, "IEF": 0.25, "GLD": 0.125, "DBC": 0.125}


def spec_for(start: date, end: date, **kw) -> BacktestSpec:
    settings = CycleSettings(mode="paper", universe=UNIVERSE, order_prefix="gym",
                             order_wait_secs=1.0, policy=RebalancePolicy(cost_bps_estimate=5.0),
                             limits=RiskLimits(lookback_days=60))
    return BacktestSpec(settings, calendar="daily", costs=SimCosts(1.0, 0.5, 2.0),
                        start=start, end=end, **kw)


@pytest.fixture(scope="module")
def sample():
    return load_price_csv(SAMPLE_PRICES)


def run_episode(env: PortfolioEnv, weights: np.ndarray) -> tuple[list[float], list[dict]]:
    env.reset(seed=0)
    rewards, infos, done = [], [], False
    while not done:
        _, reward, done, truncated, info = env.step(weights)
        assert not truncated
        rewards.append(reward)
        infos.append(info)
    return rewards, infos


def test_portfolio_env_passes_gymnasium_check_env(sample):
    env = PortfolioEnv(sample, spec_for(date(2012, 1, 3), date(2012, 3, 30)))
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("fractional", [True, False])
def test_portfolio_env_fixed_weights_equity_path_equals_daily_backtest(sample, fractional):
    spec = spec_for(date(2011, 1, 3), date(2011, 3, 31), fractional=fractional)
    weights = np.array([FIXED[s] for s in UNIVERSE])
    rewards, infos = run_episode(PortfolioEnv(sample, spec), weights)
    result = run_backtest(sample, strategies.create("fixed", weights=FIXED), spec)
    env_path = np.array([i["equity_after_trades"] for i in infos])
    assert [i["date"] for i in infos] == [str(d.date()) for d in result.dates[:-1]]
    np.testing.assert_allclose(env_path, result.equity[:-1], rtol=1e-9, atol=0)
    assert sum(i["commission"] for i in infos) > 0  # costs were charged, the same way
    # rewards compound to the equity of the last day before its trade
    assert np.exp(np.sum(rewards)) * spec.starting_cash == pytest.approx(infos[-1]["equity"],
                                                                          rel=1e-12)


def test_portfolio_env_prices_after_t_perturbed_observation_and_reward_to_t_unchanged():
    prices = random_walk_prices(list(UNIVERSE), 200, seed=5)
    t = 150
    shaken = prices.copy()
    shaken.iloc[t + 2:] *= 1.3  # closes after t+1 (the reward of step t uses t+1)
    spec = spec_for(prices.index[100].date(), prices.index[-1].date())
    weights = np.array([0.5, 0.1, 0.1, 0.2, 0.1])
    steps = t - 100 + 1
    a, b = PortfolioEnv(prices, spec), PortfolioEnv(shaken, spec)
    obs_a, _ = a.reset(seed=0)
    obs_b, _ = b.reset(seed=0)
    for _ in range(steps):
        np.testing.assert_array_equal(obs_a, obs_b)
        obs_a, reward_a, *_ = a.step(weights)
        obs_b, reward_b, *_ = b.step(weights)
        assert reward_a == reward_b
    _, reward_a, *_ = a.step(weights)
    _, reward_b, *_ = b.step(weights)
    assert reward_a != reward_b


def test_portfolio_env_reward_is_log_of_next_close_equity_over_equity_before_trades(sample):
    env = PortfolioEnv(sample, spec_for(date(2013, 1, 2), date(2013, 2, 28)))
    _, info0 = env.reset(seed=1)
    _, reward, _, _, info = env.step(np.array([1.0, 0, 0, 0, 0]))
    assert reward == pytest.approx(np.log(info["equity"] / info0["equity"]), rel=1e-12)
    assert info["equity_after_trades"] < info0["equity"]  # slippage and commission paid at t


@pytest.mark.parametrize("action,expected", [
    ([0.0, 0.0, 0.0, 0.0, 0.0], [0.2] * 5),
    ([1.0, 1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0, 0, 0]),
    ([-1.0, 3.0, 1.0, 0.0, 0.0], [0, 0.75, 0.25, 0, 0]),
])
def test_project_to_simplex_clips_and_normalizes(action, expected):
    np.testing.assert_allclose(project_to_simplex(np.array(action)), expected)


def test_portfolio_env_universe_symbol_without_prices_raises_naming_it(sample):
    with pytest.raises(BacktestInputError, match="SPY"):
        PortfolioEnv(sample.drop(columns="SPY"), spec_for(date(2012, 1, 3), date(2012, 3, 30)))
