"""``rounded_as_python`` gives the very floats Python's ``round`` gives, sign of zero
included, on any float and on the half-way points where a plain ``rint(v·10ᵈ)/10ᵈ``
goes wrong."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.rounding import rounded_as_python


def _same(ours: list[float], python: list[float]) -> bool:
    return all((a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)
               for a, b in zip(ours, python, strict=True))


@settings(max_examples=60)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=60),
       st.integers(0, 9))
def test_rounded_as_python_equals_round_on_any_floats(values, decimals):
    assert _same(rounded_as_python(np.array(values, dtype=float), decimals),
                 [round(v, decimals) for v in values])


@settings(max_examples=60)
@given(st.lists(st.integers(-10**8, 10**8), min_size=30, max_size=60),  # the array path
       st.sampled_from([-1, 0, 1]))
def test_rounded_as_python_equals_round_next_to_half_way_points(ks, step):
    """(k + ½)·10⁻⁶ and its float neighbours: where the product's rounding decides."""
    halfway = (np.array(ks, dtype=float) + 0.5) / 1e6
    values = halfway if step == 0 else np.nextafter(halfway, step * np.inf)
    assert _same(rounded_as_python(values, 6), [round(float(v), 6) for v in values])


def test_plain_rint_would_differ_on_some_half_way_neighbours():
    """The case the fallback exists for (the test above would catch its removal)."""
    values = np.nextafter((np.arange(0, 200_000) + 0.5) / 1e6, np.inf)
    plain = (np.rint(values * 1e6) / 1e6).tolist()
    assert plain != [round(float(v), 6) for v in values]
