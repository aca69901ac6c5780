"""``allocbot sweep`` and ``allocbot compare``: research over many backtests (the
``research`` extra: Optuna, Dask). Progress is a rich bar on a terminal, JSON lines
(structlog, stderr) otherwise; the closing summary is the commands' output, on stdout."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from bot.cli.startup import config_option, fail_on, load
from bot.errors import AllocbotError, ConfigError
from bot.logs import (
    TrialEvents,
    backtest_repeats,
    configure_logging,
    counted_trial_events,
    log_repeated_warnings,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by Ctrl-C (128 + SIGINT)


def _ctrl_c_exits_130(next_step: Callable[[dict[str, Any]], str]) -> Callable[[F], F]:
    """Ctrl-C anywhere in the command, its imports and config load included, ends it with
    ``allocbot: interrupted; NEXT STEP`` and exit 130: without this, a Ctrl-C before the
    research itself began got click's bare "Aborted!" and exit 1. ``next_step`` gets the
    command's parameters and says what to run now."""
    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(**params: Any) -> Any:
            try:
                return command(**params)
            except KeyboardInterrupt:
                click.echo(f"allocbot: interrupted; {next_step(params)}", err=True)
                sys.exit(EXIT_INTERRUPTED)

        return cast(F, run)

    return decorate


# the sweep's study journal in --out (bot.research.study.JOURNAL_FILE; importing that
# module to read the name would cost a Ctrl-C ~1 s of backtest imports)
SWEEP_JOURNAL = "study.journal"


def _sweep_next_step(params: dict[str, Any]) -> str:
    """What to run after a sweep is interrupted: ``--resume`` once its journal exists in
    ``--out`` (a plain rerun is then refused); before that nothing was saved, so the same
    command (less a ``--resume`` with nothing to resume) starts the sweep."""
    out_dir, resume = params["out_dir"], params["resume"]
    if (out_dir / SWEEP_JOURNAL).exists():
        return f"`--resume --out {out_dir}` continues"
    again = "the same command without --resume" if resume else "the same command"
    return f"nothing was saved to {out_dir} yet; run {again} to start the sweep"


def _compare_next_step(params: dict[str, Any]) -> str:
    """What redoes an interrupted comparison (it has no resume: it starts over)."""
    return (f"the comparison in {params['out_dir']} is incomplete; run the same command "
            "again (it starts over)")


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A callback (finished, total, best) drawing a rich bar, or None."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("best {task.fields[best]}"), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task("sweep", total=None, best="—")

        def update(done: int, total: int, best: float | None) -> None:
            bar.update(task, completed=done, total=total,
                       best="—" if best is None else f"{best:.4f}")

        yield update


@click.command()
@config_option
@click.option("--space", "space_path", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="Search space TOML ([space...] ranges, [objective]).")
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Trials to finish (default 100; grid: every point).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Local worker processes (default: the cores).")
@click.option("--dask", "dask_address", default=None, metavar="ADDRESS",
              help="Run trials on an existing Dask distributed scheduler (tcp://host:port).")
