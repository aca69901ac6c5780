"""A Gymnasium environment over the backtest's own cycle, simulator and cost model.

An agent trained with an outside library (stable-baselines3, ...) is evaluated exactly as
our strategies are: each ``step`` runs ``bot.engine.cycle.run`` — risk step, planner,
execution — against the ``SimulatedBroker`` (fills priced by ``brokers.sim.pricing.
plan_fill`` with the spec's ``SimCosts``), with the backtest's ``daily`` calendar policy
(every asset traded back to target every day: drift bands 0, ``all_when_any``).

Timing (the backtest's convention, ``bot.backtest.engine``):

* the observation on day t uses closes ≤ t only;
* ``step(action)`` on day t: the action (projected onto the simplex: clipped at 0, divided
  by its sum; equal weights when the sum is 0) is the target; the cycle decides at the
  close of t and fills at close t × (1 ± slippage) plus commission;
* the market then moves to t+1; reward = log(E_{t+1} / E_t), E_t the equity at the close
  of t *before* its trades and E_{t+1} the equity of the resulting holdings at the close of
  t+1: the day's costs and the t → t+1 return, nothing later.

``info["equity_after_trades"]`` is the equity at the close of t after its trades — the
figure ``run_backtest`` records for day t. As in the backtest, the planner sizes buys with
the policy's ``cost_bps_estimate``: left at 0 with non-zero costs, a fully invested action
cannot pay its commission and the buy is rejected (``info["status"]`` and the logs say so).
Requires the ``rl`` extra (``gymnasium``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from bot.backtest.engine import BacktestInputError, BacktestSpec
from bot.engine import cycle
from bot.engine.cycle import CycleContext, CycleSettings
from bot.engine.memory_journal import MemoryJournal
from bot.engine.statuses import CycleStatus
from brokers.base import validate_price_frame
from brokers.sim.broker import SimulatedBroker
from strategies import Strategy

OBS_CLIP = 1.0  # daily log returns beyond ±100 % are clipped in the observation


def project_to_simplex(action: np.ndarray) -> np.ndarray:
    """Long-only, fully invested weights: clip at 0, divide by the sum (equal if 0)."""
    w = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64), nan=0.0), 0.0, None)
    total = float(w.sum())
    return w / total if total > 0 else np.full(w.shape, 1.0 / w.size)


@dataclass(slots=True)
class ActionStrategy(Strategy):
    """The agent's latest action as the cycle's strategy (targets set before each cycle)."""

    universe: tuple[str, ...]
    weights: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    name: ClassVar[str] = "gym_action"

    @property
    def lookback_days(self) -> int:
        return 1

    def target_weights(self, prices: pd.DataFrame,
                       current_weights: pd.Series | None = None) -> pd.Series:
        return self.weights


def daily_calendar_settings(settings: CycleSettings) -> CycleSettings:
    """The backtest's calendar policy: bands 0, every asset back to target on each check."""
    policy = replace(settings.policy, drift_abs=0.0, drift_rel=0.0, mode="all_when_any")
    return replace(settings, policy=policy)


