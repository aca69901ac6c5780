"""Cost-aware and sector-capped mean-variance: subgradient KKT conditions of the QP on
random, factor-structured and near-singular covariances, and what a user configuring
turnover_penalty / max_turnover / sector_limits sees through the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import strategies
from strategies.base import StrategyConfigError, StrategyError
from strategies.costed_qp import LinearTerms, solve_costed_qp, turnover
from strategies.covariance_repair import factor_covariance
from strategies.qp import solve_qp
from tests.conftest import capture_logs
from tests.test_optimizers import prices_frame

FAMILIES = ("random", "factor", "near_singular", "rank_deficient")
MV_FAMILY = ["min_variance", "mean_variance", "max_sharpe", "efficient_risk", "black_litterman"]
PARAMS = {"efficient_risk": {"target_volatility": 0.2}, "mean_variance": {"risk_aversion": 20.0}}


def covariance(family: str, n: int, seed: int) -> np.ndarray:
    """Annual-scale covariance: random well conditioned, 3 factors + noise, half the
    assets near-copies of the other half, or the sample covariance of 3n/4 days of
    independent returns (the last two singular, then repaired as the estimators do)."""
    rng = np.random.default_rng(seed)
    if family == "rank_deficient":  # fewer days than assets: rank 3n/4 − 1
        returns = rng.normal(0.0, 0.01, (3 * n // 4, n)) * rng.uniform(0.5, 2.0, n)
        return factor_covariance(np.cov(returns.T) * 252)[0]
    if family == "random":
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        return (q * rng.uniform(0.01, 0.04, n)) @ q.T
    loadings = rng.normal(size=(n, 3)) * 0.15
    cov = loadings @ loadings.T + np.diag(rng.uniform(0.01, 0.09, n))
    if family == "factor":
        return cov
    half = n // 2
    copy = np.eye(n)
    copy[half:, :] = 0.0
    copy[half:, : n - half] = np.eye(n - half)
    return factor_covariance(copy @ cov @ copy.T)[0]


def assert_costed_feasible(w: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                           terms: LinearTerms) -> np.ndarray:
    """Budget, bounds, sector caps and the turnover cap hold to 1e-12; returns the sector
    sums (the callers test which caps bind)."""
    assert abs(w.sum() - 1.0) <= 1e-12
    assert (w >= lower - 1e-12).all() and (w <= upper + 1e-12).all()
    sums = np.array([w[terms.sector_of == g].sum() for g in range(len(terms.sector_caps))])
    assert (sums <= terms.sector_caps + 1e-12).all()
    assert turnover(w, terms) <= terms.max_turnover + 1e-12
    return sums


def assert_subgradient_kkt(cov: np.ndarray, lin: np.ndarray, penalty: float, w: np.ndarray,
                           lower: np.ndarray, upper: np.ndarray, terms: LinearTerms,
                           tol: float = 1e-9) -> None:
    """Feasibility, and multipliers ν, ρ ≥ 0 (binding sector caps), η ≥ 0 (binding
    turnover cap) with r = Σw − c + ν + ρ_sector and q = penalty + η such that
    r_i = −q·sign(w_i − a_i) off the kinks and bounds, |r_i| ≤ q at a kink, and the one-sided
    conditions at the bounds: the optimality conditions of a convex problem with an L1 term
    (the subdifferential of |x| at 0 is [−1, 1])."""
    a, near = terms.anchor, 1e-9
    sums = assert_costed_feasible(w, lower, upper, terms)
    g = cov @ w - lin
    at_kink = np.abs(w - a) <= near
    free = (w > lower + near) & (w < upper - near) & ~at_kink
    sign = np.sign(w - a)
    binding = np.flatnonzero(sums >= terms.sector_caps - near)
    capped = terms.has_turnover and turnover(w, terms) >= terms.max_turnover - near
    columns = [np.ones(len(w))] + [(terms.sector_of == k).astype(float) for k in binding]
    if capped:
        columns.append(sign)
    design = np.column_stack(columns)[free]
    assert free.sum() >= design.shape[1], "too few free assets to pin the multipliers"
    mult, *_ = np.linalg.lstsq(design, -(g + penalty * sign)[free], rcond=None)
    nu, rho = mult[0], mult[1:1 + len(binding)]
    eta = mult[-1] if capped else 0.0
    scale = float(np.abs(g).max()) + penalty
    assert (rho >= -tol * scale).all() and eta >= -tol * scale
    r = g + nu
    for k, sector in enumerate(binding):
        r[terms.sector_of == sector] += rho[k]
    q = penalty + eta
    assert np.abs(r[free] + q * sign[free]).max() <= tol * scale
    fixed = ~free
    kink = fixed & at_kink
    assert (np.abs(r[kink]) <= q + tol * scale).all()
    at_lo = fixed & ~kink & (w <= lower + near) & (lower < upper)
    at_hi = fixed & ~kink & (w >= upper - near) & (lower < upper)
    up_sign = np.where(a <= lower, 1.0, -1.0)
    down_sign = np.where(a >= upper, -1.0, 1.0)
    assert (r[at_lo] + q * up_sign[at_lo] >= -tol * scale).all()
    assert (r[at_hi] + q * down_sign[at_hi] <= tol * scale).all()


def problem(family: str, seed: int, n: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 + seed)
    cov = covariance(family, n, seed)
    mu = rng.uniform(-0.02, 0.15, n)
    current = rng.dirichlet(np.ones(n)) * rng.uniform(0.85, 1.0)
    return cov, mu, current


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("penalty", [0.0005, 0.005, 0.05])
def test_solve_costed_qp_penalty_satisfies_subgradient_kkt(family: str, seed: int,
                                                           penalty: float) -> None:
    cov, mu, current = problem(family, seed)
    n = len(mu)
    lower, upper = np.zeros(n), np.full(n, 0.25)
    terms = LinearTerms(current, np.full(n, -1), np.zeros(0))
    w = solve_costed_qp(cov, mu / 2.5, penalty, lower, upper, terms).weights
    assert_subgradient_kkt(cov, mu / 2.5, penalty, w, lower, upper, terms)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", range(4))
def test_solve_costed_qp_caps_and_turnover_satisfy_kkt_and_bind(family: str,
                                                                seed: int) -> None:
    cov, mu, current = problem(family, seed)
    n = len(mu)
    lower, upper = np.zeros(n), np.full(n, 0.3)
    sector_of = np.arange(n) % 4 - 1  # a quarter uncapped, three sectors
    caps = np.array([0.3, 0.3, 0.35])
    free_run = solve_costed_qp(cov, mu / 2.5, 0.001, lower, upper,
                               LinearTerms(current, sector_of, caps))
    tau = 0.5 * turnover(free_run.weights, LinearTerms(current, sector_of, caps))
    terms = LinearTerms(current, sector_of, caps, tau)
    w = solve_costed_qp(cov, mu / 2.5, 0.001, lower, upper, terms).weights
    assert_subgradient_kkt(cov, mu / 2.5, 0.001, w, lower, upper, terms)
    assert turnover(w, terms) == pytest.approx(tau, abs=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_solve_costed_qp_zero_penalty_no_caps_matches_box_solver(family: str) -> None:
    cov, mu, current = problem(family, 7)
    n = len(mu)
    lower, upper = np.zeros(n), np.full(n, 0.3)
    w = solve_costed_qp(cov, mu / 2.5, 0.0, lower, upper,
                        LinearTerms(current, np.full(n, -1), np.zeros(0))).weights
    ref = solve_qp(cov, mu / 2.5, lower, upper).weights
    np.testing.assert_allclose(w, ref, atol=1e-10)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("lam", [0.0, 0.5, 5.0])
def test_solve_qp_families_satisfy_kkt(family: str, lam: float) -> None:
    """The box QP on well-conditioned, factor and near-singular (repaired) covariances."""
    cov, mu, _ = problem(family, 11, n=60)
    n = len(mu)
    lower, upper = np.zeros(n), np.full(n, 0.3)
    w = solve_qp(cov, lam * mu, lower, upper).weights
    terms = LinearTerms(np.full(n, 10.0), np.full(n, -1), np.zeros(0))  # kinks out of reach
    assert_subgradient_kkt(cov, lam * mu, 0.0, w, lower, upper, terms)


# ---- through the registry ---------------------------------------------------------------




def build(name: str, **params: object) -> strategies.Strategy:
    return strategies.create(name, **{**PARAMS.get(name, {}), **params})


CURRENT = pd.Series([0.3, 0.2, 0.2, 0.1, 0.1, 0.1], index=[f"S{i}" for i in range(6)])


@pytest.mark.parametrize("name", MV_FAMILY)
def test_optimizer_zero_turnover_penalty_identical_to_cost_free(name: str) -> None:
    prices = prices_frame()
    before = build(name).target_weights(prices)
    after = build(name, turnover_penalty=0.0).target_weights(prices, CURRENT)
    pd.testing.assert_series_equal(before, after, rtol=0, atol=0)


@pytest.mark.parametrize("name", MV_FAMILY)
def test_optimizer_large_turnover_penalty_keeps_current_weights(name: str) -> None:
    prices = prices_frame()
    assert not np.allclose(build(name).target_weights(prices), CURRENT, atol=1e-3)
    w = build(name, turnover_penalty=10.0).target_weights(prices, CURRENT)
    np.testing.assert_allclose(w.to_numpy(), CURRENT.to_numpy(), atol=1e-12)


@pytest.mark.parametrize("name", MV_FAMILY)
def test_optimizer_penalty_without_current_weights_is_cost_free(name: str) -> None:
    prices = prices_frame()
    pd.testing.assert_series_equal(build(name).target_weights(prices),
                                   build(name, turnover_penalty=1.0).target_weights(prices),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("name", MV_FAMILY)
def test_optimizer_small_penalty_trades_less_than_cost_free(name: str) -> None:
    prices = prices_frame()
    free = build(name).target_weights(prices)
    costed = build(name, turnover_penalty=0.002).target_weights(prices, CURRENT)
    assert np.abs(costed - CURRENT).sum() <= np.abs(free - CURRENT).sum() + 1e-12
    assert costed.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", MV_FAMILY)
def test_optimizer_max_turnover_binds_exactly(name: str) -> None:
    prices = prices_frame()
    free = build(name).target_weights(prices)
    tau = 0.5 * float(np.abs(free - CURRENT).sum())
    w = build(name, max_turnover=tau).target_weights(prices, CURRENT)
    assert float(np.abs(w - CURRENT).sum()) == pytest.approx(tau, abs=1e-12)
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w >= 0).all()


@pytest.mark.parametrize("name", MV_FAMILY)
def test_optimizer_sector_limit_binds_exactly(name: str) -> None:
    prices = prices_frame()
    free = build(name).target_weights(prices)
    top = free.sort_values(ascending=False).index[:2]
    cap = 0.5 * float(free[top].sum())
    sectors = {str(top[0]): "equity", str(top[1]): "equity", "S5": "bonds"}
    w = build(name, sectors=sectors, sector_limits={"equity": cap}).target_weights(prices)
    assert float(w[top].sum()) == pytest.approx(cap, abs=1e-12)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)


def test_optimizer_sector_limit_unknown_sector_names_key() -> None:
    with pytest.raises(StrategyConfigError, match=r"sector_limits\.tech"):
        build("min_variance", sectors={"S0": "equity"}, sector_limits={"tech": 0.5})


def test_optimizer_sector_limits_without_sectors_config_error() -> None:
    with pytest.raises(StrategyConfigError, match="sector_limits needs sectors"):
        build("max_sharpe", sector_limits={"equity": 0.5})


def test_optimizer_sectors_unpriced_symbol_names_key() -> None:
    strategy = build("mean_variance", sectors={"QQQ": "equity"}, sector_limits={"equity": 0.5})
    with pytest.raises(StrategyConfigError, match=r"sectors\.QQQ"):
        strategy.target_weights(prices_frame())


def test_optimizer_infeasible_sector_limits_strategy_error() -> None:
    sectors = {f"S{i}": "equity" for i in range(6)}
    strategy = build("min_variance", sectors=sectors, sector_limits={"equity": 0.6})
    with pytest.raises(StrategyError, match=r"sector_limits infeasible.*at most 0\.6"):
        strategy.target_weights(prices_frame())


@pytest.mark.parametrize("params, key", [({"turnover_penalty": -0.1}, "turnover_penalty"),
                                         ({"max_turnover": -1}, "max_turnover"),
                                         ({"turnover_penalty": "x"}, "turnover_penalty")])
def test_optimizer_bad_cost_params_name_key(params: dict[str, object], key: str) -> None:
    with pytest.raises(StrategyConfigError, match=key):
        build("black_litterman", **params)


@pytest.mark.parametrize("name", MV_FAMILY)
@pytest.mark.parametrize("tau", [0.0, 1e-7, 2e-6, 0.01, 0.05])
@pytest.mark.parametrize("cash", [0.0, 0.03])
def test_optimizer_forced_sale_and_cash_above_max_turnover_invested_cap_bounds_the_rest(
        name: str, tau: float, cash: float) -> None:
    """A held symbol the strategy cannot hold (S1, without usable history) is sold even
    when max_turnover is below its weight, and the proceeds and the account's cash are
    invested: the cap bounds only the trading beyond that (it once stalled every cycle
    instead, and with cash a cap between 1e-6 and the cash failed)."""
    prices = prices_frame()
    prices.iloc[:-30, 1] = np.nan  # S1 is held but lacks history: it must be sold
    current = CURRENT * (1.0 - cash)
    w = build(name, lookback_days=100, max_turnover=tau).target_weights(prices, current)
    assert w.get("S1", 0.0) == 0.0
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w >= 0).all()
    usable = current.drop("S1")
    moved = float(np.abs(w.reindex(usable.index, fill_value=0.0) - usable).sum())
    uninvested = 1.0 - float(usable.sum())
    assert uninvested - 1e-12 <= moved <= uninvested + tau + 1e-12
    if tau == 0.0:  # nothing but investing it: each usable weight only grows
        assert (w.reindex(usable.index, fill_value=0.0) >= usable - 1e-12).all()


@pytest.mark.parametrize("name", MV_FAMILY)
def test_optimizer_cash_above_max_turnover_is_invested(name: str) -> None:
    """A fifth of the account in cash (a deposit, or what a VaR limit kept) and
    max_turnover 0.05: the cash is invested and at most 0.05 more traded (it was "below the
    least turnover" on every cycle)."""
    current = CURRENT * 0.8
    w = build(name, max_turnover=0.05).target_weights(prices_frame(), current)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert 0.2 - 1e-12 <= float(np.abs(w - current).sum()) <= 0.25 + 1e-12


@pytest.mark.parametrize("name", MV_FAMILY)
@pytest.mark.parametrize("tau", [1e-9, 1e-7])
def test_optimizer_negligible_max_turnover_stays_within_it(name: str, tau: float) -> None:
    """A cap of a sliver of equity: max_sharpe and efficient_risk once failed ("efficient-
    frontier search did not converge")."""
    w = build(name, max_turnover=tau).target_weights(prices_frame(), CURRENT)
    assert float(np.abs(w - CURRENT).sum()) <= tau + 1e-12


def test_optimizer_zero_max_turnover_with_a_holding_above_its_bound_says_what_it_needs(
        ) -> None:
    prices = prices_frame()
    prices.iloc[:-30, 1] = np.nan  # S1 is held but lacks history: it must be sold
    strategy = build("max_sharpe", lookback_days=100, max_turnover=0.0,
                     bounds={"S0": [0.0, 0.2]})  # S0 is held at 0.3
    with pytest.raises(StrategyError, match=r"max_turnover 0 is below the 0\.2 of trading .* "
                       r"\(beyond investing the 0\.2 of equity they do not hold"):
        strategy.target_weights(prices, CURRENT)


def test_max_sharpe_with_costs_beats_every_costed_frontier_point() -> None:
    """The net-of-cost max Sharpe portfolio is at least as good as every point of the
    net-of-cost frontier (each solved directly as a penalized QP)."""
    prices = prices_frame(n_assets=8, seed=5)
    current = pd.Series(1 / 8, index=prices.columns)
    kappa = 0.01
    strategy = build("max_sharpe", turnover_penalty=kappa, lookback_days=252)
    w = strategy.target_weights(prices, current).to_numpy()
    est = strategy.settings.estimate(prices)
    terms = LinearTerms(current.to_numpy(), np.full(8, -1), np.zeros(0))

    def net_sharpe(x: np.ndarray) -> float:
        return (est.mu @ x - kappa * np.abs(x - current.to_numpy()).sum()) / np.sqrt(
            x @ est.cov @ x)

    best = max(net_sharpe(solve_costed_qp(est.cov, lam * est.mu, lam * kappa, np.zeros(8),
                                          np.ones(8), terms).weights)
               for lam in np.geomspace(1e-3, 1e2, 200))
    assert net_sharpe(w) >= best - 1e-9


@pytest.mark.parametrize("name", MV_FAMILY)
def test_optimizer_zero_max_turnover_holds_current_weights(name: str) -> None:
    w = build(name, max_turnover=0.0).target_weights(prices_frame(), CURRENT)
    np.testing.assert_allclose(w.to_numpy(), CURRENT.to_numpy(), atol=1e-12)


@pytest.mark.parametrize("kappa", [0.0, 0.01])
def test_efficient_risk_out_of_reach_within_max_turnover_takes_least_risk_within_it(
        kappa: float) -> None:
    """Holdings far riskier than target_volatility and a max_turnover too small to reach it
    in one cycle: the least risk within the cap (the costed minimum-variance portfolio),
    with a warning, so the bot de-risks at the allowed rate. It once raised "below the
    minimum achievable volatility" on every such cycle (3,987 of 4,027 backtest cycles
    held, never de-risking)."""
    prices, tau = prices_frame(), 0.2
    est = build("min_variance").settings.estimate(prices)
    current = pd.Series(0.0, index=prices.columns)
    current.iloc[int(np.argmax(np.diag(est.cov)))] = 1.0  # all in the riskiest asset

    def vol(w: pd.Series) -> float:
        x = w.reindex(prices.columns).to_numpy()
        return float(np.sqrt(x @ est.cov @ x))

    free_floor = vol(build("min_variance").target_weights(prices))
    least_within = build("min_variance", max_turnover=tau).target_weights(prices, current)
    target = 0.5 * (free_floor + vol(least_within))
    assert free_floor < target < vol(least_within)  # reachable, but not within the cap
    strategy = build("efficient_risk", target_volatility=target, max_turnover=tau,
                     turnover_penalty=kappa)
    with capture_logs() as events:
        w = strategy.target_weights(prices, current)
    assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w >= 0).all()
    assert float(np.abs(w - current).sum()) <= tau + 1e-12
    assert vol(w) < vol(current) - 1e-3
    assert vol(w) == pytest.approx(vol(least_within), abs=1e-9)
    warned = [e for e in events if e["event"] == "target_volatility_out_of_reach_within_turnover_cap"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert warned[0]["target_volatility"] == target and warned[0]["max_turnover"] == pytest.approx(tau)
    assert warned[0]["reachable_volatility"] == pytest.approx(vol(least_within), abs=1e-9)


@pytest.mark.parametrize("params", [{"max_turnover": 0.2}, {"turnover_penalty": 0.01},
                                    {"max_turnover": 0.2, "turnover_penalty": 0.01}])
def test_efficient_risk_target_below_uncapped_min_volatility_still_raises(
        params: dict[str, object]) -> None:
    """A target below the minimum volatility even without the cap: the data do not allow
    it, so still the error, naming that minimum (not the higher one within the cap)."""
    prices = prices_frame()
    est = build("min_variance").settings.estimate(prices)
    floor = build("min_variance").target_weights(prices).to_numpy()
    floor_vol = float(np.sqrt(floor @ est.cov @ floor))
    current = pd.Series(0.0, index=prices.columns)
    current.iloc[int(np.argmax(np.diag(est.cov)))] = 1.0
    strategy = build("efficient_risk", target_volatility=0.9 * floor_vol, **params)
    with pytest.raises(StrategyError, match=f"minimum achievable volatility {floor_vol:.4g} "):
        strategy.target_weights(prices, current)


def test_efficient_risk_turnover_penalty_alone_keeps_the_minimum_volatility() -> None:
    """turnover_penalty without a cap leaves the feasible set as it is: a target just above
    the cost-free minimum volatility is met from far riskier holdings (no error)."""
    prices = prices_frame()
    est = build("min_variance").settings.estimate(prices)
    floor = build("min_variance").target_weights(prices).to_numpy()
    target = 1.01 * float(np.sqrt(floor @ est.cov @ floor))
    current = pd.Series(0.0, index=prices.columns)
    current.iloc[int(np.argmax(np.diag(est.cov)))] = 1.0
    w = build("efficient_risk", target_volatility=target,
              turnover_penalty=0.01).target_weights(prices, current).to_numpy()
    assert float(np.sqrt(w @ est.cov @ w)) == pytest.approx(target, rel=1e-9)
