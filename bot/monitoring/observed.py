"""What the monitor has seen of the cycle so far: the latest figures, shared by the metrics,
the alert sender (watchdog, daily summary) and the status page."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime

SUCCESS_STATUSES = ("finished", "skipped")  # a cycle that ran; halted and failed did not


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
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