class PortfolioEnv(gym.Env[np.ndarray, np.ndarray]):
    """Daily allocation over ``spec.settings.universe``; one episode = ``start``..``end``.

    Observation (float32, window_days + 1 rows × assets, in [−1, 1]): rows 0..W−1 are the
    last W daily log returns ln(P_t / P_{t−1}) (clipped to ±1), the last row the held
    weights (fractions of equity) after the previous step. Action: Box(0, 1) per asset,
    projected onto the simplex in ``step``.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 — gymnasium's own attribute

    def __init__(self, prices: pd.DataFrame, spec: BacktestSpec, window_days: int = 20) -> None:
        universe = list(spec.settings.universe)
        missing = [s for s in universe if s not in prices.columns]
        if missing:
            raise BacktestInputError(f"universe symbol(s) {missing} not in the price data")
        self._prices = validate_price_frame(prices.loc[:, universe], "env prices")
        self._spec = spec
        self._settings = daily_calendar_settings(spec.settings)
        self._window = int(window_days)
        self._first, self._last = self._episode_rows()
        log_returns = np.log(self._prices.to_numpy(dtype=np.float64))
        self._log_returns = np.diff(log_returns, axis=0, prepend=np.nan)
        gaps = np.isnan(self._log_returns[self._first - self._window + 1: self._last + 1])
        if gaps.any():
            row, col = np.argwhere(gaps)[0]
            day = self._prices.index[self._first - self._window + 1 + row].date()
            raise BacktestInputError(f"env prices: no close for {universe[col]} on or just "
                                     f"before {day}; the episode needs complete closes")
        n = len(universe)
        self.observation_space = spaces.Box(-1.0, 1.0, (self._window + 1, n), np.float32)
        self.action_space = spaces.Box(0.0, 1.0, (n,), np.float32)
        self._broker: SimulatedBroker | None = None
        self._journal: MemoryJournal | None = None
        self._ctx: CycleContext | None = None
        self._row = self._first

    def _episode_rows(self) -> tuple[int, int]:
        dates = self._prices.index
        warmup = max(self._window, self._spec.settings.limits.lookback_days)
        start = warmup if self._spec.start is None else int(
            dates.searchsorted(pd.Timestamp(self._spec.start)))
        end = len(dates) - 1 if self._spec.end is None else int(
            dates.searchsorted(pd.Timestamp(self._spec.end), side="right")) - 1
        if start < warmup or end <= start:
            raise BacktestInputError(
                f"env episode {dates[min(start, len(dates) - 1)].date()}..{dates[end].date()}: "
                f"needs {warmup} rows of history before its start and at least two days")
        return start, end

    def _observation(self) -> np.ndarray:
        rows = self._log_returns[self._row - self._window + 1: self._row + 1]
        held = self._held_weights()
        obs = np.vstack([np.clip(rows, -OBS_CLIP, OBS_CLIP), np.clip(held, 0.0, 1.0)])
        return obs.astype(np.float32)

    def _held_weights(self) -> np.ndarray:
        assert self._broker is not None
        equity = self._broker.account().equity
        positions = self._broker.positions()
        values = [positions[s].market_value if s in positions else 0.0
                  for s in self._spec.settings.universe]
        return np.array(values) / equity if equity > 0 else np.zeros(len(values))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.close()
        spec = self._spec
        prices = self._prices.iloc[: self._last + 1]
        self._row = self._first
        self._broker = SimulatedBroker(
            ":memory:", prices, starting_cash=spec.starting_cash, costs=spec.costs,
            fractional=spec.fractional,
            replay_start=prices.index[self._first].date())
        self._journal = MemoryJournal()
        strategy = ActionStrategy(spec.settings.universe)
        self._ctx = CycleContext(self._broker, self._journal, strategy, self._settings)
        self._broker.advance_to(prices.index[self._row].date())
        return self._observation(), {"date": str(prices.index[self._row].date()),
                                     "equity": self._broker.account().equity}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._ctx is None or self._broker is None:
            raise RuntimeError("call reset() before step()")
        if self._row >= self._last:
            raise RuntimeError("the episode has ended; call reset()")
        weights = project_to_simplex(action)
        strategy = self._ctx.strategy
        assert isinstance(strategy, ActionStrategy)
        strategy.weights = pd.Series(weights, index=list(self._spec.settings.universe))
        equity_before = self._broker.account().equity
        result = cycle.run(self._ctx)
        equity_after = self._broker.account().equity
        day = self._prices.index[self._row].date()
        self._row += 1
        self._broker.advance_to(self._prices.index[self._row].date())
        equity_next = self._broker.account().equity
        reward = math.log(equity_next / equity_before)
        info = {"date": str(day), "status": str(result.status),
                "equity_after_trades": equity_after, "equity": equity_next,
                "turnover": float(result.figures.get("turnover", 0.0)),
                "commission": float(result.figures.get("commission", 0.0)),
                "error": result.error if result.status is CycleStatus.FAILED else None}
        return self._observation(), reward, self._row >= self._last, False, info

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
        if self._journal is not None:
            self._journal.close()
        self._broker = self._journal = self._ctx = None
