"""The bundled sample market: SYNTHETIC daily prices, regenerated bit-for-bit from a seed.

Nothing in ``bot/sample_market/sample_prices.csv`` is real market data. It is drawn from a
two-regime (calm/stress), fat-tailed multivariate model of eight ETFs (SPY, TLT, IEF,
GLD, DBC, SHY, VNQ, EFA) whose parameters were copied from summary statistics of real
daily log returns of those ETFs' adjusted closes, 2007-05-30..2025-09-26 (4,612 days):
per-regime annualized means, volatilities, correlations and excess kurtosis, the daily
regime transition probabilities and starting prices (the file
``etf-return-stats.json`` the project was calibrated with; it is not read at run time).
So the shipped default behaves like a multi-asset market — crisis correlations, fat
tails, volatility clustering — without redistributing anyone's price data.

Model, per NYSE session t (2005-01-03..2024-12-31, the real XNYS calendar from
``exchange_calendars``: no holidays, and the unscheduled closures such as 2012-10-29/30):
  * regime s_t: a two-state Markov chain, s_0 = calm, P(calm→stress) = 0.0054,
    P(stress→calm) = 0.02198 (stress ≈ 20% of days, spells ≈ 45 days);
  * daily log returns r_t = μ_s / 252 + (σ_s / √252) ⊙ (L_s z_t), where L_s L_sᵀ is the
    regime's correlation matrix and z_t is a unit-variance multivariate Student-t:
    z = g · √((ν_s − 2) / W) with g ~ N(0, I), W ~ χ²(ν_s) shared by all assets;
  * ν_s = 4 + 6 / κ_s, κ_s the regime's median excess kurtosis across assets (a
    Student-t with ν > 4 dof has excess kurtosis 6 / (ν − 4));
  * prices P_t = P_0 · exp(Σ r), written with 4 decimals.

To use real data instead, point ``[sim] prices`` in the config at any CSV of the same
shape: a ``date`` column (YYYY-MM-DD) and one column of adjusted closes per symbol
(``brokers.prices.load_price_csv`` checks it). Regenerate this file with
``python -m bot.sample_market`` (it rewrites the CSV; a test checks it is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import structlog

from bot.sample_market import SAMPLE_PRICES_PATH
from brokers.calendar import sessions_in_range
from strategies.estimators import ANNUALIZATION_DAYS as TRADING_DAYS_PER_YEAR

SEED = 1  # of seeds 1-4, the one whose stress share (20.8%) is nearest the stationary 19.7%
START_DATE = "2005-01-03"
END_DATE = "2024-12-31"
PRICE_DECIMALS = 4

SYMBOLS = ("SPY", "TLT", "IEF", "GLD", "DBC", "SHY", "VNQ", "EFA")
START_PRICES = (108.66, 49.58, 52.17, 64.72, 21.22, 59.58, 36.48, 46.61)
CALM_TO_STRESS_PER_DAY = 0.0054
STRESS_TO_CALM_PER_DAY = 0.02198

# Full-period figures: not used to simulate, only to check the sample (tests) and to document.
ALL_VOL_ANNUAL = (0.2001, 0.1539, 0.0707, 0.174, 0.1929, 0.0153, 0.3028, 0.2201)


@dataclass(frozen=True, slots=True)
class Regime:
    """One regime's annualized log-return mean/vol, correlation and excess kurtosis per asset."""

    mean_annual: tuple[float, ...]
    vol_annual: tuple[float, ...]
    corr: tuple[tuple[float, ...], ...]
    excess_kurtosis: tuple[float, ...]

    @property
    def dof(self) -> float:
        """Student-t degrees of freedom matching the median excess kurtosis: ν = 4 + 6/κ."""
        return 4.0 + 6.0 / float(np.median(self.excess_kurtosis))


