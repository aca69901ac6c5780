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
EXIT_INSTANCE_LOCKED = 3  # another process holds the state dir: a second writer's exit


class LiveTradingNotConfirmed(ConfigError):
    """Live mode lacks one of its two switches: add the missing one on purpose."""


class InstanceLockedError(StateError):
    """Another allocbot process holds the state dir's lock; this one must not write."""


def exit_code_for(exc: AllocbotError) -> int:
    """2 for what the operator must fix before anything can run (config, data, state,
    a strategy that cannot compute); 1 for a venue failure or refusal; 3 when another
    process already holds the state dir."""
    if isinstance(exc, InstanceLockedError):
        return EXIT_INSTANCE_LOCKED
    if isinstance(exc, BrokerTransientError | BrokerRefusedError):
        return EXIT_CYCLE_FAILED
    return EXIT_BAD_INPUT


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CYCLE_FAILED",
    "EXIT_INSTANCE_LOCKED",
    "EXIT_OK",
    "AllocbotError",
    "BrokerConfigError",
    "BrokerDataError",
    "BrokerRefusedError",
    "BrokerTransientError",
    "ConfigError",
    "InputDataError",
    "InstanceLockedError",
    "LiveTradingNotConfirmed",
    "OrderRejectedError",
    "StateError",
    "StrategyError",
    "exit_code_for",
]
