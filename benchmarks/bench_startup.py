"""Start-up cost of the CLI: each command's median wall time beside ``python -c "import
pandas"`` measured in the same run (the reference: a command that reads prices cannot beat
it), with the median CPU time and the peak RSS of the child.

    python benchmarks/bench_startup.py [--repeats 9] [--cycles 20] [--baseline DIR]

Uses the shipped ``config.toml`` (fixed strategy, bundled sample prices), its state in a
temporary directory (``ALLOCBOT_STATE_DIR``) filled by ``allocbot run --max-cycles N`` so
``status``/``health`` have cycles to report. Targets: ``check-config`` and ``weights``
within 0.2 s of the pandas import; ``--help``, ``status``, ``health`` at most 0.4 s.
Runs interleave the commands (one of each per round), so a burst of load on a shared host
hits them all alike. ``--baseline DIR`` (an older checkout, e.g. ``git archive REV | tar -x
-C DIR``) runs every command from that tree too, in the same rounds: before and after side
by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from user_process import BYTECODE_NOTE, user_env, warm_bytecode

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config.toml"


def run_once(args: list[str], env: dict[str, str], tree: Path = REPO
             ) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS (MB) of one fresh process run
    from the source tree ``tree`` (first on its path)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tree, env=user_env(tree, env))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # health exits 1 when the last success is old
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def commands() -> dict[str, list[str]]:
    py, cfg = sys.executable, ["--config", str(CONFIG)]
    return {
        'python -c "import pandas"': [py, "-c", "import pandas"],
        "allocbot --help": [py, "-m", "bot", "--help"],
        "allocbot check-config": [py, "-m", "bot", "check-config", *cfg],
        "allocbot status": [py, "-m", "bot", "status", *cfg],
        "allocbot health": [py, "-m", "bot", "health", *cfg],
        "allocbot weights": [py, "-m", "bot", "weights", *cfg],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="an older source tree to time beside this one")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ALLOCBOT_STATE_DIR": tmp}
        subprocess.run([sys.executable, "-m", "bot", "run", "--config", str(CONFIG),
                        "--max-cycles", str(opts.cycles)], env=env, cwd=REPO, check=True,
                       capture_output=True)
        trees = {"": REPO} if opts.baseline is None else {"": REPO,
                                                          "  (baseline)": opts.baseline}
        cmds = commands()
        runs: dict[str, list[tuple[float, float, float]]] = {}
        for args in cmds.values():
            for tree in trees.values():
                warm_bytecode(args, tree, env)
        load_before = os.getloadavg()[0]
        for _ in range(opts.repeats):
            for label, args in cmds.items():
                for suffix, tree in trees.items():
                    if suffix and label.startswith("python"):
                        continue  # the reference does not depend on the tree
                    runs.setdefault(label + suffix, []).append(run_once(args, env, tree))
    print(f"{opts.repeats} interleaved runs each, fresh processes; load average "
          f"{load_before:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {BYTECODE_NOTE}")
    pandas_wall = statistics.median(r[0] for r in runs['python -c "import pandas"'])
    for label, rows in runs.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        rss = max(r[2] for r in rows)
        print(f"{label:<40} wall median {wall:.3f} s ({wall - pandas_wall:+.3f} vs pandas)"
              f"  CPU median {cpu:.3f} s  peak RSS {rss:5.0f} MB")


if __name__ == "__main__":
    main()
