"""``direct_reinforcement``: a softmax policy trained on its own net-of-cost Sharpe ratio.

Moody & Saffell (2001), "Learning to trade via direct reinforcement", IEEE Trans. Neural
Networks 12(4): the trading rule is a differentiable function of features known at the
decision time and of its own previous output F_{t−1}; its parameters are learned by
gradient ascent on a performance measure of the returns it would have earned, net of
transaction costs, with the recurrent gradient dF_t/dθ = ∂F_t/∂θ + ∂F_t/∂F_{t−1}·dF_{t−1}/dθ
carried forward in time. Here the rule is a long-only portfolio:

    s_{t,i} = θ · f_{t,i},      w_t = softmax(s_t)    (fully invested, no short, no cash)

with per-asset features f_{t,i} (shared θ, so the policy ranks any universe):
``log(P_t/P_{t−h}) / (σ_{t,i}·√h)`` for each horizon h in ``horizons`` (risk-scaled
trailing returns), ``log σ_{t,i} − mean_j log σ_{t,j}`` (σ: std of the last
``vol_window`` daily returns) and ``n·w_{t−1,i} − 1`` (the policy's own previous weight).
The objective is the Sharpe ratio S = A/√(B − A²) of the net daily returns over the
training window, A = mean R, B = mean R², with

    R_{t+1} = w_t · r_{t+1} − c·Σ_i |w_{t,i} − w_{t−1,i}|,   c = cost_bps / 1e4

(r: simple daily returns; weights decided at the close of t are held to t+1), minus
``l2``·|θ|²/2, maximized with Adam (Kingma & Ba 2015) for ``epochs`` full passes,
keeping the best θ visited.

The fit uses only the ``lookback_days`` returns ending at the as-of date (under
``--walk-forward`` that is the training window: ``build_learner`` sets ``lookback_days``
to TRAIN); the targets are the trained policy's weights on the as-of date, rolled over
the window. The previous-weight input is the policy's own previous output, not the
account's, so the daemon and the backtest compute the same targets from the same prices.
It refits on every call: use it with a monthly (or coarser) rebalance/signal schedule or
``--walk-forward``. Deterministic: the initial θ comes from ``numpy.random.default_rng``
seeded with ``seed``; ``ensemble`` > 1 averages the weights of policies seeded
``seed, seed+1, ...`` (trained together, vectorized).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from strategies.base import (
    ESTIMATION_MIN_SYMBOLS,
    Strategy,
    StrategyConfigError,
    StrategyError,
    check_float,
    check_int,
    finalize_weights,
    register,
)
from strategies.estimators import simple_returns

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
INIT_SCALE = 0.1  # sd of the initial θ
VARIANCE_FLOOR = 1e-18  # of the daily net returns, so a flat policy has a finite gradient


@dataclass(frozen=True, slots=True)
class FeatureCube:
    """Per-day, per-asset features (days × assets × k) and the next day's simple returns
    (days × assets; the last day's row is NaN: the as-of date has no next day yet)."""

    features: np.ndarray
    next_returns: np.ndarray


def build_features(returns: np.ndarray, horizons: tuple[int, ...], vol_window: int
                   ) -> FeatureCube:
    """Features for days ``max(horizons, vol_window)`` … T of a (T × n) simple-return array
    (row t = return from close t−1 to close t); day rows align with ``next_returns``."""
    logr = np.log1p(returns)
    cum = np.vstack([np.zeros(returns.shape[1]), np.cumsum(logr, axis=0)])
    cum2 = np.vstack([np.zeros(returns.shape[1]), np.cumsum(returns**2, axis=0)])
    cum1 = np.vstack([np.zeros(returns.shape[1]), np.cumsum(returns, axis=0)])
    first = max(max(horizons), vol_window)
    ends = np.arange(first, returns.shape[0] + 1)  # cum index of each feature day
    mean = (cum1[ends] - cum1[ends - vol_window]) / vol_window
    var = (cum2[ends] - cum2[ends - vol_window]) / vol_window - mean**2
    sigma = np.sqrt(np.maximum(var * vol_window / (vol_window - 1), 1e-16))
    cols = [(cum[ends] - cum[ends - h]) / (sigma * np.sqrt(h)) for h in horizons]
    log_sigma = np.log(sigma)
    cols.append(log_sigma - log_sigma.mean(axis=1, keepdims=True))
    nxt = np.full((len(ends), returns.shape[1]), np.nan)
    nxt[:-1] = returns[ends[:-1]]
    return FeatureCube(np.stack(cols, axis=2), nxt)


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass(frozen=True, slots=True)
class PolicyPass:
    """One roll of the policies over a window: the as-of weights (seeds × n), the net
    daily Sharpe, its gradient dS/dθ (seeds × p; zeros without ``with_grad``) and the
    mean daily turnover Σ|Δw| per seed."""

    last_weights: np.ndarray
    sharpe: np.ndarray
    grad: np.ndarray
    turnover: np.ndarray


def policy_pass(theta: np.ndarray, cube: FeatureCube, cost: float, with_grad: bool
                ) -> PolicyPass:
    """Roll the policies θ (seeds × p) over the cube, carrying the forward-mode recurrent
    gradient (Moody & Saffell) when ``with_grad``."""
    seeds, p = theta.shape
    days, n, k = cube.features.shape
    w_prev = np.full((seeds, n), 1.0 / n)
    jac_prev = np.zeros((seeds, n, p))
    sum_r = np.zeros(seeds)
    sum_r2 = np.zeros(seeds)
    g1 = np.zeros((seeds, p))
    g2 = np.zeros((seeds, p))
    traded = np.zeros(seeds)
    theta_x, theta_w = theta[:, :k], theta[:, k]
    for t in range(days):
        f = cube.features[t]
        prev_feature = n * w_prev - 1.0
        w = _softmax(theta_x @ f.T + theta_w[:, None] * prev_feature)
        if with_grad:
            ds = np.empty((seeds, n, p))
            ds[:, :, :k] = f
            ds[:, :, k] = prev_feature
            ds += (theta_w * n)[:, None, None] * jac_prev
            jac = w[:, :, None] * (ds - np.einsum("sn,snp->sp", w, ds)[:, None, :])
        if t == days - 1:
            w_prev = w
            break
        r_next = cube.next_returns[t]
        trade = w - w_prev
        turnover = np.abs(trade).sum(axis=1)
        traded += turnover
        net = w @ r_next - cost * turnover
        sum_r += net
        sum_r2 += net * net
        if with_grad:
            g = np.einsum("n,snp->sp", r_next, jac) \
                - cost * np.einsum("sn,snp->sp", np.sign(trade), jac - jac_prev)
            g1 += g
            g2 += net[:, None] * g
            jac_prev = jac
        w_prev = w
    periods = days - 1
    a, b = sum_r / periods, sum_r2 / periods
    sd = np.sqrt(np.maximum(b - a * a, VARIANCE_FLOOR))
    sharpe = a / sd
    # S = A / √(B − A²): dS/dR_t = (B − A·R_t) / (T·σ³)
    grad = (b[:, None] * g1 - a[:, None] * g2) / (periods * sd[:, None] ** 3)
    return PolicyPass(w_prev, sharpe, grad, traded / periods)


def train_policies(cube: FeatureCube, seeds: np.ndarray, cost: float, epochs: int,
                   learning_rate: float, l2: float) -> np.ndarray:
    """Adam ascent on Sharpe − l2·|θ|²/2, one policy per seed (vectorized); returns, per
    seed, the best θ visited (the recurrent policy can lock in and its objective fall)."""
    p = cube.features.shape[2] + 1
    theta = np.stack([np.random.default_rng(int(s)).normal(0.0, INIT_SCALE, p) for s in seeds])
    best, best_score = theta.copy(), np.full(len(seeds), -np.inf)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    b1, b2 = ADAM_BETAS
    for step in range(1, epochs + 2):
        roll = policy_pass(theta, cube, cost, with_grad=step <= epochs)
        score = roll.sharpe - 0.5 * l2 * (theta * theta).sum(axis=1)
        improved = score > best_score
        best[improved], best_score[improved] = theta[improved], score[improved]
        if step > epochs:
            break
        grad = roll.grad - l2 * theta
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        m_hat = m / (1 - b1**step)
        v_hat = v / (1 - b2**step)
        theta = theta + learning_rate * m_hat / (np.sqrt(v_hat) + ADAM_EPS)
    return best


@register("direct_reinforcement")
@dataclass(frozen=True, slots=True)
class DirectReinforcement(Strategy):
    """Long-only softmax policy trained by direct reinforcement on its net-of-cost Sharpe.

    Args:
        lookback_days: daily returns in the training window (walk-forward sets it to TRAIN).
        horizons: trailing-return horizons in trading days (the longest, or
            ``vol_window``, is the first feature day inside the window).
        vol_window: daily returns in each σ.
        cost_bps: proportional cost charged on Σ|Δw| in training, basis points of the
            traded notional (commission + slippage: 1 + 2 on the shipped sim config).
        epochs: full-batch Adam steps; learning_rate: Adam's step size; l2: ridge on θ.
        seed: seed of the first policy's initial θ; ensemble: number of policies averaged.
    """

    lookback_days: int = 504
    horizons: tuple[int, ...] = (5, 21, 63)
    vol_window: int = 21
    cost_bps: float = 10.0
    epochs: int = 40
    learning_rate: float = 0.05
    l2: float = 1e-3
    seed: int = 0
    ensemble: int = 1
    name: ClassVar[str] = "direct_reinforcement"
    min_symbols: ClassVar[int] = ESTIMATION_MIN_SYMBOLS

    def __post_init__(self) -> None:
        horizons = self.horizons
        if isinstance(horizons, (int, str)) or not horizons:
            raise StrategyConfigError(f"horizons: expected a list of trading-day horizons, "
                                      f"got {horizons!r}")
        for h in horizons:
            check_int(h, "horizons", 1)
        object.__setattr__(self, "horizons", tuple(horizons))
        check_int(self.vol_window, "vol_window", 2)
        check_int(self.epochs, "epochs", 0)
        check_int(self.seed, "seed", 0)
        check_int(self.ensemble, "ensemble", 1)
        check_float(self.cost_bps, "cost_bps", 0.0, 10_000.0)
        check_float(self.learning_rate, "learning_rate", 0.0, 10.0, lo_open=True)
        check_float(self.l2, "l2", 0.0, 1e6)
        first = max(max(self.horizons), self.vol_window)
        check_int(self.lookback_days, "lookback_days", 2)
        if self.lookback_days < first + 20:
            raise StrategyConfigError(
                f"lookback_days: {self.lookback_days} leaves fewer than 20 training days after "
                f"the {first}-day feature warm-up; raise it to ≥ {first + 20}")

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        if len(prices) < self.lookback_days + 1:
            raise StrategyError(
                f"strategy {self.name!r}: needs {self.lookback_days + 1} price rows (lookback_"
                f"days + 1), got {len(prices)}"
                + (f" as of {prices.index[-1].date()}" if len(prices) else ""))
        returns = simple_returns(prices, self.lookback_days)
        cube = build_features(returns.to_numpy(), self.horizons, self.vol_window)
        seeds = np.arange(self.seed, self.seed + self.ensemble)
        cost = self.cost_bps / 1e4
        theta = train_policies(cube, seeds, cost, self.epochs, self.learning_rate, self.l2)
        last = policy_pass(theta, cube, cost, with_grad=False).last_weights
        w = pd.Series(last.mean(axis=0), index=returns.columns)
        return finalize_weights(w.reindex(prices.columns, fill_value=0.0), self.name)
