"""The drift-band test, alone in a numpy-only module: the planner, the backtest and the
read-only ``allocbot status`` (which must not import pandas) share this one rule."""

from __future__ import annotations

import numpy as np

from strategies.errors import InputDataError


def drift_mask(current: np.ndarray, target: np.ndarray, drift_abs: float,
               drift_rel: float) -> np.ndarray:
    """Elementwise drift test on weights (any shape, e.g. days × assets for the backtest).

    Drifted when |w − t| > drift_abs or |w − t| > drift_rel·t; a new target (w == 0 < t)
    and a dropped one (t == 0 < w) always count. NaN weights raise ValueError.
    """
    w = np.asarray(current, dtype=float)
    t = np.asarray(target, dtype=float)
    if np.isnan(w).any() or np.isnan(t).any():
        raise InputDataError("drift_mask: current and target weights must not contain NaN")
    gap = np.abs(w - t)
    return (gap > drift_abs) | (gap > drift_rel * t) | ((w == 0) & (t > 0)) | ((t == 0) & (w > 0))
