"""``allocbot backtest`` end to end: every file written, bad input exits 2 naming it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import run_cli_in_process

FILES = {"equity.csv", "trades.csv", "weights.csv", "metrics.json", "report.html",
         "report.png"}
METRIC_KEYS = {"cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar", "turnover",
               "costs", "rebalances", "var_breaches", "var_breaches_expected"}


@pytest.fixture
def config(write_config):
    return write_config({"backtest": {"calendar": "monthly"}})


def test_backtest_cli_without_the_tearsheet_writes_the_data_files_only(write_config, tmp_path):
    """[backtest] tearsheet = false (scripted runs): the CSVs, metrics.json and the summary,
    no report.html/report.png (about half a second of charts a run)."""
    config = write_config({"backtest": {"calendar": "monthly", "tearsheet": False}})
    out = tmp_path / "out"
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-01-02",
                              "--end", "2020-12-31", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == FILES - {"report.html", "report.png"}
    assert "Sharpe" in proc.stdout


def test_backtest_cli_writes_every_file_and_a_summary(config, tmp_path):
    out = tmp_path / "out"
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-01-02",
                              "--end", "2021-06-30", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} >= FILES
    equity = pd.read_csv(out / "equity.csv")
    assert list(equity.columns) == ["date", "equity", "cash"]
    assert equity["date"].iloc[0] == "2020-01-02" and equity["date"].iloc[-1] <= "2021-06-30"
    trades = pd.read_csv(out / "trades.csv")
    assert list(trades.columns) == ["date", "symbol", "side", "qty", "price", "commission"]
    assert trades["date"].nunique() >= 18  # the first trading day of each month
    weights = pd.read_csv(out / "weights.csv")
    assert len(weights) == len(equity) and "cash" in weights.columns
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["strategy"]) >= METRIC_KEYS and set(metrics["benchmark"]) >= METRIC_KEYS
    assert metrics["benchmark"]["name"] == "sixty_forty"  # SPY and IEF are in the universe
    assert metrics["strategy"]["costs"] > 0
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Sharpe" in proc.stdout and "sixty_forty" in proc.stdout
    assert '"event"' not in proc.stdout  # logs go to stderr; stdout is the table


@pytest.mark.parametrize("args,named", [
    (("--start", "1990-01-02"), "1990-01-02"),
    (("--end", "2099-12-31"), "2099-12-31"),
    (("--start", "2021-02-30"), "2021-02-30"),
    (("--start", "2021-06-01", "--end", "2021-01-04"), "2021-01-04"),
])
def test_backtest_cli_bad_dates_exit_2_naming_the_date(config, tmp_path, args, named):
    proc = run_cli_in_process("backtest", "--config", str(config), "--out", str(tmp_path / "o"),
                              *args)
    assert proc.returncode == 2
    assert named in proc.stderr


def test_backtest_cli_unknown_benchmark_exits_2_naming_it(config, tmp_path):
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-01-02",
                              "--end", "2020-03-31", "--benchmark", "no_such_thing",
                              "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "no_such_thing" in proc.stderr


def test_backtest_cli_fixed_preset_naming_an_excluded_symbol_exits_2_naming_it(write_config,
                                                                              tmp_path):
    """check-config and once refused it; the backtest held all 4,781 cycles in cash."""
    config = write_config({"strategy": {"name": "fixed", "params": {"preset": "all_weather"}},
                           "universe": {"exclude": ["DBC"]}})
    out = tmp_path / "o"
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-01-02",
                              "--end", "2020-03-31", "--out", str(out))
    assert proc.returncode == 2
    assert "[strategy.params].preset: 'DBC' is in [universe].exclude" in proc.stderr
    assert not out.exists()


def test_backtest_cli_walk_forward_reports_out_of_sample_folds(write_config, tmp_path):
    config = write_config({"strategy": {"name": "inverse_volatility", "params": None},
                           "backtest": {"calendar": "monthly", "tearsheet": False}})
    out = tmp_path / "wf"
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-01-02",
                              "--end", "2020-12-31", "--walk-forward", "252:63", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    wf = json.loads((out / "metrics.json").read_text())["walk_forward"]
    assert wf["train_days"] == 252 and wf["test_days"] == 63 and wf["out_of_sample"]
    days = len(pd.read_csv(out / "equity.csv"))
    assert len(wf["folds"]) == -(-days // 63)  # consecutive 63-day test windows cover it
    assert wf["folds"][0]["test_start"] == "2020-01-02"
    assert all(f["train_end"] == f["test_start"] for f in wf["folds"])


@pytest.mark.parametrize("universe,expected", [
    (("SPY", "IEF", "GLD"), {"SPY": 0.6, "IEF": 0.4}),
    (("SPY", "TLT", "GLD"), {"SPY": 0.6, "TLT": 0.4}),
    (("GLD", "DBC"), {"GLD": 0.5, "DBC": 0.5}),
])
def test_benchmark_default_is_sixty_forty_with_spy_and_a_bond_else_equal_weight(universe,
                                                                                 expected):
    from bot.backtest.setup import benchmark_strategy
    from tests.conftest import random_walk_prices

    prices = random_walk_prices(list(universe), 5)
    weights = benchmark_strategy(None, universe).target_weights(prices)
    assert {s: w for s, w in weights.items() if w > 0} == pytest.approx(expected)


def _events(stderr: str, name: str) -> list[dict]:
    return [e for e in map(json.loads, stderr.splitlines()) if e.get("event") == name]


def test_backtest_warning_of_every_cycle_written_three_times_then_counted(write_config,
                                                                         tmp_path):
    """A risk limit that binds in many spells of monthly rebalances (its warning is the
    first cycle of each spell's): at the default level its warning is written thrice and
    the rest counted in one closing event; at "info" every one is written, as many as were
    counted, and the spells' later cycles at info."""
    tight = {"strategy": {"name": "momentum", "params": {"k": 2, "lookback": 60}},
             "risk": {"max_var": 0.01},
             "backtest": {"start": "2015-01-02", "calendar": "monthly", "tearsheet": False}}
    quiet = run_cli_in_process("backtest", "--config", str(write_config(tight)),
                               "--out", str(tmp_path / "quiet"))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    written = _events(quiet.stderr, "risk_limited")
    assert len(written) == 3
    # each says which replayed day it is about (its timestamp is the wall clock's)
    assert all("2015-01-02" <= e["asof"] <= "2024-12-31" for e in written)
    [closing] = _events(quiet.stderr, "warnings_repeated")
    not_written = closing["not_written"]["risk_limited"]
    assert not_written > 3 and closing["written_each"] == 3

    loud = run_cli_in_process("backtest", "--config", str(write_config(
        {**tight, "backtest": {**tight["backtest"], "log_level": "info"}}, name="loud.toml")),
        "--out", str(tmp_path / "loud"))
    assert loud.returncode == 0, loud.stderr[-2000:]
    limited = _events(loud.stderr, "risk_limited")
    assert sum(e["level"] == "warning" for e in limited) == 3 + not_written
    assert all(e["repeated"] for e in limited if e["level"] == "info")
    assert sum(e["level"] == "info" for e in limited) > 3 + not_written
    assert _events(loud.stderr, "warnings_repeated") == []


def test_backtest_and_weights_name_a_bad_print_in_the_price_file(write_config, tmp_path):
    """A ×100 typo on one day of SPY: the backtest's cycles are blocked that day, but its
    books are marked at that close (a 3,113 % best day): it says so up front, naming the
    symbol, the date and the move; `weights` on that day says a cycle would be blocked."""
    from tests.conftest import SAMPLE_PRICES, json_lines

    prices = pd.read_csv(SAMPLE_PRICES, dtype=str)
    row = int(prices.index[prices["date"] == "2020-06-15"][0])
    prices.loc[row, "SPY"] = str(float(prices.loc[row, "SPY"]) * 100)
    typo = tmp_path / "typo.csv"
    prices.to_csv(typo, index=False)
    config = write_config({"sim": {"prices": str(typo)},
                           "backtest": {"calendar": "monthly", "tearsheet": False}})
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-01-02",
                              "--end", "2020-12-31", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    [warned] = [e for e in json_lines(proc.stderr) if e["event"] == "price_moves_beyond_limit"]
    assert [m.split()[:2] for m in warned["largest"][:2]] == [["SPY", "2020-06-15"],
                                                               ["SPY", "2020-06-16"]]
    assert float(warned["largest"][0].split()[2].rstrip("%")) > 9000  # the ×100 print
    assert warned["limit"] == 0.3
    later = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-07-01",
                               "--end", "2020-12-31", "--out", str(tmp_path / "later"))
    assert later.returncode == 0, later.stderr  # the print is before the window: not named
    assert "price_moves_beyond_limit" not in later.stderr
    weights = run_cli_in_process("weights", "--config", str(config), "--asof", "2020-06-15")
    assert weights.returncode == 0, weights.stderr
    [breach] = json.loads(weights.stdout)["data_guard_breaches"]
    assert (breach["guard"], breach["subject"]) == ("max_daily_move", "SPY")
    clean = run_cli_in_process("weights", "--config", str(config), "--asof", "2020-06-12")
    assert "data_guard_breaches" not in json.loads(clean.stdout)


