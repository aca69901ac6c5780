"""allocbot's errors as the engine and the CLI use them, and the exit code each stands for.

The families live in ``strategies.errors`` (the one root, importable by every layer);
this module adds the engine's own members.
"""

from brokers.errors import (
    BrokerConfigError,
    BrokerDataError,
    OrderRejectedError,
)
from strategies.errors import (
    AllocbotError,
    BrokerRefusedError,
    BrokerTransientError,
    ConfigError,
    InputDataError,
    StateError,
    StrategyError,
)

EXIT_OK = 0
EXIT_CYCLE_FAILED = 1
EXIT_BAD_INPUT = 2


class LiveTradingNotConfirmed(ConfigError):
    """Live mode lacks one of its two switches: add the missing one on purpose."""


def exit_code_for(exc: AllocbotError) -> int:
    """2 for what the operator must fix before anything can run (config, data, state,
    a strategy that cannot compute); 1 for a venue failure or refusal."""
    if isinstance(exc, BrokerTransientError | BrokerRefusedError):
        return EXIT_CYCLE_FAILED
    return EXIT_BAD_INPUT


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CYCLE_FAILED",
    "EXIT_OK",
    "AllocbotError",
    "BrokerConfigError",
    "BrokerDataError",
    "BrokerRefusedError",
    "BrokerTransientError",
    "ConfigError",
    "InputDataError",
    "LiveTradingNotConfirmed",
    "OrderRejectedError",
    "StateError",
    "StrategyError",
    "exit_code_for",
]
