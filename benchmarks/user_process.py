"""The environment of a timed child process, as a user's shell runs the command.

A user's second run of ``allocbot`` reads its modules' cached bytecode (``__pycache__``):
an environment with ``PYTHONDONTWRITEBYTECODE`` set (some CI and sandbox shells) never
writes it, so every timed run would compile the project's sources again (~0.1–0.3 s here).
The benchmarks drop that variable and run each command once untimed (``warm_bytecode``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


def user_env(tree: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``tree`` first on the import
    path and bytecode caching on."""
    env = {**(os.environ if base is None else base), "PYTHONPATH": str(tree)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_bytecode(args: Sequence[str], tree: Path, base: dict[str, str] | None = None) -> None:
    """Run ``args`` once, untimed, so its imports' bytecode is cached as after a first use."""
    subprocess.run(list(args), cwd=tree, env=user_env(tree, base), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False, timeout=600)


BYTECODE_NOTE = "bytecode caches on (one untimed run of each command, or its imports, first)"