CALM = Regime(
    mean_annual=(0.0924, 0.0372, 0.0357, 0.091, 0.0247, 0.0196, 0.0609, 0.0199),
    vol_annual=(0.1426, 0.1354, 0.0633, 0.155, 0.1679, 0.014, 0.1907, 0.161),
    corr=(
        (1.0, -0.287, -0.307, 0.033, 0.306, -0.253, 0.672, 0.832),
        (-0.287, 1.0, 0.915, 0.205, -0.174, 0.578, -0.041, -0.272),
        (-0.307, 0.915, 1.0, 0.259, -0.15, 0.774, -0.063, -0.269),
        (0.033, 0.205, 0.259, 1.0, 0.363, 0.252, 0.076, 0.144),
        (0.306, -0.174, -0.15, 0.363, 1.0, -0.081, 0.15, 0.372),
        (-0.253, 0.578, 0.774, 0.252, -0.081, 1.0, -0.091, -0.187),
        (0.672, -0.041, -0.063, 0.076, 0.15, -0.091, 1.0, 0.58),
        (0.832, -0.272, -0.269, 0.144, 0.372, -0.187, 0.58, 1.0),
    ),
    excess_kurtosis=(2.55, 0.72, 1.23, 4.59, 3.06, 9.75, 3.53, 4.03),
)
STRESS = Regime(
    mean_annual=(0.1244, 0.0104, 0.0243, 0.0946, -0.0805, 0.0117, 0.0053, 0.1091),
    vol_annual=(0.3468, 0.2134, 0.095, 0.2363, 0.2721, 0.02, 0.563, 0.3743),
    corr=(
        (1.0, -0.367, -0.329, 0.064, 0.558, -0.249, 0.811, 0.929),
        (-0.367, 1.0, 0.904, 0.129, -0.321, 0.546, -0.287, -0.345),
        (-0.329, 0.904, 1.0, 0.174, -0.285, 0.733, -0.267, -0.305),
        (0.064, 0.129, 0.174, 1.0, 0.326, 0.185, 0.041, 0.152),
        (0.558, -0.321, -0.285, 0.326, 1.0, -0.218, 0.427, 0.591),
        (-0.249, 0.546, 0.733, 0.185, -0.218, 1.0, -0.206, -0.237),
        (0.811, -0.287, -0.267, 0.041, 0.427, -0.206, 1.0, 0.774),
        (0.929, -0.345, -0.305, 0.152, 0.591, -0.237, 0.774, 1.0),
    ),
    excess_kurtosis=(5.76, 2.85, 2.15, 5.12, 1.86, 4.73, 5.29, 5.85),
)


@dataclass(frozen=True, slots=True)
class SampleMarket:
    """Generated closes (unrounded) and the regime path (True = stress) per day."""

    prices: pd.DataFrame
    stress: np.ndarray


def simulate_regimes(n_days: int, rng: np.random.Generator) -> np.ndarray:
    """Two-state Markov chain from calm; True marks stress days. Uses n_days uniforms."""
    draws = rng.random(n_days)
    stress = np.zeros(n_days, dtype=bool)
    state = False
    for t in range(1, n_days):
        flip = STRESS_TO_CALM_PER_DAY if state else CALM_TO_STRESS_PER_DAY
        state = (not state) if draws[t] < flip else state
        stress[t] = state
    return stress


def _regime_returns(regime: Regime, n_days: int, rng: np.random.Generator) -> np.ndarray:
    """Daily log returns, (n_days × assets), unit-variance Student-t scaled to the regime."""
    chol = np.linalg.cholesky(np.array(regime.corr))
    gauss = rng.standard_normal((n_days, len(SYMBOLS))) @ chol.T
    nu = regime.dof
    mix = np.sqrt((nu - 2.0) / rng.chisquare(nu, n_days))
    vol_daily = np.array(regime.vol_annual) / np.sqrt(TRADING_DAYS_PER_YEAR)
    mean_daily = np.array(regime.mean_annual) / TRADING_DAYS_PER_YEAR
    returns: np.ndarray = mean_daily + vol_daily * gauss * mix[:, None]
    return returns


def generate_sample_market(
    seed: int = SEED, start: str = START_DATE, end: str = END_DATE
) -> SampleMarket:
    """Simulate the sample market (pure: same seed and dates → same numbers)."""
    sessions = sessions_in_range(date.fromisoformat(start), date.fromisoformat(end))
    dates = pd.DatetimeIndex(pd.to_datetime(sessions), name="date")
    n_days = len(dates)
    rng = np.random.default_rng(seed)
    stress = simulate_regimes(n_days, rng)
    calm_returns = _regime_returns(CALM, n_days, rng)
    stress_returns = _regime_returns(STRESS, n_days, rng)
    returns = np.where(stress[:, None], stress_returns, calm_returns)
    returns[0] = 0.0  # the first row is the starting price
    prices = np.array(START_PRICES) * np.exp(np.cumsum(returns, axis=0))
    frame = pd.DataFrame(prices, index=dates, columns=list(SYMBOLS))
    return SampleMarket(prices=frame, stress=stress)


def render_csv(frame: pd.DataFrame, decimals: int = PRICE_DECIMALS) -> str:
    """The CSV text: ``date`` then one column per series, ``decimals`` fixed decimals,
    ``\\n`` line ends (the sample prices and the sample macro file share it)."""
    fmt = f"{{:.{decimals}f}}"
    lines = [",".join(["date", *map(str, frame.columns)])]
    for day, row in zip(frame.index, frame.to_numpy(), strict=True):
        lines.append(",".join([day.strftime("%Y-%m-%d"), *(fmt.format(v) for v in row)]))
    return "\n".join(lines) + "\n"


def write_sample_prices(path: Path = SAMPLE_PRICES_PATH) -> None:
    """Write the sample prices, generated from the seed, to ``path`` (default: the bundled
    ``bot/sample_market/sample_prices.csv``)."""
    market = generate_sample_market()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_csv(market.prices), encoding="utf-8", newline="")
    structlog.get_logger("bot.sample_market").info(
        "sample_market_written",
        path=str(path),
        days=len(market.prices),
        stress_days=int(market.stress.sum()),
    )
