"""Overfitting statistics of a sweep's winner (pure functions, no I/O).

Sources:
- Bailey, D. H. & López de Prado, M. (2014), *The Deflated Sharpe Ratio: Correcting for
  Selection Bias, Backtest Overfitting and Non-Normality*, Journal of Portfolio
  Management 40(5), 94–107. Eq. for PSR (their eq. 2, after Mertens 2002) and the
  expected maximum Sharpe ratio of N trials (their appendix, the "False Strategy" bound).
- Bailey, D. H., Borwein, J. M., López de Prado, M. & Zhu, Q. J. (2017), *The Probability
  of Backtest Overfitting*, Journal of Computational Finance 20(4), 39–69: combinatorially
  symmetric cross-validation (CSCV).

Units: every Sharpe ratio here is per observation (daily, NOT annualized), as in the
papers; divide an annualized Sharpe by √252 first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from statistics import NormalDist

import numpy as np

EULER_MASCHERONI = 0.5772156649015329
FLAT_VARIANCE = 1e-12  # variance / mean square below this: a flat (riskless) series
PBO_CHUNK_COMBINATIONS = 1024  # combinations evaluated at once (bounds memory to ~N×1024)

_NORMAL = NormalDist()  # the standard library's (Wichura AS241 inverse): no scipy.stats import


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """E[max SR] of ``n_trials`` independent zero-skill trials whose Sharpe ratios have
    variance ``sharpe_variance``: √V·((1−γ)Φ⁻¹(1 − 1/N) + γΦ⁻¹(1 − 1/(N·e))), γ the
    Euler–Mascheroni constant (Bailey & López de Prado 2014, appendix). 0 for one trial."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(max(sharpe_variance, 0.0)) * (
        (1.0 - EULER_MASCHERONI) * z1 + EULER_MASCHERONI * z2)


def probabilistic_sharpe_ratio(sharpe: float, benchmark_sharpe: float, n_obs: int,
                               skewness: float, kurtosis: float) -> float:
    """PSR = Φ((SR − SR*)·√(T − 1) / √(1 − γ₃·SR + (γ₄ − 1)/4·SR²)); γ₄ is the plain
    (not excess) kurtosis, 3 for normal returns (Bailey & López de Prado 2012, 2014 eq. 2)."""
    if n_obs < 2:
        return float("nan")
    denom = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if denom <= 0:
        return float("nan")
    return float(_NORMAL.cdf((sharpe - benchmark_sharpe) * math.sqrt(n_obs - 1) / math.sqrt(denom)))


def deflated_sharpe_ratio(sharpe: float, n_obs: int, n_trials: int, sharpe_variance: float,
                          skewness: float, kurtosis: float) -> float:
    """DSR: the PSR of the selected trial against the expected maximum Sharpe ratio of
    ``n_trials`` zero-skill trials (Bailey & López de Prado 2014). Near 1: the winner's
    Sharpe is unlikely to be the luck of trying many; below 0.95: it may well be."""
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, sr0, n_obs, skewness, kurtosis)


@dataclass(frozen=True, slots=True)
class PBOResult:
    """CSCV outcome: the probability of backtest overfitting, the logits λ_c of every
    combination (λ ≤ 0: the in-sample winner ranked in the bottom half out of sample)."""

    pbo: float
    logits: np.ndarray
    n_blocks: int
    n_combinations: int
    rows_used: int


def _block_moments(returns: np.ndarray, n_blocks: int) -> tuple[np.ndarray, ...]:
    """Per block: count, Σr, Σr² (S × N). Leading rows that do not fill a block are dropped
    (the most recent data is kept)."""
    t = returns.shape[0] - returns.shape[0] % n_blocks
    kept = returns[returns.shape[0] - t:]
    blocks = kept.reshape(n_blocks, t // n_blocks, returns.shape[1])
    count = np.full(n_blocks, t // n_blocks, dtype=float)
    return count, blocks.sum(axis=1), (blocks**2).sum(axis=1)


def _sharpe_from_moments(n: np.ndarray, s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """mean / sd (ddof 1) from count, Σr, Σr². A flat series (sd 0, or rounding noise
    below 1e-12 of the mean square) ranks by the sign of its mean: −inf below every trial
    that has a Sharpe ratio (e.g. all cash earning less than the risk-free rate), +inf
    above, 0 for a zero mean (its limit as sd → 0)."""
    mean = s / n[:, None]
    var = np.maximum(q - n[:, None] * mean**2, 0.0) / (n[:, None] - 1.0)
    flat = var <= FLAT_VARIANCE * q / n[:, None]
    sd = np.sqrt(var)
    out = np.divide(mean, sd, out=np.zeros_like(mean), where=~flat)
    limit = np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0))
    return np.where(flat, limit, out)


def probability_of_backtest_overfitting(returns: np.ndarray, n_blocks: int = 16) -> PBOResult:
    """PBO by CSCV over a T × N matrix of per-period returns (N trials).

    The rows are cut into ``n_blocks`` (S, even) equal blocks; for each of the C(S, S/2)
    ways to pick half of them as in-sample (the rest out-of-sample), the trial with the
    best in-sample Sharpe n* is ranked out of sample: ω = rank/(N + 1) (ascending, ties
    averaged), λ = ln(ω/(1 − ω)). PBO = share of combinations with λ < 0, those with
    λ = 0 (the winner exactly at the median, as every tie of all trials puts it) counted
    half: the mid-rank convention, so trials that all perform alike give 0.5, not 1
    (Bailey, Borwein, López de Prado & Zhu 2017, §3, define PBO as P(λ ≤ 0) for a
    continuous λ, where a tie has probability 0).
    """
    m = np.asarray(returns, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("PBO needs a T × N matrix with at least 2 trials")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be even and >= 2, got {n_blocks}")
    if m.shape[0] < 2 * n_blocks:
        raise ValueError(f"PBO needs at least {2 * n_blocks} rows for {n_blocks} blocks, "
                         f"got {m.shape[0]}")
    if not np.isfinite(m).all():
        raise ValueError("PBO returns matrix has non-finite values")
    count, sums, squares = _block_moments(m, n_blocks)
    combos = np.array(list(combinations(range(n_blocks), n_blocks // 2)))
    masks = np.zeros((len(combos), n_blocks))
    masks[np.arange(len(combos))[:, None], combos] = 1.0
    n_trials = m.shape[1]
    logits = np.empty(len(combos))
    for lo in range(0, len(combos), PBO_CHUNK_COMBINATIONS):
        mk = masks[lo:lo + PBO_CHUNK_COMBINATIONS]
        train = _sharpe_from_moments(mk @ count, mk @ sums, mk @ squares)
        rest = 1.0 - mk
        test = _sharpe_from_moments(rest @ count, rest @ sums, rest @ squares)
        best = np.argmax(train, axis=1)
        chosen = test[np.arange(len(mk)), best][:, None]
        rank = (test < chosen).sum(axis=1) + ((test == chosen).sum(axis=1) + 1) / 2.0
        omega = rank / (n_trials + 1.0)
        logits[lo:lo + len(mk)] = np.log(omega / (1.0 - omega))
    pbo = float(np.mean(logits < 0.0)) + 0.5 * float(np.mean(logits == 0.0))
    return PBOResult(pbo, logits, n_blocks, len(combos),
                     int(m.shape[0] - m.shape[0] % n_blocks))
