"""Errors raised across the broker boundary, named for what the caller should do.

``AllocbotError`` is the root of every error the project raises on purpose; it lives here
because ``brokers/`` may not import from ``bot/`` (and ``bot/`` re-exports it).
"""


class AllocbotError(Exception):
    """Root of allocbot's own errors."""


class BrokerDataError(AllocbotError):
    """Market data is missing or malformed: fix the data source; no order may be sent."""


class BrokerTransientError(AllocbotError):
    """A temporary venue failure (timeout, 429, 5xx) after retries: fail this cycle, try next."""


class OrderRejectedError(AllocbotError):
    """The venue refused an order (buying power, size, asset): journal it and move on."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class BrokerConfigError(AllocbotError):
    """The venue cannot be used as configured (keys, account type, asset): fix and restart."""
