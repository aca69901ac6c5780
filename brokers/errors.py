"""Errors raised across the broker boundary: the broker-specific members of the families
in ``strategies.errors`` (the project's one root)."""

from strategies.errors import (
    AllocbotError,
    BrokerRefusedError,
    BrokerTransientError,
    ConfigError,
    InputDataError,
)


class BrokerDataError(InputDataError):
    """Market data is missing or malformed: fix the data source; no order may be sent."""


class OrderRejectedError(BrokerRefusedError):
    """The venue refused an order (buying power, size, asset): journal it and move on."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class SubmitOutcomeUnknownError(BrokerTransientError):
    """An order's submit may have been carried out though no answer came back (a read
    timeout, a dropped connection, a 5xx, on any attempt): the cycle fails, and no cycle
    trades until the venue shows the order or the recheck window ends
    (``bot.engine.statuses.SUBMIT_UNANSWERED``)."""


class BrokerConfigError(ConfigError):
    """The venue cannot be used as configured (keys, account type, asset): fix and restart."""


__all__ = [
    "AllocbotError",
    "BrokerConfigError",
    "BrokerDataError",
    "BrokerRefusedError",
    "BrokerTransientError",
    "OrderRejectedError",
    "SubmitOutcomeUnknownError",
]
