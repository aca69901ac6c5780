"""Shared fixtures: config files written to tmp dirs, small price frames, CLI runners."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

# The suite runs on the product's BLAS policy, one thread per pool (strategies/blas.py),
# from the start: every pool, also one a command loads later, is at 1, so the commands run
# in-process (which pin 1) change nothing to restore, and the two xdist workers do not
# oversubscribe two cores. Set before numpy loads; subprocesses inherit it.
for _blas_env in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas_env, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from strategies.blas import BLAS_THREADS_ENV  # noqa: E402

# CI runs a fixed example sequence (a red build is then reproducible); locally hypothesis
# explores new examples. No per-example deadline: the machine is small and shared.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO = Path(__file__).resolve().parents[1]


def _discard_event(_logger: Any, _method: str, _event: dict) -> dict:
    import structlog

    raise structlog.DropEvent


def _quiet_structlog_by_default() -> None:
    """Library code called directly by a test logs nowhere, and below warning does not even
    build its events: structlog's default config renders every event in colour to a
    captured stdout nobody reads (seconds of the run, thousands of cycles). A test that
    checks events captures them at every level (``capture_logs`` below); the commands
    configure their own logging as they do for users."""
    import logging

    import structlog

    structlog.configure(processors=[_discard_event],
                        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


_quiet_structlog_by_default()


@contextmanager
def capture_logs(processors: Any = ()) -> Iterator[list[dict[str, Any]]]:
    """``structlog.testing.capture_logs`` at every level (the suite's default filters below
    warning)."""
    import logging

    import structlog
    from structlog.testing import capture_logs as capture

    saved = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET))
    try:
        with capture(processors=processors) as events:
            yield events
    finally:
        structlog.configure(wrapper_class=saved)


def _logger_levels() -> dict[str, int]:
    import logging

    return {name: lg.level for name, lg in logging.root.manager.loggerDict.items()
            if isinstance(lg, logging.Logger)}


def _restore_logger_levels(saved: dict[str, int]) -> None:
    """Every named logger back to its level (NOTSET for one created since): a command run
    in-process (the sweep sets ``allocbot`` to the backtest's level) must not silence the
    next test's INFO events in the same worker."""
    import logging

    for name, lg in list(logging.root.manager.loggerDict.items()):
        # only the changed ones: each setLevel clears every logger's cache (quadratic)
        if isinstance(lg, logging.Logger) and lg.level != saved.get(name, logging.NOTSET):
            lg.setLevel(saved.get(name, logging.NOTSET))


@pytest.fixture(autouse=True)
def _isolated_structlog_config():
    """Commands run in-process (CliRunner) reconfigure structlog and logger levels for the
    whole process; give every test the configuration it started with."""
    import structlog

    saved, levels = structlog.get_config(), _logger_levels()
    yield
    structlog.configure(**saved)
    _restore_logger_levels(levels)
SAMPLE_PRICES = REPO / "bot" / "sample_market" / "sample_prices.csv"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(doc: dict[str, dict[str, Any]]) -> str:
    """A minimal TOML writer for test configs: top-level tables of scalars/lists/inline tables."""
    lines = []
    for table, body in doc.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {_toml_value(val)}" for key, val in body.items())
        lines.append("")
    return "\n".join(lines)


def base_config(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """A fast config: simulated broker on the bundled sample, state in tmp_path."""
    return {
        "bot": {"mode": "paper", "state_dir": str(tmp_path / "state")},
        "schedule": {"interval_secs": 0.05, "run_at_start": True},
        "broker": {"kind": "sim", "order_wait_secs": 5},
        "sim": {"prices": str(SAMPLE_PRICES), "starting_cash": 100_000.0,
                "commission_bps": 1.0, "slippage_bps": 2.0, "replay_start": date(2006, 1, 3)},
        "universe": {"symbols": ["SPY", "TLT", "IEF", "GLD", "DBC"]},
        "strategy": {"name": "fixed", "params": {"preset": "all_weather"}},
        "rebalance": {"drift_abs": 0.05, "drift_rel": 0.25},
        "risk": {"max_var": 0.05},
    }


@pytest.fixture
def write_config(tmp_path: Path):
    """Write ``base_config`` with per-table overrides (None deletes a key) and return its path."""

    def write(overrides: dict[str, dict[str, Any]] | None = None, name: str = "config.toml") -> Path:
        doc = base_config(tmp_path)
        for table, body in (overrides or {}).items():
            merged = {**doc.get(table, {}), **body}
            doc[table] = {k: v for k, v in merged.items() if v is not None}
        path = tmp_path / name
        path.write_text(to_toml(doc), encoding="utf-8")
        return path

    return write


def random_walk_prices(symbols: list[str], days: int, seed: int = 7,
                       start: str = "2020-01-01") -> pd.DataFrame:
    """Geometric random-walk closes on business days (for fast, self-contained tests)."""
    rng = np.random.default_rng(seed)
    rets = rng.normal(0.0003, 0.01, size=(days, len(symbols)))
    closes = 100 * np.exp(np.cumsum(rets, axis=0))
    index = pd.bdate_range(start, periods=days, name="date")
    return pd.DataFrame(closes, index=index, columns=symbols)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bot ARGS`` in a subprocess and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or REPO)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Parse stdout as JSON lines; every non-empty line must be a JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class CliOutcome:
    """What ``run_cli_in_process`` saw, shaped like ``subprocess.CompletedProcess`` so a call
    site can switch runners without changing its asserts."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@contextmanager
def _process_state_restored(env: dict[str, str] | None = None) -> Iterator[None]:
    """Put back what a command changes for the whole process: structlog's and stdlib
    logging's configuration (handlers bound to the runner's closed streams), the log taps and
    extra secrets ``bot.logs`` keeps, the CLI's remembered log format, SIGTERM/SIGINT
    handlers (the daemon installs its own), BLAS thread limits (a command asked for
    another count than the suite's 1) and the cwd."""
    import logging

    import structlog

    import bot.cli.startup as startup
    import bot.logs as logs

    structlog_config = structlog.get_config()
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    levels = _logger_levels()
    installed, log_format = dict(logs._installed), startup._log_format
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    cwd = Path.cwd()
    try:
        yield
    finally:
        os.chdir(cwd)
        asked = (env or {}).get(BLAS_THREADS_ENV) or os.environ.get(BLAS_THREADS_ENV)
        if asked and asked.strip() != "1":
            _blas_back_to_one()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        startup._log_format = log_format
        logs._installed.clear()
        logs._installed.update(installed)
        _restore_logger_levels(levels)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in root_handlers:
            root.addHandler(handler)
        root.setLevel(root_level)
        structlog.configure(**structlog_config)


def _blas_back_to_one() -> None:
    """Every thread pool back to the suite's one thread (one scan of the loaded libraries:
    ~6 ms, so only after a command that asked for another count)."""
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().lib_controllers:
        if lib.num_threads != 1:
            lib.set_num_threads(1)


def run_cli_in_process(*args: str, env: dict[str, str] | None = None,
                       cwd: Path | None = None) -> CliOutcome:
    """Run ``allocbot ARGS`` in this process (click's CliRunner on the real ``bot.cli.main``),
    with stdout and stderr captured apart, ``env`` added to the environment and ``cwd`` (the
    repo by default) as the working directory, as ``run_cli`` does without a new interpreter.

    For tests of what a command does; tests of the process itself (signals, SIGKILL, the
    instance lock between two processes, the real entry point's exit and streams) keep
    ``run_cli``. An exception other than SystemExit escapes and fails the test: a traceback
    is a bug, as it is from the real command.
    """
    from click.testing import CliRunner

    from bot.cli import main

    with _process_state_restored(env):
        os.chdir(cwd or REPO)
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return CliOutcome(tuple(args), result.exit_code, result.stdout, result.stderr)


def invoke_cli(*args: str) -> Any:
    """Run ``allocbot ARGS`` in-process with click's CliRunner (faster than a subprocess);
    returns the click Result (``exit_code``, ``stdout``, ``stderr``)."""
    from click.testing import CliRunner

    from bot.cli import main

    with _process_state_restored():
        return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_line_error(proc: Any) -> str:
    """A refused command's single stderr line: exit 2, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]
