"""Wall time of the read-only operator commands, `allocbot status` and `allocbot health`
(budget 0.4 s each), on a state file with N journaled cycles, and whether pandas loads.

    python benchmarks/bench_status.py [--cycles 500] [--repeats 15]

Prints the median and max of `repeats` runs of each command as a fresh process (what an
operator or a Docker HEALTHCHECK pays), the reference `python -c pass`, and the modules
that matter on that path.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = """[bot]
state_dir = "state"
[schedule]
interval_secs = 0.01
[sim]
replay_start = 2007-01-03
[universe]
symbols = ["SPY", "TLT", "IEF", "GLD", "DBC"]
[strategy]
name = "fixed"
[strategy.params]
preset = "all_weather"
"""


def timed(args: list[str], repeats: int) -> tuple[float, float, float]:
    """Median and max wall seconds, and median CPU seconds (user + sys) of the child: on a
    busy shared host the CPU time is what the command costs on an idle one."""
    secs, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=False)
        secs.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(secs), max(secs), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=15)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(CONFIG)
        allocbot = [sys.executable, "-m", "bot"]
        subprocess.run([*allocbot, "run", "--config", str(config), "--max-cycles",
                        str(opts.cycles)], capture_output=True, check=True, cwd=REPO)
        print(f"state: {opts.cycles} cycles journaled; {opts.repeats} runs each, fresh process; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for label, args in (("python -c pass", [sys.executable, "-c", "pass"]),
                            ("allocbot status", [*allocbot, "status", "--config", str(config)]),
                            ("allocbot status --json",
                             [*allocbot, "status", "--json", "--config", str(config)]),
                            ("allocbot health", [*allocbot, "health", "--config", str(config)])):
            median, worst, cpu = timed(args, opts.repeats)
            print(f"{label:<24} wall median {median:.3f} s  max {worst:.3f} s   "
                  f"CPU median {cpu:.3f} s")
        probe = (f"import sys, runpy; sys.argv = ['allocbot', 'status', '--config', {str(config)!r}]\n"
                 "try: runpy.run_module('bot', run_name='__main__')\n"
                 "except SystemExit: pass\n"
                 "print('heavy modules loaded:', sorted(m for m in ('pandas', 'scipy', 'sklearn',"
                 " 'rich', 'alpaca', 'matplotlib') if m in sys.modules) or 'none',"
                 " '| numpy:', 'numpy' in sys.modules, file=sys.stderr)")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             cwd=REPO)
        print("status path:", out.stderr.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
