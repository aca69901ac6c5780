"""Allocation strategies: price history in, target weights out.

``strategies.create(name, **params)`` builds one. Each module registers its strategies
with ``@register`` and is imported on first use through ``STRATEGY_MODULES`` (name →
module). Importing this package (or ``strategies.errors``, the project's error root)
loads nothing heavy: the registry itself is imported on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strategies.base import (
        STRATEGY_MODULES,
        Strategy,
        StrategyConfigError,
        StrategyError,
        available,
        create,
        parameters,
        register,
    )

__all__ = [
    "STRATEGY_MODULES",
    "Strategy",
    "StrategyConfigError",
    "StrategyError",
    "available",
    "create",
    "parameters",
    "register",
]


def __getattr__(name: str) -> Any:
    """PEP 562: the registry (numpy, pandas) is imported when first used, not with the package."""
    if name in __all__:
        return getattr(importlib.import_module("strategies.base"), name)
    raise AttributeError(f"module 'strategies' has no attribute {name!r}")
