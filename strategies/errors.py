"""allocbot's one error root and its families, each named for what the caller should do.

It lives in ``strategies/``, the lowest layer (it may import neither ``brokers/`` nor
``bot/``, and both of those may import it), and depends on nothing. ``brokers.errors``
and ``bot.errors`` add the specific subclasses of their own layer. Every family that means
"this input is wrong" is also a ``ValueError``.

Caller's action, by family (the CLI's exit code in brackets):

* ``InputDataError`` — fix the data (price file, macro file, a broker's answer) [2].
* ``ConfigError`` — fix the named config key and restart [2].
* ``StrategyError`` — the strategy cannot compute from these inputs; the cycle holds (or
  uses the configured fallback) and says why [2 outside a cycle].
* ``StateError`` — the state directory or its files are unusable: restore a backup or
  point ``state_dir`` elsewhere [2].
* ``BrokerTransientError`` — a temporary venue failure; the next cycle retries [1].
* ``BrokerRefusedError`` — the venue refused (an order, the account): journal it, move on [1].
"""

from __future__ import annotations


class AllocbotError(Exception):
    """Root of every error allocbot raises on purpose; anything else is a bug."""


class InputDataError(AllocbotError, ValueError):
    """Input data is missing or malformed: fix the named file, symbol or date; no order is sent."""


class ConfigError(AllocbotError, ValueError):
    """The configuration is invalid: fix the named key and restart (exit code 2)."""


class StrategyError(AllocbotError, ValueError):
    """A strategy cannot produce weights from these inputs (too little history, infeasible
    constraints, a singular input); the message names the parameter, symbol or date."""


class StateError(AllocbotError):
    """The state directory or a state file is unusable (corrupt, foreign, newer schema,
    unwritable, held by another process): restore a backup or point ``state_dir`` elsewhere."""


class BrokerTransientError(AllocbotError):
    """A temporary venue failure (timeout, 429, 5xx) after retries: fail this cycle, try next."""


class BrokerRefusedError(AllocbotError):
    """The venue refused a request (an order, the account, an asset): journal it, move on."""
