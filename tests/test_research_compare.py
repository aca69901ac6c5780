"""``allocbot compare``: strategies side by side on one window, the benchmark included."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bot.errors import ConfigError
from bot.research.compare import parse_spec
from tests.conftest import run_cli_in_process, to_toml
from tests.research_setup import write_config, write_market


def test_parse_spec_name_params_and_nested_tables():
    spec = parse_spec('trend_filter:base={name="fixed",params={preset="x"}},window=50')
    assert spec.name == "trend_filter"
    assert spec.params == {"base": {"name": "fixed", "params": {"preset": "x"}}, "window": 50}
    assert parse_spec("momentum:k=2,weighting=inverse_volatility").params == {
        "k": 2, "weighting": "inverse_volatility"}
    assert parse_spec("equal_weight").params == {}


def test_parse_spec_a_key_given_twice_names_it():
    with pytest.raises(ConfigError, match="'k' is given twice"):  # the last one won
        parse_spec("momentum:k=2,k=3")


def test_parse_spec_malformed_item_names_the_spec():
    with pytest.raises(ConfigError, match="momentum:k"):
        parse_spec("momentum:k")


def test_compare_cli_same_window_table_and_report_with_benchmark(tmp_path):
    # a VaR limit binding in spells of weekly rebalances (the first cycle of each warns):
    # its warning is written three times, then counted
    config = write_config(tmp_path, write_market(tmp_path, days=300),
                          risk={"lookback_days": 20, "max_var": 0.006},
                          backtest={"tearsheet": True,  # each strategy's own report too
                                    "calendar": "weekly"})
    other = tmp_path / "mine.toml"
    other.write_text(to_toml({"strategy": {"name": "inverse_volatility",
                                           "params": {"lookback_days": 30}}}))
    out = tmp_path / "cmp"
    # a name with params (40-day warm-up) and a config file (30 days); a bare name is
    # test_parse_spec_name_params_and_nested_tables's, and the benchmark has no warm-up
    proc = run_cli_in_process("compare", "momentum:k=2,lookback=40", str(other),
                              "--config", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "compare.csv", index_col=0)
    assert list(table.columns) == ["momentum:k=2,lookback=40", "mine", "benchmark: equal_weight"]
    assert table.loc["sharpe"].notna().all()
    starts = {pd.read_csv(out / d / "equity.csv")["date"].iloc[0]
              for d in ("momentum_k=2_lookback=40", "mine")}
    assert len(starts) == 1  # one window for every strategy
    page = (out / "report.html").read_text()
    assert "benchmark: equal_weight" in page and "https://" not in page
    assert 'href="mine/report.html"' in page and (out / "mine" / "report.html").exists()
    assert "Sharpe" in proc.stdout
    logged = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert sum(e["event"] == "risk_limited" for e in logged) == 3
    [repeated] = [e for e in logged if e["event"] == "warnings_repeated"]
    assert repeated["not_written"]["risk_limited"] > 3


def test_compare_cli_unknown_strategy_exits_2_naming_it(tmp_path):
    config = write_config(tmp_path, write_market(tmp_path, days=200))
    proc = run_cli_in_process("compare", "equal_weight", "no_such:k=1", "--config",
                              str(config), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 2
    assert "no_such" in proc.stderr


def _strategy_metrics(path) -> dict:
    metrics = json.loads(path.read_text())["strategy"]
    metrics.pop("elapsed_secs")
    return metrics


def test_compare_config_file_spec_keeps_its_whole_strategy_table(tmp_path):
    # a weekly signal on daily drift checks: compare of the config itself = its backtest
    config = write_config(tmp_path, write_market(tmp_path, days=160),
                          strategy={"signal": "weekly"}, backtest={"calendar": "daily_drift"})
    proc = run_cli_in_process("backtest", "--config", str(config), "--out", str(tmp_path / "bt"))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli_in_process("compare", str(config), "momentum:k=2,lookback=40", "--config",
                              str(config), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    alone = _strategy_metrics(tmp_path / "bt" / "metrics.json")
    assert _strategy_metrics(tmp_path / "cmp" / "config" / "metrics.json") == alone
    # a name spec keeps the base config's signal (and fallback): the same strategy here
    assert _strategy_metrics(
        tmp_path / "cmp" / "momentum_k=2_lookback=40" / "metrics.json") == alone


def test_compare_long_labels_sharing_a_prefix_get_their_own_directories(tmp_path):
    config = write_config(tmp_path, write_market(tmp_path, days=200))
    specs = [f"momentum:weighting=inverse_volatility,vol_lookback_days=20,k=2,lookback={n}"
             for n in (30, 40)]
    assert len(specs[0]) > 60 and specs[0][:60] == specs[1][:60]
    out = tmp_path / "cmp"
    proc = run_cli_in_process("compare", *specs, "--config", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "compare.csv", index_col=0)
    dirs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(dirs) == 2
    finals = {json.loads((d / "metrics.json").read_text())["strategy"]["final_equity"]
              for d in dirs}
    assert finals == {table.at["final_equity", s] for s in specs}
    assert len(finals) == 2  # two different strategies, each kept
    page = (out / "report.html").read_text()
    # [backtest] tearsheet = false: each strategy's metrics.json is its page
    assert all(f'href="{d.name}/metrics.json"' in page for d in dirs)
    assert not any((d / "report.html").exists() for d in dirs)


def test_compare_and_backtest_default_window_leaves_a_benchmark_its_warm_up(tmp_path):
    # momentum's default 252-day lookback: a 253-row warm-up, longer than the strategies'
    config = write_config(tmp_path, write_market(tmp_path, days=300),
                          backtest={"calendar": "monthly", "benchmark": "momentum"})
    out = tmp_path / "cmp"
    proc = run_cli_in_process("compare", "equal_weight", "momentum:k=2,lookback=40",
                              "--config", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "compare.csv", index_col=0)
    assert table["benchmark: momentum"].notna().all()
    proc = run_cli_in_process("backtest", "--config", str(config), "--out", str(tmp_path / "bt"))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "bt" / "metrics.json").read_text())
    assert metrics["benchmark"]["name"] == "momentum" and metrics["benchmark"]["days"] > 1
    assert metrics["strategy"]["start"] == metrics["benchmark"]["start"]
    # a start too early for the benchmark (not for the strategy) names the benchmark
    early = str(pd.read_csv(tmp_path / "prices.csv")["date"].iloc[100])
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", early,
                              "--out", str(tmp_path / "bt2"))
    assert proc.returncode == 2
    assert "benchmark 'momentum'" in proc.stderr


def test_compare_with_config_benchmark_none_has_no_benchmark_column_or_curve(tmp_path):
    """``[backtest] benchmark = "none"`` (compare has no --benchmark: the config's value
    is its benchmark): the strategies alone in compare.csv, the table and the report."""
    config = write_config(tmp_path, write_market(tmp_path, days=200),
                          backtest={"benchmark": "none"})
    out = tmp_path / "cmp"
    proc = run_cli_in_process("compare", "equal_weight", "momentum:k=2,lookback=40",
                              "--config", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "compare.csv", index_col=0)
    assert list(table.columns) == ["equal_weight", "momentum:k=2,lookback=40"]
    assert "benchmark:" not in proc.stdout and "benchmark" not in (out / "report.html").read_text()
    assert "benchmark" not in json.loads((out / "equal_weight" / "metrics.json").read_text())
