"""``allocbot sweep`` end to end: worker-count independence (Dask), SIGKILL + resume,
best.toml reproduction through ``allocbot backtest``, a holdout no trial can see."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bot.errors import ConfigError
from bot.logs import TrialEvents, configure_logging
from bot.research.results import best_trial, run_best
from bot.research.space import apply_params, load_space
from bot.research.study import (
    ask_batch,
    close_journal,
    finished_trials,
    flush_journal,
    open_study,
)
from bot.research.sweep import SweepOptions, prepare, run_sweep, trial_values
from tests.conftest import REPO, run_cli, run_cli_in_process
from tests.research_setup import (
    logged_events,
    trial_rows,
    write_config,
    write_market,
    write_space,
)

HOLDOUT = date(2021, 6, 30)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The market, config and space the sweeps here read (built once; each test writes its
    sweeps under its own tmp_path)."""
    directory = tmp_path_factory.mktemp("sweep_inputs")
    prices = write_market(directory, days=420)  # to 2021-08: HOLDOUT leaves ~6 weeks after
    return write_config(directory, prices), write_space(directory)


def _sweep(config: Path, space: Path, out: Path, **kw) -> list:
    options = SweepOptions(config, space, out, **kw)
    prepared = prepare(options, load_space(space))
    study, _ = run_sweep(options, prepared)
    return finished_trials(study)


def _assert_trials_csv_equal(out: Path, straight: list) -> None:
    """``trials.csv`` holds exactly the uninterrupted sweep's N trials: none repeated, the
    same parameters and values, in order."""
    rows = trial_rows(out)
    assert rows["trial"].tolist() == list(range(len(straight)))
    params = [c for c in rows.columns if c.startswith("param:")]
    expected = pd.DataFrame([{f"param:{k}": v for k, v in r.params.items()} for r in straight])
    pd.testing.assert_frame_equal(rows[params], expected[params], check_dtype=False)
    assert rows["value"].tolist() == [r.value for r in straight]


def _signature(rows: list) -> list[tuple]:
    return [(r.slot, tuple(sorted(r.params.items())), r.value, r.outcome) for r in rows]


@pytest.fixture(scope="module")
def straight_8(inputs, tmp_path_factory) -> list:
    """The uninterrupted sweep (8 trials, seed 3, batches of 2) an interrupted and resumed
    sweep with those settings must end equal to: run once for every test that compares."""
    config, space = inputs
    return _sweep(config, space, tmp_path_factory.mktemp("straight") / "out", trials=8,
                  jobs=1, seed=3, batch_size=2)


@pytest.fixture(scope="module")
def first_4_of_8(inputs, tmp_path_factory) -> Path:
    """The out dir of a finished 4-trial sweep (seed 3, batches of 2): the first half of
    ``straight_8``, which a test copies and then damages or resumes to 8."""
    config, space = inputs
    out = tmp_path_factory.mktemp("first_half") / "out"
    _sweep(config, space, out, trials=4, jobs=1, seed=3, batch_size=2)
    return out


@pytest.fixture
def dask_client():  # closed right after each test that uses it, not idling to the module's end
    # distributed's INFO handler stays quiet only if this is set before its import; the
    # spawned workers inherit it (FIELD-NOTES, Dask)
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    from distributed import Client, LocalCluster

    # dashboard_address=None still binds the scheduler's HTTP routes to :8787 and warns
    # when another cluster on the host holds it; a random loopback port never collides

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        yield client


