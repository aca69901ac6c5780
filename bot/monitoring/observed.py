"""What the monitor has seen of the cycle so far: the latest figures, shared by the metrics,
the alert sender (watchdog, daily summary) and the status page."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class ObservedState:
    """Latest cycle figures as fractions of equity / account currency; NaN when unseen."""

    equity: float = math.nan
    cash: float = math.nan
    drawdown: float = math.nan
    var: float = math.nan
    max_drift: float = math.nan
    halted: bool = False
    last_success_at: datetime | None = None
    last_status: str | None = None
    failure_streak: int = 0
    # deposits less withdrawals applied (``cash_transfers_applied``) that ``equity`` holds,
    # and those applied since (by a cycle that has not valued the account yet)
    net_transfers: float = 0.0
    transfers_not_valued: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def absorb(self, figures: Mapping[str, Any]) -> None:
        """Take the figures of a cycle summary (the ``cycle_finished`` event or its journal
        row); halted cycles carry ``equity`` instead of ``equity_after``."""
        for attr, keys in (("equity", ("equity_after", "equity")), ("cash", ("cash_after",)),
                           ("drawdown", ("drawdown",)), ("var", ("var",)),
                           ("max_drift", ("max_drift",))):
            value = next((figures[k] for k in keys if k in figures), None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(self, attr, float(value))
                if attr == "equity":  # a valuation after a transfer holds it
                    self.net_transfers += self.transfers_not_valued
                    self.transfers_not_valued = 0.0
