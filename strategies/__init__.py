"""Allocation strategies: price history in, target weights out.

``strategies.create(name, **params)`` builds one; every module in this package registers
its strategies when the registry is first asked (``create``, ``available``,
``parameters``), so adding a strategy is adding a module. Nothing heavy (numpy, pandas,
scikit-learn) is imported by ``import strategies`` or ``strategies.errors`` alone: the
read-only commands (``allocbot status``, ``allocbot health``) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strategies.base import (
        Strategy,
        StrategyConfigError,
        StrategyError,
        available,
        create,
        parameters,
        register,
    )

__all__ = [
    "Strategy",
    "StrategyConfigError",
    "StrategyError",
    "available",
    "create",
    "parameters",
    "register",
]


def __getattr__(name: str) -> Any:
    """PEP 562: the public names resolve from ``strategies.base`` on first use."""
    if name in __all__:
        from strategies import base

        return getattr(base, name)
    raise AttributeError(f"module 'strategies' has no attribute {name!r}")
