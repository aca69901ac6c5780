"""``allocbot backtest`` with the shipped config.toml, as a user runs it: whole-process wall
time (bar: 2 s), beside ``python -c "import pandas"`` in the same run, and where it goes.

    python benchmarks/bench_backtest_shipped.py [--repeats 5] [--baseline DIR]

Each round runs, as fresh processes: the pandas import, the real command, and the same
command in a child that times its phases by wrapping the functions the command calls (the
library is not instrumented): interpreter start, CLI import, the backtest's own imports,
config, price file, engine (strategy + benchmark runs and their metrics), report (CSVs and
JSON, the matplotlib import, drawing and encoding the charts, the stacked PNG, the HTML)
and the rest (the summary table, exit). Medians of the rounds; CPU is user + sys.
``--baseline DIR`` (an older checkout) also times the whole command from that tree in the
same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from user_process import BYTECODE_NOTE, user_env, warm_bytecode

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config.toml"
_T0 = time.perf_counter()


def run_once(args: list[str], tree: Path = REPO) -> tuple[float, float, float, str]:
    """Wall s, CPU s, peak RSS MB and stdout of one fresh process run from ``tree``."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tree,
                            env=user_env(tree))
    out = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed")
    return (time.perf_counter() - start, usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024, out)


class _Phases:
    """Wall seconds spent in wrapped functions, by phase name."""

    def __init__(self) -> None:
        self.secs: dict[str, float] = {}

    def wrap(self, module: Any, attr: str, phase: str) -> None:
        fn = getattr(module, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.secs[phase] = self.secs.get(phase, 0.0) + time.perf_counter() - start

        setattr(module, attr, timed)


def child(out_dir: str) -> None:
    """One backtest with its phases timed; prints them as JSON on the last line."""
    phases = _Phases()
    start = time.perf_counter()
    from bot.cli import main

    phases.secs["cli import"] = time.perf_counter() - start
    command_start = time.perf_counter()
    command = sys.modules["bot.cli.backtest"]  # bot.cli.backtest is also the click command

    phases.wrap(command, "load", "config")
    load_started: list[float] = []
    original_load = command.load

    def load(*args: Any, **kwargs: Any) -> Any:
        load_started.append(time.perf_counter())
        _install_backtest_wrappers(phases)
        return original_load(*args, **kwargs)

    command.load = load  # type: ignore[assignment]
    main(["backtest", "--config", str(CONFIG), "--out", out_dir], standalone_mode=False)
    total = time.perf_counter() - _T0
    phases.secs["backtest imports"] = load_started[0] - command_start
    print(json.dumps({"total_in_process": total, **phases.secs}))


def _install_backtest_wrappers(phases: _Phases) -> None:
    import bot.backtest.report as report
    import bot.backtest.setup as setup
    import bot.backtest.tearsheet as tearsheet

    phases.wrap(setup, "load_backtest_prices", "price file")
    phases.wrap(setup, "run_configured", "engine")
    phases.wrap(report, "write_outputs", "report")
    phases.wrap(tearsheet, "render", "report: draw + encode charts")
    phases.wrap(tearsheet, "stacked_png", "report: stacked PNG")
    original = tearsheet.write_tearsheet

    def write_tearsheet(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        import bot.backtest.charts  # noqa: F401  (matplotlib)

        phases.secs["report: matplotlib import"] = time.perf_counter() - start
        return original(*args, **kwargs)

    tearsheet.write_tearsheet = write_tearsheet  # type: ignore[assignment]


ORDER = ("interpreter start", "cli import", "backtest imports", "config", "price file",
         "engine", "report", "report: matplotlib import", "report: draw + encode charts",
         "report: stacked PNG", "report: rest (CSV, JSON, figures, HTML)", "rest (summary, exit)")


def split_row(wall: float, child_secs: dict[str, float]) -> dict[str, float]:
    row = dict(child_secs)
    row["interpreter start"] = wall - row.pop("total_in_process")
    row["report: rest (CSV, JSON, figures, HTML)"] = row["report"] - sum(
        row.get(k, 0.0) for k in ORDER if k.startswith("report: ") and "rest" not in k)
    top = ("interpreter start", "cli import", "backtest imports", "config", "price file",
           "engine", "report")
    row["rest (summary, exit)"] = wall - sum(row.get(k, 0.0) for k in top)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="an older source tree whose whole command is timed alongside")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        child(opts.child)
        return
    py = sys.executable
    walls: dict[str, list[tuple[float, float, float]]] = {"pandas": [], "backtest": [],
                                                          "baseline": []}
    splits: list[dict[str, float]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        warm_bytecode([py, "-m", "bot", "backtest", "--config", str(CONFIG), "--out",
                       f"{tmp}/warm"], REPO)
        if opts.baseline is not None:
            warm_bytecode([py, "-m", "bot", "backtest", "--config",
                           str(opts.baseline / "config.toml"), "--out", f"{tmp}/warm_base"],
                          opts.baseline)
        for i in range(opts.repeats):
            walls["pandas"].append(run_once([py, "-c", "import pandas"])[:3])
            walls["backtest"].append(run_once([py, "-m", "bot", "backtest", "--config",
                                               str(CONFIG), "--out", f"{tmp}/cli{i}"])[:3])
            if opts.baseline is not None:
                walls["baseline"].append(run_once(
                    [py, "-m", "bot", "backtest", "--config", str(opts.baseline / "config.toml"),
                     "--out", f"{tmp}/base{i}"], opts.baseline)[:3])
            wall, _, _, out = run_once([py, __file__, "--child", f"{tmp}/split{i}"])
            splits.append(split_row(wall, json.loads(out.strip().splitlines()[-1])))
    print(f"shipped config.toml, {opts.repeats} interleaved rounds, fresh processes; load "
          f"average {load_before:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"{BYTECODE_NOTE}")
    for label, rows in (('python -c "import pandas"', walls["pandas"]),
                        ("allocbot backtest (whole process)", walls["backtest"]),
                        ("  (baseline tree)", walls["baseline"])):
        if not rows:
            continue
        print(f"{label:<36} wall median {statistics.median(r[0] for r in rows):.3f} s  CPU "
              f"median {statistics.median(r[1] for r in rows):.3f} s  peak RSS "
              f"{max(r[2] for r in rows):.0f} MB")
    print("split (wall, median of the timed child runs):")
    for key in ORDER:
        values = [row.get(key, 0.0) for row in splits]
        print(f"  {key:<42} {statistics.median(values):.3f} s")


if __name__ == "__main__":
    main()
