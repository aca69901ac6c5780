"""What a cycle's outcome means to monitoring: one rule each, shared by ``allocbot health``,
``/health``, ``allocbot status``, the status page, the metrics and the alert watchdog.

A cycle's outcome is its status and, for a skip, the reason in its figures (the
``cycle_finished`` event's ``reason`` field, the journal summary's ``"reason"``):

* ``market_closed``: nothing to do on a closed market; the bot is doing its job;
* ``orders_still_open``: an earlier order is still working; nothing was traded;
* ``guard_blocked``: a pre-trade guard held the plan back; nothing was traded.
"""

from __future__ import annotations

from bot.engine.statuses import MARKET_CLOSED, CycleStatus

GUARD_BLOCKED = "guard_blocked"
# skips whose cycle ran the drawdown kill switch's check and was not halted by it (a guard
# is checked on the plan, after the kill switch); a closed market or a still-working order
# skips the cycle before the check, so they say nothing about the halt
_SKIPS_PAST_THE_KILL_SWITCH = (GUARD_BLOCKED,)


def is_success(status: object, reason: object) -> bool:
    """A successful cycle: it finished, or it was skipped because the market was closed.

    A cycle skipped because a guard blocked every order or an earlier order is still
    open traded nothing: a bot doing only that forever is not healthy."""
    return status == CycleStatus.FINISHED or (status == CycleStatus.SKIPPED
                                              and reason == MARKET_CLOSED)


def halt_after(status: object, reason: object) -> bool | None:
    """What a finished cycle says about the drawdown halt: True (it halted), False (it got
    past the kill switch's check and was not halted: it finished, or a guard blocked its
    plan), None (it says nothing: a skip before the check, a closed market or an order
    still open, or a held cycle; the halt, if any, still stands)."""
    if status == CycleStatus.HALTED:
        return True
    if status == CycleStatus.FINISHED or (status == CycleStatus.SKIPPED
                                          and reason in _SKIPS_PAST_THE_KILL_SWITCH):
        return False
    return None