def test_sweep_dask_two_workers_same_trials_best_and_warning_counts_as_one_job(
        inputs, tmp_path, dask_client, capfd):
    """Also: a risk limit binding in every trial (a warning a trial: its rebalances bind in
    one spell) is counted the same in the driver and in the workers' processes, and not one
    of its warnings is written (spawned workers once wrote them to stdout in structlog's
    default format)."""
    _, space = inputs
    prices = Path(str(inputs[0])).parent / "prices.csv"
    config = write_config(tmp_path, prices, risk={"lookback_days": 20, "max_var": 0.002})
    configure_logging("json", "info", sys.stderr, drops=[TrialEvents()])  # as the CLI does
    # two batches of 3, each spread over both workers
    one, one_events = _sweeplogged_events(config, space, tmp_path / "one", trials=6, jobs=1, seed=5,
                                    batch_size=3)
    on_dask, dask_events = _sweeplogged_events(config, space, tmp_path / "dask", trials=6,
                                         dask=dask_client, seed=5, batch_size=3)
    assert len(one) == 6
    assert _signature(on_dask) == _signature(one)
    best = max((r for r in one if r.outcome == "complete"), key=lambda r: r.value)
    best_dask = max((r for r in on_dask if r.outcome == "complete"), key=lambda r: r.value)
    assert best_dask.params == best.params and best_dask.slot == best.slot
    assert one_events["risk_limited"] >= 6 and dask_events == one_events
    written = capfd.readouterr()
    # (logging at info here: a spell's later cycles say it at info, and pass)
    assert not [line for line in (written.out + written.err).splitlines()
                if "risk_limited" in line and '"level": "info"' not in line]


def _sweeplogged_events(config: Path, space: Path, out: Path, **kw) -> tuple[list, dict[str, int]]:
    options = SweepOptions(config, space, out, **kw)
    study, clock = run_sweep(options, prepare(options, load_space(space)))
    return finished_trials(study), clock.trial_events


def _journal_trials(out: Path) -> list:
    """The trials in ``out``'s journal file as Optuna's own file backend reads them."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name="allocbot-sweep", storage=storage).get_trials()


def _results_in_journal(journal: Path) -> int:
    return journal.read_text(errors="replace").count('"outcome"') if journal.exists() else 0


@pytest.mark.slow  # the same claim, with the kill placed exactly: ..._between_flushes_...
def test_sweep_sigkill_then_resume_finishes_exactly_n_trials_none_repeated(inputs, tmp_path,
                                                                           straight_8):
    config, space = inputs
    out = tmp_path / "killed"
    args = ["sweep", "--config", str(config), "--space", str(space), "--trials", "8",
            "--jobs", "1", "--batch", "2", "--seed", "3", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _results_in_journal(out / "study.journal") < 3 and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    finished_before = _results_in_journal(out / "study.journal")
    assert 3 <= finished_before < 8, "the kill must land mid-sweep"
    resumed = run_cli_in_process(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _assert_trials_csv_equal(out, straight_8)


@pytest.mark.parametrize("asked_before_kill", [[4], [4, 5]])
def test_sweep_killed_mid_ask_resumes_to_the_uninterrupted_trials(inputs, tmp_path,
                                                                  asked_before_kill,
                                                                  first_4_of_8, straight_8):
    """A kill between two asks of one batch (slot 4 asked, slot 5 not) must not change
    which trials the sweep runs: the resumed sweep equals an uninterrupted one."""
    config, space = inputs
    out = tmp_path / "killed"
    shutil.copytree(first_4_of_8, out)
    options = SweepOptions(config, space, out, trials=8, jobs=1, seed=3, batch_size=2,
                           resume=True)
    prepared = prepare(options, load_space(space))
    study = open_study(out, prepared.space.objective.direction, prepared.settings, True)
    ask_batch(study, prepared.space, asked_before_kill, 2, 3, "tpe", {})
    flush_journal(study)  # a kill inside a flush can leave just these asks on disk
    close_journal(study)  # ... and then "killed"
    running = [t for t in _journal_trials(out) if t.state.name == "RUNNING"]
    assert sorted(t.user_attrs["slot"] for t in running) == asked_before_kill
    resumed, _ = run_sweep(options, prepared)
    assert _signature(finished_trials(resumed)) == _signature(straight_8)


def _sweep_cli(config: Path, space: Path, out: Path, trials: int, batch: int) -> list[str]:
    return ["sweep", "--config", str(config), "--space", str(space), "--trials", str(trials),
            "--jobs", "1", "--batch", str(batch), "--seed", "3", "--out", str(out)]


def _grid_sweep_cli(config: Path, space: Path, out: Path) -> None:
    """``allocbot sweep`` over the whole grid, inline; it must succeed."""
    proc = run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--sampler", "grid", "--jobs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr


def test_sweep_sigkill_between_flushes_loses_only_the_running_batch_and_resumes_exactly(
        inputs, tmp_path):
    """Fault injection: SIGKILL while batch 1 runs (asked, not yet flushed). The journal
    must hold batch 0 whole and nothing of batch 1; the resume re-asks batch 1 from its
    seed and ends with the uninterrupted sweep's trials."""
    config, space = inputs
    out = tmp_path / "killed"
    args = _sweep_cli(config, space, out, trials=8, batch=4)
    proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # bounded: the sweep ends by itself if never killed
        seen.append(line)
        if [e["batch"] for e in logged_events([line], "sweep_batch_started")] == [1]:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=10)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the kill must land mid-sweep"
    # the fault hit the path: batch 1 was asked and handed to the runner, never finished
    assert [e["batch"] for e in logged_events(seen, "sweep_batch_finished")] == [0]
    on_disk = _journal_trials(out)
    assert sorted(t.user_attrs["slot"] for t in on_disk) == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in on_disk)
    # the resume (the CLI's --resume path runs in ..._torn_last_journal_line_...)
    options = SweepOptions(config, space, out, trials=8, jobs=1, seed=3, batch_size=4,
                           resume=True)
    resumed, _ = run_sweep(options, prepare(options, load_space(space)))
    assert len(_journal_trials(out)) == 8  # batch 0 kept, not run again: exactly N
    straight = _sweep(config, space, tmp_path / "straight", trials=8, jobs=1, seed=3,
                      batch_size=4)
    assert _signature(finished_trials(resumed)) == _signature(straight)