def test_backtest_cli_warns_when_nothing_traded_and_when_the_window_is_short(write_config,
                                                                             tmp_path):
    """Whole shares with $100: 19 years in cash finished with no word (Sortino read −15.87
    for a riskless account); a two-day window printed a 271 % CAGR. Both now warn, and a
    constant-return account has no Sortino ratio, as it has no Sharpe ratio."""
    config = write_config({"sim": {"starting_cash": 100.0, "fractional": False},
                           "backtest": {"calendar": "monthly", "tearsheet": False,
                                        "risk_free_rate": 0.02}})
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2024-12-30",
                              "--end", "2024-12-31", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "no order filled over the whole backtest" in text
    assert "([sim] fractional = false)" in text and "[rebalance] min_order_notional" in text
    assert "2 trading day(s): the annualized figures" in text
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["strategy"]
    assert metrics["sortino"] is None and metrics["sharpe"] is None


def test_default_benchmark_of_spy_and_another_bond_etf_is_named_by_its_weights():
    """SPY with TLT (no IEF): the default benchmark is SPY 60 / TLT 40, which reports,
    metrics.json and compare called just "fixed"."""
    from bot.backtest.setup import benchmark_name, benchmark_strategy

    assert benchmark_name(benchmark_strategy(None, ("SPY", "TLT"))) == "fixed SPY 60% / TLT 40%"
    assert benchmark_name(benchmark_strategy(None, ("SPY", "IEF", "GLD"))) == "sixty_forty"