@click.option("--holdout", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Trials see only prices up to this date; the best config is then "
                   "backtested on the days after it.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("sweep"), show_default=True, help="Output directory (and journal).")
@click.option("--resume", is_flag=True, help="Continue the sweep in --out.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--sampler", type=click.Choice(["tpe", "grid"]), default="tpe",
              show_default=True)
@click.option("--walk-forward", "walk_forward", default=None, metavar="TRAIN:TEST",
              help="Inside each trial, refit on TRAIN days and trade the next TEST days "
                   "(learning strategies; e.g. 756:63).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=8,
              show_default=True, help="Trials asked together (changes the trials).")
@_ctrl_c_exits_130(_sweep_next_step)
def sweep(config_path: Path, space_path: Path, trials: int | None, jobs: int | None,
          dask_address: str | None, holdout: Any, out_dir: Path, resume: bool, seed: int,
          sampler: str, walk_forward: str | None, batch_size: int) -> None:
    """Search strategy/rebalance/risk parameters over many backtests; write the report."""
    from bot.backtest.walk_forward import parse_walk_forward
    from bot.research.results import finish_sweep
    from bot.research.space import load_space
    from bot.research.study import finished_trials
    from bot.research.sweep import SweepOptions, driver_log_levels, prepare, run_sweep
    from bot.research.sweep_report import write_sweep_report

    cfg = load(config_path, logs_to_stderr=True)
    # the trials' warnings and errors (a line per cycle of hundreds of backtests) are
    # counted, not written, wherever the trials run; one trial_warnings event sums them
    configure_logging(cfg.bot.log_format, "info", sys.stderr, drops=[TrialEvents()])
    tty = sys.stderr.isatty()  # a bar on a terminal, JSON lines otherwise
    driver_log_levels(cfg.backtest.log_level, "warning" if tty else "info")
    if jobs is not None and dask_address is not None:
        fail_on(ConfigError("--jobs and --dask: give one of them"))
    try:
        wf = parse_walk_forward(walk_forward) if walk_forward else None
        options = SweepOptions(config_path, space_path, out_dir, trials,
                               jobs or os.cpu_count() or 1, dask_address,
                               holdout.date() if holdout else None, resume, seed, sampler,
                               batch_size, wf)
        space = load_space(space_path)
        inputs = prepare(options, space)
        with _progress(tty) as on_batch:
            study, clock = run_sweep(options, inputs, on_batch)
        with counted_trial_events() as reruns:  # the best config's backtests, as trials'
            summary = finish_sweep(out_dir, inputs, finished_trials(study), holdout is not None,
                                   wf)
            write_sweep_report(out_dir, summary, space, study, inputs.settings,
                               charts=cfg.backtest.tearsheet)
        _log_trial_events(clock.trial_events, reruns)
    except AllocbotError as exc:
        fail_on(exc)
    _print_sweep(summary, out_dir, space.objective.constraints)
    if summary.best is None:  # the sweep ran but has no result: best.toml does not exist
        sys.exit(1)


def _log_trial_events(trials: dict[str, int], reruns: dict[str, int]) -> None:
    """The sweep's ``trial_warnings``: the warning and error events its trials' backtests
    and the best config's re-runs logged, counted instead of written."""
    counts = {e: trials.get(e, 0) + reruns.get(e, 0) for e in sorted({*trials, *reruns})}
    if counts:
        import structlog

        structlog.get_logger("allocbot.research").warning(
            "trial_warnings", counts=counts,
            note="summed over this run's trials and the best config's re-runs, not written "
                 "one by one; `allocbot backtest --config best.toml` writes them")


def _print_sweep(summary: Any, out_dir: Path, constraints: tuple[Any, ...] = ()) -> None:
    """The sweep's summary on stdout (the command's output: piped, it is what the pipe
    gets); logs and the progress bar stay on stderr. Long lines are not wrapped."""
    from rich.console import Console

    from bot.research.sweep_report import console_summary

    console = Console(soft_wrap=True)
    for line in console_summary(summary, out_dir, constraints):
        console.print(line)


@click.command()
@click.argument("specs", nargs=-1, required=True)
@config_option
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("compare"), show_default=True, help="Output directory.")
@_ctrl_c_exits_130(_compare_next_step)
def compare(specs: tuple[str, ...], config_path: Path, out_dir: Path) -> None:
    """Backtest several strategies on the same data, costs and calendar, side by side.

    SPEC is a registry name with optional params (momentum:k=2,lookback=126) or a config
    file (its [strategy] table is used)."""
    from rich.console import Console

    from bot.research.compare import compare_table, parse_spec, run_compare

    cfg = load(config_path, logs_to_stderr=True)
    driver_level = cfg.backtest.log_level
    repeats = backtest_repeats(driver_level)
    configure_logging(cfg.bot.log_format, driver_level, sys.stderr,
                      drops=[repeats] if repeats else ())
    try:
        parsed = [parse_spec(s) for s in specs]
        result = run_compare(cfg, parsed, out_dir)
    except AllocbotError as exc:
        fail_on(exc)
    log_repeated_warnings(repeats)
    console = Console()
    console.print(compare_table(result))
    console.print(f"wrote compare.csv, compare.png, report.html and one backtest folder per "
                  f"strategy to {out_dir}")
