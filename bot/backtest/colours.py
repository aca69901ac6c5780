"""One fixed colour per symbol, the same in every chart and every report.

The rule (documented in the README): a palette of ``len(PALETTE)`` distinguishable colours
(no greys: those are kept for cash, "other" and the benchmark). A symbol's *home* slot is
fixed by its name alone: ``PINNED`` for the ten ETFs of the bundled sample market and the
most common ones (their colours never change), else ``sha256(symbol) mod len(PALETTE)``.
Collisions inside a universe are settled deterministically: pinned symbols first, then the
others in alphabetical order, each takes its home slot if free, else the next free slot
(wrapping around). So for a given universe the colours never depend on the order symbols
are listed in, and a symbol only leaves its home colour when a pinned or alphabetically
earlier symbol of the same universe shares its home slot. Past ``len(PALETTE)`` symbols the
palette repeats (each extra symbol takes its home slot again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

# Tableau 10 then ten darker/other hues (from matplotlib's tab20b/tab20c), none grey.
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
    "#31a354", "#756bb1", "#fd8d3c", "#6baed6",
)
PINNED: dict[str, int] = {"SPY": 0, "TLT": 1, "IEF": 2, "EFA": 3, "VNQ": 4, "DBC": 5,
                          "GLD": 7, "SHY": 8, "QQQ": 9, "AGG": 10}
CASH_COLOUR = "#d9d9d9"
OTHER_COLOUR = "#8c8c8c"
BENCHMARK_COLOUR = "#4d4d4d"
STRATEGY_COLOUR = "#08519c"


def home_slot(symbol: str) -> int:
    """The palette index a symbol takes when nothing in its universe collides with it."""
    if symbol in PINNED:
        return PINNED[symbol]
    digest = hashlib.sha256(symbol.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % len(PALETTE)


def symbol_colours(universe: Iterable[str]) -> dict[str, str]:
    """Colour of every symbol of ``universe`` (hex strings), by the module's rule."""
    taken: set[int] = set()
    colours: dict[str, str] = {}
    for symbol in sorted(set(universe), key=lambda s: (s not in PINNED, s)):
        slot = home_slot(symbol)
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
            taken.add(slot)
        colours[symbol] = PALETTE[slot]
    return colours


def symbol_colour(symbol: str, universe: Iterable[str]) -> str:
    """The colour of ``symbol`` in a report over ``universe`` (the symbol is added to it if
    missing, so the answer is always defined)."""
    return symbol_colours({*universe, symbol})[symbol]
