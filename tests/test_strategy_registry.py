"""The lazy strategy registry: the name → module table agrees with the modules, and the
CLI does not load heavy libraries to start."""

from __future__ import annotations

import importlib
import subprocess
import sys

import strategies
from strategies.base import _REGISTRY


def test_registry_table_matches_every_register_decorator():
    for module in set(strategies.STRATEGY_MODULES.values()):
        importlib.import_module(module)
    assert set(_REGISTRY) == set(strategies.STRATEGY_MODULES)
    for name, module in strategies.STRATEGY_MODULES.items():
        assert _REGISTRY[name].__module__ == module, name


def test_cli_help_imports_no_pandas_sklearn_or_sdk():
    code = ("import sys, bot.cli; heavy = [m for m in ('pandas', 'numpy', 'sklearn', "
            "'scipy', 'matplotlib', 'alpaca', 'pydantic') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_building_fixed_does_not_import_sklearn():
    code = ("import sys, strategies; strategies.create('fixed', preset='sixty_forty'); "
            "print('sklearn' in sys.modules, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False False"


def test_read_only_config_load_imports_no_numpy_or_pandas(write_config):
    """status and health load the config without building a strategy: they must not pay
    for numpy/pandas (their start-up budget is 0.4 s)."""
    path = write_config({"strategy": {"fallback": "equal_weight"}})
    code = ("import sys; from pathlib import Path; from bot.config import load_config; "
            f"load_config(Path({str(path)!r}), check_strategy=False); "
            "print([m for m in ('numpy', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
