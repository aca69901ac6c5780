"""Allocation strategies: price history in, target weights out.

``strategies.create(name, **params)`` builds one; every module in this package registers
its strategies on import, so adding a strategy is adding a module.
"""

import importlib
import pkgutil

from strategies.base import (
    Strategy,
    StrategyConfigError,
    StrategyError,
    available,
    create,
    parameters,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "Strategy",
    "StrategyConfigError",
    "StrategyError",
    "available",
    "create",
    "parameters",
    "register",
]
