"""The drift-band test and the cash-buffered targets it measures against, in one place:
the planner, the backtest (arrays) and the read-only ``allocbot status`` (plain floats, so
numpy is not even imported on that path) share them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

from strategies.errors import InputDataError

if TYPE_CHECKING:
    import numpy as np


@overload
def drift_mask(current: float, target: float, drift_abs: float, drift_rel: float) -> bool: ...


@overload
def drift_mask(current: np.ndarray, target: np.ndarray, drift_abs: float,
               drift_rel: float) -> np.ndarray: ...


def drift_mask(current: Any, target: Any, drift_abs: float, drift_rel: float) -> Any:
    """Elementwise drift test on weights (floats, or arrays of any shape, e.g. days × assets
    for the backtest).

    Drifted when |w − t| > drift_abs or |w − t| > drift_rel·t; a new target (w == 0 < t)
    and a dropped one (t == 0 < w) always count. NaN weights raise InputDataError.
    """
    if isinstance(current, float | int) and isinstance(target, float | int):
        w: Any = float(current)
        t: Any = float(target)
        has_nan = math.isnan(w) or math.isnan(t)
    else:
        import numpy as np

        w = np.asarray(current, dtype=float)
        t = np.asarray(target, dtype=float)
        has_nan = bool(np.isnan(w).any() or np.isnan(t).any())
    if has_nan:
        raise InputDataError("drift_mask: current and target weights must not contain NaN")
    gap = abs(w - t)
    return (gap > drift_abs) | (gap > drift_rel * t) | ((w == 0) & (t > 0)) | ((t == 0) & (w > 0))


@overload
def buffered_targets(targets: Sequence[float], cash_buffer: float) -> list[float]: ...


@overload
def buffered_targets(targets: np.ndarray, cash_buffer: float) -> np.ndarray: ...


def buffered_targets(targets: Any, cash_buffer: float) -> Any:
    """One day's targets (1-D) after the cash buffer: scaled by (1 − cash_buffer)/Σt when
    Σt > 1 − cash_buffer, else unchanged. Drift is measured against these (the planner, the
    backtest's vectorized drift check and ``allocbot status``). A list or tuple of floats
    gives a list (numpy is not imported on that path), anything else an array."""
    if isinstance(targets, list | tuple):
        plain = [float(t) for t in targets]
        total = sum(plain)
        return [t * ((1 - cash_buffer) / total) for t in plain] if total > 1 - cash_buffer \
            else plain
    import numpy as np

    t = np.asarray(targets, dtype=float)
    total = float(t.sum())
    if total > 1 - cash_buffer:
        return t * ((1 - cash_buffer) / total)
    return t
