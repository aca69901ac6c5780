"""allocbot's errors, named for what the caller should do (root: ``AllocbotError``)."""

from brokers.errors import (
    AllocbotError,
    BrokerConfigError,
    BrokerDataError,
    BrokerTransientError,
    OrderRejectedError,
)


class ConfigError(AllocbotError):
    """The configuration is invalid: fix the named key and restart (exit code 2)."""


class LiveTradingNotConfirmed(ConfigError):
    """Live mode lacks one of its two switches: add the missing one on purpose."""


class RiskLimitBreached(AllocbotError):
    """A risk rule forbids trading (e.g. the drawdown halt): re-arm deliberately."""


__all__ = [
    "AllocbotError",
    "BrokerConfigError",
    "BrokerDataError",
    "BrokerTransientError",
    "ConfigError",
    "LiveTradingNotConfirmed",
    "OrderRejectedError",
    "RiskLimitBreached",
]
