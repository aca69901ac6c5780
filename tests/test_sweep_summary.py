"""``allocbot sweep``'s closing summary: on stdout (logs on stderr), with the best config's
in-sample and holdout figures; a warning when a window is too short for annualized figures;
``[backtest] benchmark = "none"``."""

from __future__ import annotations

import html
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from bot.backtest.setup import SHORT_BACKTEST_DAYS
from bot.research.space import load_space
from bot.research.sweep import SweepOptions, prepare
from tests.conftest import CliOutcome, run_cli_in_process
from tests.research_setup import logged_events, write_config, write_market, write_space

HOLDOUT = date(2021, 6, 30)
LONG_LOOKBACKS = """
[objective]
metric = "sharpe"

[space.strategy.params]
k = {int = [1, 3]}
lookback = {int = [20, 380], step = 40}
"""


def _sweep(config: Path, space: Path, out: Path, *args: str) -> CliOutcome:
    return run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--trials", "2", "--jobs", "1", "--out", str(out), *args)


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    """420 days to 2021-08: ``HOLDOUT`` leaves ~6 weeks after it."""
    return write_market(tmp_path_factory.mktemp("market"), days=420)


@pytest.fixture(scope="module")
def holdout_sweep(market, tmp_path_factory) -> tuple[CliOutcome, Path]:
    """One sweep with a holdout (run once for the tests that read its output)."""
    directory = tmp_path_factory.mktemp("holdout_sweep")
    config, space = write_config(directory, market), write_space(directory)
    out = directory / "out"
    return _sweep(config, space, out, "--holdout", str(HOLDOUT)), out


def test_sweep_prints_its_summary_and_the_holdout_figures_on_stdout(holdout_sweep):
    """Piped (not a terminal) the summary went to stderr, and never had the holdout's
    figures: a user piping stdout got nothing."""
    proc, out = holdout_sweep
    assert proc.returncode == 0, proc.stderr
    holdout = json.loads((out / "sweep.json").read_text())["holdout"]
    lines = proc.stdout.splitlines()  # not wrapped: one line each
    assert lines[0].startswith("best trial #")
    [in_sample] = [line for line in lines if line.startswith("in-sample ")]
    assert f"→ {HOLDOUT}" in in_sample
    [line] = [line for line in lines if line.startswith("holdout ")]
    assert line.startswith(f"holdout {holdout['start']} → {holdout['end']} "
                           f"({holdout['days']} trading days): sharpe {holdout['sharpe']:.3f}, "
                           f"cagr {holdout['cagr']:.2%}")
    assert sum(line.startswith("  benchmark equal_weight: sharpe ") for line in lines) == 2
    assert lines[-1] == f"wrote trials.csv, best.toml, sweep.json, report.html to {out}"
    assert "best trial #" not in proc.stderr and '"event"' not in proc.stdout


def test_sweep_warns_that_a_short_holdout_window_annualizes_a_few_weeks(holdout_sweep, market):
    proc, _ = holdout_sweep
    dates = pd.read_csv(market, index_col=0, parse_dates=True).index
    days = int((dates > pd.Timestamp(HOLDOUT)).sum())
    assert days < SHORT_BACKTEST_DAYS
    [event] = logged_events(proc.stderr.splitlines(), "sweep_window_short")
    assert (event["window"], event["days"], event["minimum"]) == ("holdout", days,
                                                                  SHORT_BACKTEST_DAYS)
    assert f"--holdout {HOLDOUT}" in event["because"]
    [warning] = [line for line in proc.stdout.splitlines() if line.startswith("warning:")]
    assert f"the holdout window {event['start']} → {event['end']} has {days} trading day(s) " \
           f"(under {SHORT_BACKTEST_DAYS})" in warning
    assert "extrapolate them to a year" in warning  # the backtest command's wording
    _, out = holdout_sweep  # the files keep it too: the report showed the Sharpe bare
    [kept] = json.loads((out / "sweep.json").read_text())["window_warnings"]
    assert warning == f"warning: {kept}"
    assert html.escape(kept) in (out / "report.html").read_text()


def test_sweep_warns_when_the_spaces_warm_up_leaves_a_short_in_sample_window(market, tmp_path):
    """Lookbacks up to 380 days on 420 days of prices: every trial's window is the last
    ~6 weeks, and its Sharpe ratio means nothing; the sweep said nothing."""
    config, space = write_config(tmp_path, market), write_space(tmp_path, LONG_LOOKBACKS)
    proc = _sweep(config, space, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    [event] = logged_events(proc.stderr.splitlines(), "sweep_window_short")
    assert event["window"] == "in-sample" and event["days"] < SHORT_BACKTEST_DAYS
    assert "381-row warm-up of the strategy momentum" in event["because"]
    assert "ends at the last day of the price data" in event["because"]
    [warning] = [line for line in proc.stdout.splitlines() if line.startswith("warning:")]
    assert f"has {event['days']} trading day(s)" in warning and "[space] ranges" in warning


def test_sweep_short_window_names_the_configured_start_and_end(market, tmp_path):
    config = write_config(tmp_path, market, backtest={"start": date(2021, 3, 1),
                                                      "end": date(2021, 3, 31)})
    space = write_space(tmp_path)
    inputs = prepare(SweepOptions(config, space, tmp_path / "out"), load_space(space))
    [warning] = inputs.window_warnings
    assert warning.startswith("the in-sample window 2021-03-01 → 2021-03-31 has 23 trading")
    assert "it starts on [backtest].start 2021-03-01, and ends at [backtest].end 2021-03-31" \
        in warning


def test_sweep_long_enough_windows_have_no_warning(market, tmp_path):
    config, space = write_config(tmp_path, market), write_space(tmp_path)
    inputs = prepare(SweepOptions(config, space, tmp_path / "out", holdout=date(2021, 4, 30)),
                     load_space(space))
    assert inputs.window_warnings == ()


def test_sweep_with_benchmark_none_reports_the_best_config_alone(market, tmp_path):
    """``[backtest] benchmark = "none"``: the sweep ran the default benchmark's lookup and
    failed; now the best config's backtests, report and summary have no benchmark."""
    config = write_config(tmp_path, market, backtest={"benchmark": "none"})
    out = tmp_path / "out"
    proc = _sweep(config, write_space(tmp_path), out, "--holdout", "2021-04-30")
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stdout.splitlines() if "benchmark" in line
                and not line.startswith("wrote ")]  # (the path names this test)
    assert "benchmark" not in json.loads((out / "best" / "metrics.json").read_text())
    assert "benchmark" not in json.loads((out / "holdout" / "metrics.json").read_text())
    assert "benchmark in-sample" not in (out / "report.html").read_text()
    assert any(line.startswith("holdout 2021-05-03 → ") for line in proc.stdout.splitlines())
