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


def test_parse_spec_malformed_item_names_the_spec():
    with pytest.raises(ConfigError, match="momentum:k"):
        parse_spec("momentum:k")


def test_compare_cli_same_window_table_and_report_with_benchmark(tmp_path):
    # a VaR limit binding on most days: its warning is written three times, then counted
    config = write_config(tmp_path, write_market(tmp_path, days=300),
                          risk={"lookback_days": 20, "max_var": 0.002})
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
