"""The states a cycle and an order intent can be in, as the journal stores them."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TYPE_CHECKING

from brokers.base import OrderStatus

if TYPE_CHECKING:
    from bot.engine.journal import Journal

# Journal meta keys of the drawdown kill switch: set by the cycle, cleared by
# `allocbot rearm`, read by `allocbot status`/`health`.
HALT_KEY = "halted"  # the halt's reason while trading is halted
PEAK_KEY = "peak_equity"  # the equity peak the drawdown is measured from


def recorded_peak(journal: Journal) -> float:
    """The recorded equity peak (account currency; 0.0 before the first cycle). Anything
    but a finite number ≥ 0 (a hand edit) raises ``Journal.corrupt_meta``'s error: the
    kill switch never measures from a NaN."""
    peak = journal.meta_json(PEAK_KEY)
    if peak is None:
        return 0.0
    if type(peak) in (float, int) and math.isfinite(peak) and peak >= 0:
        return float(peak)
    raise journal.corrupt_meta(PEAK_KEY, "is not an equity peak (a finite amount ≥ 0)")


class CycleStatus(StrEnum):
    """How a cycle ended (``running`` while it runs)."""

    RUNNING = "running"
    FINISHED = "finished"  # ran every step (it may have planned no order)
    SKIPPED = "skipped"  # market closed, an earlier order still working, or a guard blocked
    HALTED = "halted"  # the drawdown kill switch is on: nothing traded
    HELD = "held"  # the strategy could not compute and no fallback could: nothing traded
    FAILED = "failed"  # bad data, a strategy that could not compute, a venue failure
    INTERRUPTED = "interrupted"  # the process died mid-cycle; found at the next start


class IntentStatus(StrEnum):
    """An order intent's state: the bot's own states, then the venue's (``OrderStatus``)."""

    INTENT = "intent"  # journaled, not yet known to have reached the venue
    UNSENT = "unsent"  # found after a restart never to have reached the venue; abandoned
    DRY_RUN = "dry_run"  # dry-run mode: journaled and logged, never sent
    MISSING = "missing"  # the venue once knew it and no longer does
    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @classmethod
    def of_order(cls, status: OrderStatus) -> IntentStatus:
        """The intent state that mirrors a venue order state."""
        return cls(status.value)


OPEN_INTENT_STATUSES: tuple[IntentStatus, ...] = (
    IntentStatus.INTENT, IntentStatus.NEW, IntentStatus.ACCEPTED, IntentStatus.PARTIALLY_FILLED)