def test_backtest_cli_benchmark_none_runs_no_benchmark_and_reports_the_strategy_alone(
        config, tmp_path):
    """``--benchmark none`` was refused (no strategy named "none"): a user who wants no
    benchmark could not say so. Now no benchmark is run: metrics.json has no benchmark
    block and no relative statistics, the summary table no benchmark column."""
    out = tmp_path / "out"
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-01-02",
                              "--end", "2020-12-31", "--benchmark", "none", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert "benchmark" not in metrics and "beta" not in metrics["strategy"]
    assert set(metrics["strategy"]) >= METRIC_KEYS
    assert {p.name for p in out.iterdir()} >= FILES
    page = (out / "report.html").read_text()
    assert "No benchmark." in page  # no relative statistics
    assert "benchmark: " not in page  # nor a summary column of dashes
    text = " ".join(proc.stdout.split())
    assert "Sharpe" in text and "benchmark:" not in text and "sixty_forty" not in text
    assert "no benchmark" in text


def test_backtest_config_benchmark_none_is_accepted_by_check_config_and_backtest(
        write_config, tmp_path):
    """``[backtest] benchmark = "none"``: check-config accepts it (it refused it as an
    unknown strategy) and the backtest runs without a benchmark."""
    config = write_config({"backtest": {"calendar": "monthly", "benchmark": "none",
                                        "tearsheet": False}})
    check = run_cli_in_process("check-config", "--config", str(config))
    assert check.returncode == 0, check.stderr
    out = tmp_path / "out"
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2020-01-02",
                              "--end", "2020-12-31", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "benchmark" not in json.loads((out / "metrics.json").read_text())
    assert "benchmark:" not in proc.stdout


def test_unknown_benchmark_error_says_none_asks_for_no_benchmark(config, tmp_path):
    proc = run_cli_in_process("backtest", "--config", str(config), "--benchmark", "nothing",
                              "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "--benchmark nothing" in proc.stderr and "'none' for no benchmark" in proc.stderr
