"""Python's ``round(v, decimals)`` over an array, the same floats (pure).

The journal and the logs round every target weight to 6 decimals, every cycle: 500
``round`` calls are ~0.4 ms. ``round`` is correctly rounded (the exact binary value to the
nearest multiple of 10⁻ᵈ, ties to even, as CPython's ``float.__round__`` via
``_Py_dg_dtoa``). ``rint(v·10ᵈ) / 10ᵈ`` gives the same float unless the product's own
rounding moves it across a half-way point (its error is ≤ ½ ulp of the product): those
values, the ones near ``k + ½`` and any too large for an exact ``rint``, take ``round``.
"""

from __future__ import annotations

import numpy as np

_NEAR_HALF = 1e-6  # ≫ the product's error for |v·10ᵈ| < _EXACT_BELOW (< 2⁻²² there)
_EXACT_BELOW = 1e9
_ARRAY_FROM = 24  # fewer values: ``round`` each is faster than the array passes (~7 µs)


def rounded_as_python(values: np.ndarray, decimals: int) -> list[float]:
    """``[round(v, decimals) for v in values]``, vectorized; NaN and ±inf pass through."""
    values = np.asarray(values, dtype=float)
    if len(values) < _ARRAY_FROM:
        return [round(v, decimals) for v in values.tolist()]
    scale = 10.0**decimals
    with np.errstate(over="ignore", invalid="ignore"):  # huge values take ``round``
        scaled = values * scale
        out = np.rint(scaled) / scale
        fraction = scaled - np.floor(scaled)
        unsure = (np.abs(fraction - 0.5) < _NEAR_HALF) | (np.abs(scaled) >= _EXACT_BELOW)
    rounded = out.tolist()
    for i in np.flatnonzero(unsure).tolist():
        rounded[i] = round(float(values[i]), decimals)
    return rounded