def test_sweep_torn_last_journal_line_is_cut_and_the_resume_is_exact(inputs, tmp_path,
                                                                      first_4_of_8, straight_8):
    """Fault injection: a kill inside a flush leaves half a line at the end of the journal.
    ``allocbot sweep --resume`` cuts it (and says so), keeps the whole lines before it, and
    finishes with the uninterrupted sweep's trials; the file stays readable by Optuna's own
    backend."""
    config, space = inputs
    out = tmp_path / "torn"
    shutil.copytree(first_4_of_8, out)
    journal = out / "study.journal"
    whole = journal.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[1]
    journal.write_bytes(whole + last[: len(last) // 2])  # half an entry, no newline
    resumed = run_cli_in_process(*_sweep_cli(config, space, out, trials=8, batch=2),
                                 "--resume")
    assert resumed.returncode == 0, resumed.stderr
    dropped = logged_events(resumed.stderr.splitlines(), "sweep_journal_torn_tail_dropped")
    assert [e["bytes"] for e in dropped] == [len(last) // 2]
    assert logged_events(resumed.stderr.splitlines(), "sweep_started")[0]["already_finished"] == 4
    assert journal.read_bytes().startswith(whole)
    assert len(_journal_trials(out)) == 8
    _assert_trials_csv_equal(out, straight_8)


def test_sweep_second_writer_on_the_same_out_is_refused_naming_the_journal(inputs, tmp_path):
    config, space = inputs
    options = SweepOptions(config, space, tmp_path / "out", trials=2, jobs=1)
    prepared = prepare(options, load_space(space))
    first = open_study(options.out_dir, "maximize", prepared.settings, False)
    try:
        proc = run_cli(*_sweep_cli(config, space, options.out_dir, trials=2, batch=2),
                       "--resume")
    finally:
        close_journal(first)
    assert proc.returncode == 2
    assert "study.journal: another sweep is writing this study" in proc.stderr
    assert not (options.out_dir / "trials.csv").exists()


def test_sweep_best_toml_backtests_to_the_reported_metrics(inputs, tmp_path):
    """Also: a VaR limit binding in every trial is summed in one trial_warnings event
    (a warning a trial at least), and none of its warnings is written."""
    _, space = inputs
    prices = Path(str(inputs[0])).parent / "prices.csv"
    config = write_config(tmp_path, prices, risk={"lookback_days": 20, "max_var": 0.002})
    out = tmp_path / "sweep"
    proc = run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--trials", "6", "--jobs", "1", "--holdout", str(HOLDOUT),
                              "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    [summed] = logged_events(proc.stderr.splitlines(), "trial_warnings")
    assert summed["counts"]["risk_limited"] >= 6
    assert "risk_limited" not in proc.stdout and '"event": "risk_limited"' not in proc.stderr
    reported = json.loads((out / "sweep.json").read_text())["best"]["metrics"]
    bt = run_cli_in_process("backtest", "--config", str(out / "best.toml"), "--out",
                            str(tmp_path / "bt"))
    assert bt.returncode == 0, bt.stderr
    again = json.loads((tmp_path / "bt" / "metrics.json").read_text())["strategy"]
    for key, value in reported.items():
        if key == "elapsed_secs" or value is None:
            continue
        if isinstance(value, str | list | dict):  # exact: dates, drawdown periods
            assert again[key] == value, key
        else:
            assert again[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    page = (out / "report.html").read_text()
    assert "Is the winner luck?" in page and "holdout" in page
    assert "http://" not in page and "https://" not in page  # offline: no CDN


def test_sweep_report_draws_its_charts_when_the_tearsheet_is_on(inputs, tmp_path):
    """[backtest] tearsheet = true (the default): the report embeds its charts, offline."""
    _, space = inputs
    prices = Path(str(inputs[0])).parent / "prices.csv"
    config = write_config(tmp_path, prices, backtest={"tearsheet": True})
    out = tmp_path / "sweep"
    proc = run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--trials", "3", "--jobs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = (out / "report.html").read_text()
    for png in ("history.png", "parallel.png", "in_vs_out.png"):
        assert (out / png).stat().st_size > 0
    assert page.count('<img src="data:image/png;base64,') >= 3 and "Charts left out" not in page


def test_sweep_holdout_perturbed_future_changes_no_in_sample_metric(tmp_path):
    space = write_space(tmp_path)
    base_prices = write_market(tmp_path)
    frame = pd.read_csv(base_prices, index_col="date", parse_dates=True)
    after = frame.index > pd.Timestamp(HOLDOUT)
    shocked = frame.copy()
    shocked.loc[after] *= np.random.default_rng(0).uniform(0.5, 1.5, size=(after.sum(), 4))
    other = tmp_path / "other"
    other.mkdir()
    shocked.to_csv(other / "prices.csv")
    runs = []
    for directory, prices in ((tmp_path, base_prices), (other, other / "prices.csv")):
        config = write_config(directory, prices)
        options = SweepOptions(config, space, directory / "out", trials=6, jobs=1, seed=1,
                               holdout=HOLDOUT)
        prepared = prepare(options, load_space(space))
        study, _ = run_sweep(options, prepared)
        rows = finished_trials(study)
        best = best_trial(rows, prepared.space.objective.direction)
        assert best is not None
        # the best config backtested after the holdout date, as finish_sweep does for
        # holdout/ (the CLI's holdout report is in ..._best_toml_backtests_...)
        _, holdout = run_best(prepared, apply_params(
            prepared.base_raw, trial_values(prepared.space, best.params)), holdout=True)
        runs.append((rows, holdout))
    (rows_a, holdout_a), (rows_b, holdout_b) = runs
    assert [r.params for r in rows_a] == [r.params for r in rows_b]
    for a, b in zip(rows_a, rows_b, strict=True):
        ma, mb = a.result["metrics"], b.result["metrics"]
        assert {k: ma[k] for k in ma if k != "elapsed_secs"} == \
               {k: mb[k] for k in mb if k != "elapsed_secs"}
        assert ma["end"] <= str(HOLDOUT)
    assert holdout_a is not None and holdout_b is not None
    assert holdout_a.metrics["strategy"]["sharpe"] != holdout_b.metrics["strategy"]["sharpe"]


def test_sweep_walk_forward_trials_report_the_walk_forward_backtest(inputs, tmp_path):
    from bot.backtest.setup import load_backtest_prices, run_configured
    from bot.backtest.walk_forward import WalkForward
    from bot.config import parse_config

    config, space = inputs
    wf = WalkForward(150, 21)  # TRAIN beyond the strategies' own warm-up: it sets day one
    options = SweepOptions(config, space, tmp_path / "wf", trials=3, jobs=1, walk_forward=wf)
    prepared = prepare(options, load_space(space))
    study, _ = run_sweep(options, prepared)
    best = best_trial(finished_trials(study), "maximize")
    raw = apply_params(prepared.base_raw, trial_values(prepared.space, best.params))
    cfg = parse_config(raw, prepared.base_dir)
    prices, universe = load_backtest_prices(cfg, None)
    again = run_configured(cfg, prices, universe, walk_forward=wf).metrics["strategy"]
    assert best.outcome == "complete" and best.result["metrics"]["sharpe"] is not None
    assert again["sharpe"] == best.result["metrics"]["sharpe"]
    assert again["final_equity"] == best.result["metrics"]["final_equity"]


def test_sweep_whole_strategy_choice_keeps_the_configs_signal_in_trials_and_best_toml(
        tmp_path):
    """A config whose [strategy] sets signal = "weekly": the trial that picks the config's
    own strategy scores what the config backtests to, and best.toml keeps the signal. At
    risk_free_rate 3 % the DSR's Sharpe is the one the sweep reports."""
    import tomllib

    from bot.backtest.setup import load_backtest_prices, run_configured
    from bot.config import parse_config

    # its own 200 days, not the module's 420: each claim compares the sweep with a backtest
    # of the same window, whatever its length, and the daily-drift replays (two trials, the
    # best's, this test's own) cost by the day
    prices = write_market(tmp_path, days=200)
    config = write_config(tmp_path, prices, strategy={"signal": "weekly"},
                          backtest={"calendar": "daily_drift", "risk_free_rate": 0.03})
    space = write_space(tmp_path, '[space]\nstrategy = {choice = [{name = "momentum", '
                                  'params = {k = 2, lookback = 40}}, "equal_weight"]}')
    out = tmp_path / "sweep"
    _grid_sweep_cli(config, space, out)
    rows = trial_rows(out)
    doc = json.loads((out / "sweep.json").read_text())
    raw = tomllib.loads(config.read_text())
    raw["backtest"]["start"] = date.fromisoformat(rows.loc[0, "start"])
    cfg = parse_config(raw, config.parent)
    own = run_configured(cfg, *load_backtest_prices(cfg, None)).metrics["strategy"]
    assert rows.loc[0, "final_equity"] == pytest.approx(own["final_equity"], rel=1e-12)
    assert rows.loc[0, "sharpe"] == pytest.approx(own["sharpe"], rel=1e-12)
    best = tomllib.loads((out / "best.toml").read_text())["strategy"]
    assert best["signal"] == "weekly"
    assert best["name"] == {0: "momentum", 1: "equal_weight"}[doc["best"]["trial"]]
    assert doc["overfitting"]["best_daily_sharpe"] * 252 ** 0.5 == pytest.approx(
        doc["best"]["metrics"]["sharpe"], rel=1e-12)


def test_sweep_without_a_feasible_trial_exits_1_naming_the_constraints_no_best_toml(
        inputs, tmp_path):
    config, _ = inputs
    space = write_space(tmp_path, '[objective]\nconstraints = ["max_drawdown <= 0.0001"]\n'
                                  '[space.strategy.params]\nk = {int = [1, 3]}')
    out = tmp_path / "sweep"
    proc = run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--trials", "2", "--jobs", "1", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
    assert "no feasible trial" in said and "max_drawdown <= 0.0001" in said
    assert "No best.toml was written" in said and "best.toml, " not in said
    assert not (out / "best.toml").exists()
    assert (out / "trials.csv").exists() and json.loads(
        (out / "sweep.json").read_text())["best"] is None
    page = (out / "report.html").read_text()  # it once linked the missing best.toml
    assert 'href="best.toml"' not in page and 'href="best/report.html"' not in page
    assert "no feasible trial" in page.lower()
    # [backtest] tearsheet = false (research_setup's configs): the page's tables, no chart
    assert not list(out.glob("*.png")) and "Charts left out" in page


def test_sweep_holdout_leaving_one_in_sample_day_exits_2_naming_holdout_and_rows(
        inputs, tmp_path):
    config, space = inputs
    frame = pd.read_csv(Path(str(config)).parent / "prices.csv", index_col="date",
                        parse_dates=True)
    start = frame.index[100].date()
    short = write_config(tmp_path, Path(str(config)).parent / "prices.csv",
                         backtest={"start": start})
    out = tmp_path / "sweep"
    proc = run_cli_in_process("sweep", "--config", str(short), "--space", str(space),
                              "--trials", "2", "--jobs", "1", "--holdout", str(start),
                              "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert f"--holdout {start}" in proc.stderr and "1 trading day" in proc.stderr
    assert not out.exists()


def test_sweep_zero_volatility_trial_has_no_objective_and_cannot_win(inputs, tmp_path):
    """All cash (absolute momentum against an unreachable threshold) at rf 2 %: Sharpe
    null, state failed with no value; the best is a trial that invests."""
    prices = Path(str(inputs[0])).parent / "prices.csv"
    config = write_config(tmp_path, prices, backtest={"risk_free_rate": 0.02},
                          strategy={"params": {"k": 2, "lookback": 40,
                                               "absolute_momentum": True}})
    space = write_space(tmp_path, '[objective]\ndirection = "minimize"\n'
                                  '[space.strategy.params]\nthreshold = {choice = [0.0, 5.0]}')
    out = tmp_path / "sweep"
    _grid_sweep_cli(config, space, out)
    rows = trial_rows(out)
    cash = rows.loc[1]
    assert cash["volatility"] == 0.0 and pd.isna(cash["sharpe"]) and pd.isna(cash["value"])
    assert cash["state"] == "failed" and "sharpe" in cash["error"]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["best"]["trial"] == 0 and doc["states"] == {"complete": 1, "failed": 1}
    assert "nan" not in (out / "sweep.json").read_text().lower()


def test_sweep_resume_on_a_changed_price_file_is_refused_naming_it(tmp_path):
    """Only the config's and the space's text were compared: a resume after the price
    file changed (same path, same config) mixed trials scored on two markets."""
    prices = write_market(tmp_path, days=300)
    config, space = write_config(tmp_path, prices), write_space(tmp_path)
    out = tmp_path / "sweep"
    _sweep(config, space, out, trials=2, jobs=1, seed=1, batch_size=2)
    frame = pd.read_csv(prices)
    frame.iloc[-1, 1] *= 1.01  # one close revised
    frame.to_csv(prices, index=False)
    options = SweepOptions(config, space, out, trials=4, jobs=1, seed=1, batch_size=2,
                           resume=True)
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="different prices_sha256") as raised:
        run_sweep(options, prepare(options, load_space(space)))
    assert "config_sha256" not in str(raised.value)  # the config itself did not change


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # exited (a zombie waits for its new parent)


@pytest.mark.slow  # a real process tree: spawn, SIGKILL, a second of polling
def test_sweep_killed_with_sigkill_leaves_no_worker_process_behind(inputs, tmp_path):
    """SIGKILL of the sweep gives its process pool no chance to stop the workers: they
    idled on, reparented, for good. Each worker now ends when its parent is gone."""
    config, space = inputs
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sweep", "--config", str(config), "--space", str(space),
         "--trials", "200", "--jobs", "2", "--out", str(tmp_path / "out")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 3 and time.monotonic() < deadline:  # 2 + tracker
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert len(workers) >= 3, "the pool never started"
        time.sleep(0.5)  # the workers' initializers have run
        workers = _children(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(_running(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _running(w)]


def test_sweep_takes_quoted_backtest_dates_as_the_config_does(tmp_path):
    """``[backtest] start = "2020-03-02"`` (a string, which the config validates into a
    date): the sweep used to compare the raw string with a date and crash (TypeError)."""
    market = write_market(tmp_path, days=200)
    config = write_config(tmp_path, market, backtest={"start": "2020-03-02",
                                                      "end": "2020-09-01"})
    out = tmp_path / "out"
    proc = run_cli_in_process("sweep", "--config", str(config), "--space",
                              str(write_space(tmp_path, "[space.strategy.params]\n"
                                                        "k = {int = [1, 2]}")),
                              "--trials", "1", "--jobs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    best = tomllib.loads((out / "best.toml").read_text())["backtest"]
    assert (best["start"], best["end"]) == (date(2020, 3, 2), date(2020, 9, 1))


def test_sweep_over_a_key_that_changes_nothing_says_so_instead_of_calling_it_luck(inputs,
                                                                                   tmp_path):
    """Drift bands under a monthly calendar change nothing (every calendar day trades back
    to target): all trials return the same. The verdict said "PBO 100 %, the winner is
    likely luck" (ties at the median counted as overfit); it now says the trials are
    identical, and CSCV counts a tie at the median half."""
    config, _ = inputs
    space = write_space(tmp_path, '[objective]\nmetric = "sharpe"\n[space.rebalance]\n'
                                  'drift_abs = {choice = [0.02, 0.05, 0.1]}\n')
    out = tmp_path / "sweep"
    proc = run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--trials", "3", "--sampler", "grid", "--jobs", "1",
                              "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((out / "sweep.json").read_text())["overfitting"]
    assert stats["identical_trials"] is True
    assert stats["deflated_sharpe_ratio"] is None and stats["pbo"] is None  # no verdict to read
    assert "exactly the same" in stats["verdict"] and "luck" not in stats["verdict"]
    assert "exactly the same" in proc.stderr + proc.stdout
    assert "exactly the same" in (out / "report.html").read_text()
    from bot.research.overfitting import probability_of_backtest_overfitting

    same = np.tile(np.random.default_rng(0).normal(0, 0.01, (64, 1)), (1, 3))
    assert probability_of_backtest_overfitting(same, n_blocks=4).pbo == 0.5


def test_sweep_workers_ignore_ctrl_c_and_the_sweep_ends_them_itself():
    """Ctrl-C reaches the sweep's whole process group: a worker that took it printed a
    KeyboardInterrupt traceback (also while still importing) and broke the pool under the
    sweep, which then printed another. The workers now ignore it from their first
    instruction; the sweep, interrupted, ends them itself (``abort``) and says how to
    resume."""
    import multiprocessing
    import os
    import signal
    import time

    from bot.research.parallel import ProcessRunner, _worker_ready

    other = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(60,))
    other.start()  # a child not the pool's (a LocalCluster's, say): abort leaves it alone
    runner = ProcessRunner(pd.DataFrame({"A": [1.0, 2.0]}), workers=2)
    try:
        workers = [w for w in multiprocessing.active_children() if w is not other]
        assert workers
        for worker in workers:
            os.kill(worker.pid, signal.SIGINT)  # the terminal's Ctrl-C, as each sees it
        time.sleep(0.5)
        assert all(worker.is_alive() for worker in workers)
        assert runner._pool.submit(_worker_ready).result(timeout=30)  # still serving
        runner.abort()
        deadline = time.monotonic() + 10
        while any(worker.is_alive() for worker in workers):
            assert time.monotonic() < deadline, "abort left a worker running"
            time.sleep(0.05)
        assert other.is_alive()
    finally:
        runner.close()
        other.terminate()
        other.join(10)


# ``allocbot sweep --dask`` in a child process with its Dask client's ``METHOD`` hooked: at
# its first call the client's event loop is kept busy (as by a large message) and Ctrl-C
# lands meanwhile, before the loop has started the call (the moment a user's Ctrl-C hit)
_CTRL_C_AT_A_DASK_CALL = """
import os, signal, sys, threading, time

from distributed import Client

real = Client.METHOD

def hooked(self, *args, **kwargs):
    Client.METHOD = real
    self.loop.add_callback(time.sleep, 0.4)
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
    return real(self, *args, **kwargs)

Client.METHOD = hooked
sys.argv[0] = "allocbot"
from bot.cli import main

main()
"""


@pytest.fixture
def dask_scheduler_address():
    """A scheduler with no workers, in this process (starts in a fraction of a second): the
    sweep's client connects and then waits in its scatter."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        yield cluster.scheduler_address


def _ctrl_c_at_a_dask_call(inputs, out: Path, address: str, method: str, tmp_path: Path
                           ) -> subprocess.CompletedProcess[str]:
    config, space = inputs
    script = tmp_path / "ctrl_c_at_a_dask_call.py"
    script.write_text(_CTRL_C_AT_A_DASK_CALL.replace("METHOD", method), encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), "sweep", "--config", str(config), "--space", str(space),
         "--trials", "4", "--batch", "2", "--dask", address, "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO)


def _assert_only_allocbots_ctrl_c_message(proc: subprocess.CompletedProcess[str],
                                          message: str) -> None:
    """Exit 130 (as a --jobs sweep's Ctrl-C) and, besides the JSON log lines, only the
    sweep's own message on stderr: no tornado, asyncio or distributed line, no traceback."""
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert [line for line in proc.stderr.splitlines() if line.strip() and not _json_line(line)] \
        == [f"allocbot: interrupted; {message}"], proc.stderr[-3000:]


def _json_line(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@pytest.mark.slow  # a sweep in a child process (~1.5 s of imports before it connects): ~3 s
def test_sweep_dask_ctrl_c_while_connecting_prints_only_allocbots_message(
        inputs, tmp_path, dask_scheduler_address):
    """Ctrl-C during a blocking call to the Dask client (here the scatter of the prices)
    was raised inside distributed's own wait, whose cancel of the call, when the client's
    event loop had not started it yet, failed: "tornado.application - ERROR - Exception in
    callback ... NameError: cannot access free variable 'future'" and its traceback came
    after allocbot's message. The sweep now waits for such calls itself."""
    out = tmp_path / "out"
    proc = _ctrl_c_at_a_dask_call(inputs, out, dask_scheduler_address, "scatter", tmp_path)
    # (connecting comes before the study journal is written: there is nothing to resume)
    _assert_only_allocbots_ctrl_c_message(
        proc, f"nothing was saved to {out} yet; run the same command to start the sweep")


@pytest.mark.slow  # a LocalCluster of 2 processes and a sweep in a child: ~5 s
def test_sweep_dask_ctrl_c_mid_trials_prints_only_allocbots_message(inputs, tmp_path,
                                                                   dask_client):
    """The same Ctrl-C while the sweep waits for a batch's trials (``gather``; the tornado
    lines came before allocbot's message there, as the client's close waited on the loop):
    the sweep closes its client and says how to resume, and nothing else is written."""
    out = tmp_path / "out"
    proc = _ctrl_c_at_a_dask_call(inputs, out, dask_client.scheduler.address, "gather",
                                  tmp_path)
    _assert_only_allocbots_ctrl_c_message(proc, f"`--resume --out {out}` continues")


def test_dask_client_calls_are_waited_for_off_the_main_thread_so_ctrl_c_ends_the_wait():
    """What keeps Ctrl-C out of distributed's own wait (the two tests above, with a real
    cluster): a blocking call to the client runs on a helper thread, the KeyboardInterrupt
    is raised in the main thread's wait at once; ``finish_secs`` lets a close end first."""
    import threading

    from bot.research.parallel import _waited_for_here

    def call(seen: list[bool], secs: float) -> str:
        seen.append(threading.current_thread() is threading.main_thread())
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the call is under way
        time.sleep(secs)
        seen.append(True)  # the call ended
        return "done"

    assert threading.current_thread() is threading.main_thread()  # where pytest runs tests
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert _waited_for_here(lambda: "no interrupt") == "no interrupt"
        with pytest.raises(ConfigError, match="raised in the call"):
            _waited_for_here(lambda: (_ for _ in ()).throw(ConfigError("raised in the call")))
        off_main: list[bool] = []
        with pytest.raises(KeyboardInterrupt):
            _waited_for_here(lambda: call(off_main, 2.0))
        assert off_main == [False]  # raised while the call still ran (it appends at its end)
        closing: list[bool] = []
        with pytest.raises(KeyboardInterrupt):
            _waited_for_here(lambda: call(closing, 0.2), finish_secs=10)
        assert closing == [False, True]  # the interrupt went on once the call had ended
    finally:
        signal.signal(signal.SIGINT, previous)
