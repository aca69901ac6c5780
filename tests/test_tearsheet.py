"""The tearsheet a user reads: drawdown table, fixed colours, offline HTML, every chart."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest

import strategies
from bot.backtest.colours import PALETTE, home_slot, symbol_colour, symbol_colours
from bot.backtest.engine import BacktestSpec, run_backtest
from bot.backtest.metrics import kupiec_pof_p_value
from bot.backtest.periods import (
    DrawdownPeriod,
    monthly_returns,
    worst_drawdowns,
    yearly_returns,
)
from bot.backtest.relative import relative_statistics
from bot.backtest.report import result_metrics, with_relative_statistics, write_outputs
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import RiskLimits
from bot.engine.cycle import CycleSettings
from tests.conftest import REPO, random_walk_prices

CHART_ALTS = ("equity vs benchmark, log scale", "drawdowns", "yearly returns",
              "rolling 6- and 12-month Sharpe and volatility", "distribution of daily returns",
              "held weights over time", "turnover and costs",
              "VaR backtest: daily losses vs ex-ante VaR")


def test_worst_drawdowns_constructed_path_equal_hand_computed_table():
    # peaks/troughs by hand: six drawdowns, depths 10%, 25%, 5%, 30%, 20%, 12% (the last
    # one not recovered); the table keeps the five deepest, deepest first.
    equity = [100, 90, 100,            # 1: peak d0, trough d1, back d2: 10%, 2 days
              120, 90, 110, 125,       # 2: peak d3 120, trough d4 90: 25%, recovery d6, 3 days
              118.75, 126,             # 3: peak d6 125, trough d7: 5%, recovery d8, 2 days
              88.2, 100, 130,          # 4: peak d8 126, trough d9: 30%, recovery d11, 3 days
              104, 120, 131,           # 5: peak d11 130, trough d12: 20%, recovery d14, 3 days
              115.28, 120]             # 6: peak d14 131, trough d15: 12%, never back: 2 days
    days = pd.bdate_range("2021-01-04", periods=len(equity))
    table = worst_drawdowns(pd.Series(equity, index=days, dtype=float))
    d = [x.date() for x in days]
    assert table == [
        DrawdownPeriod(d[8], d[9], d[11], pytest.approx(0.30), 3),
        DrawdownPeriod(d[3], d[4], d[6], pytest.approx(0.25), 3),
        DrawdownPeriod(d[11], d[12], d[14], pytest.approx(0.20), 3),
        DrawdownPeriod(d[14], d[15], None, pytest.approx(0.12), 2),
        DrawdownPeriod(d[0], d[1], d[2], pytest.approx(0.10), 2),
    ]


def test_worst_drawdowns_rising_curve_has_none():
    days = pd.bdate_range("2021-01-04", periods=5)
    assert worst_drawdowns(pd.Series([1.0, 2, 3, 3, 4], index=days)) == []


def test_monthly_and_yearly_returns_compound_within_the_calendar_period():
    days = pd.DatetimeIndex(["2020-12-30", "2020-12-31", "2021-01-04", "2021-01-29",
                             "2021-02-01", "2021-02-26"])
    equity = pd.Series([100.0, 110, 99, 121, 110, 132], index=days)
    table = monthly_returns(equity)
    assert table.loc[2020, 12] == pytest.approx(0.10)
    assert table.loc[2021, 1] == pytest.approx(0.10)   # 121 / 110
    assert table.loc[2021, 2] == pytest.approx(132 / 121 - 1)
    assert math.isnan(table.loc[2021, 3])
    assert yearly_returns(equity).to_dict() == {2020: pytest.approx(0.10),
                                                2021: pytest.approx(0.20)}


def test_symbol_colour_same_symbol_same_colour_in_different_universes():
    assert symbol_colour("TLT", ["SPY", "TLT", "GLD"]) == symbol_colour(
        "TLT", ["TLT", "SHY", "IEF", "DBC", "VNQ"])
    xlk_home = PALETTE[home_slot("XLK")]  # a hashed (not pinned) symbol
    assert symbol_colour("XLK", ["XLK"]) == xlk_home
    others = [s for s in ("TLT", "GLD", "SPY", "EFA", "IEF") if home_slot(s) != home_slot("XLK")]
    assert symbol_colour("XLK", others) == symbol_colour("XLK", others[:2]) == xlk_home


def test_symbol_colours_order_free_and_distinct_within_a_universe():
    universe = ["SPY", "TLT", "IEF", "GLD", "DBC", "SHY", "VNQ", "EFA", "LQD", "HYG", "XLK"]
    colours = symbol_colours(universe)
    assert colours == symbol_colours(list(reversed(universe)))
    assert len(set(colours.values())) == len(universe)  # collisions probed apart
    assert set(colours.values()) <= set(PALETTE)


def test_kupiec_pof_p_value_rejects_no_breaches_and_accepts_the_expected_count():
    # x = 0 of n = 250 at p = 5%: LR = −2·250·ln(0.95) = 25.65, P(χ²₁ ≥ 25.65) ≈ 4.1e-7
    assert kupiec_pof_p_value(0, 250, 0.05) == pytest.approx(4.09e-7, rel=0.01)
    assert kupiec_pof_p_value(5, 100, 0.05) == pytest.approx(1.0)
    assert kupiec_pof_p_value(20, 100, 0.05) < 1e-4


def test_relative_statistics_levered_benchmark_has_beta_two_and_no_alpha():
    days = pd.bdate_range("2020-01-01", periods=1000)
    b = pd.Series(np.random.default_rng(3).normal(0.0004, 0.01, 1000), index=days)
    stats = relative_statistics(2 * b, b, 0.0)
    assert stats["beta"] == pytest.approx(2.0)
    assert stats["alpha"] == pytest.approx(0.0, abs=1e-12)
    assert stats["correlation"] == pytest.approx(1.0)
    assert stats["tracking_error"] == pytest.approx(b.std(ddof=1) * math.sqrt(252))
    assert stats["up_capture"] > 1.5 and stats["down_capture"] > 1.5  # twice the moves
    same = relative_statistics(b, b, 0.0)
    assert same["up_capture"] == pytest.approx(1.0) and same["down_capture"] == pytest.approx(1.0)


def _spec(universe: tuple[str, ...]) -> BacktestSpec:
    settings = CycleSettings(
        mode="paper", universe=universe, order_prefix="bt", order_wait_secs=1.0,
        policy=RebalancePolicy(drift_abs=0.02, drift_rel=0.2, min_order_notional=0.0),
        limits=RiskLimits(lookback_days=20, max_var=0.02))
    return BacktestSpec(settings, calendar="monthly", starting_cash=100_000.0)


def _report(tmp_path, universe: tuple[str, ...], name: str = "out", days: int = 600,
            benchmark: bool = True):
    prices = random_walk_prices(list(universe), days, seed=len(universe))
    weights = {s: 1.0 / len(universe) for s in universe}
    result = run_backtest(prices, strategies.create("fixed", weights=weights), _spec(universe))
    metrics = {"title": f"test {name}",
               "settings": {"risk_free_rate": 0.02, "universe": list(universe)},
               "strategy": {"name": "fixed", **result_metrics(result, 0.02)}}
    bench = None
    if benchmark:
        bench = run_backtest(prices, strategies.create("equal_weight"), _spec(universe))
        metrics["benchmark"] = {"name": "equal_weight", **result_metrics(bench, 0.02)}
    out = tmp_path / name
    write_outputs(out, result, bench, metrics)
    return out


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    return _report(tmp_path_factory.mktemp("tearsheet"), ("SPY", "TLT", "GLD", "AAA"))


def _charts(page: str) -> dict[str, np.ndarray]:
    from matplotlib.image import imread

    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', page)
    return {alt: imread(io.BytesIO(base64.b64decode(data)), format="png") for data, alt in found}


def test_tearsheet_html_works_offline_no_remote_reference_or_script(report_dir):
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs and all(u.startswith("data:image/png;base64,") or re.fullmatch(r"[\w.]+", u)
                        for u in refs)  # inline images, or the run's own files beside it


def test_tearsheet_every_chart_and_table_present(report_dir):
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    charts = _charts(page)
    assert set(charts) == set(CHART_ALTS)
    assert all(img.shape[1] > 600 and img.shape[0] > 150 for img in charts.values())
    assert 'class="heatmap"' in page and "<th>Dec</th>" in page
    assert "start (peak)" in page and "trough" in page and "recovery" in page
    assert "Sharpe (rf 2.00%)" in page and "Sortino (rf 2.00%)" in page
    for label in ("Beta", "Alpha (Jensen, annualized)", "Tracking error", "Information ratio",
                  "Up capture", "Down capture", "Kupiec POF p-value"):
        assert f"<td>{label}</td>" in page
    assert (report_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tearsheet_metrics_json_keeps_old_keys_and_gains_new_statistics(report_dir):
    metrics = json.loads((report_dir / "metrics.json").read_text())
    s = metrics["strategy"]
    old = {"cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar", "turnover",
           "costs", "rebalances", "var_breaches", "var_breaches_expected", "var_breach_p_value"}
    new = {"beta", "alpha", "tracking_error", "information_ratio", "up_capture", "down_capture",
           "var_kupiec_pof_p_value", "worst_drawdowns", "yearly_returns", "skew", "kurtosis"}
    assert old | new <= set(s)
    assert 1 <= len(s["worst_drawdowns"]) <= 5
    assert s["worst_drawdowns"][0]["depth"] == pytest.approx(s["max_drawdown"])
    assert set(s["yearly_returns"]) == {"2020", "2021", "2022"}


def _has_colour(img: np.ndarray, hex_colour: str) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return bool(np.any(np.all(np.abs(img[..., :3] - rgb) < 1.5 / 255, axis=-1)))


def test_tearsheet_weights_chart_draws_a_symbol_in_the_same_colour_across_reports(tmp_path):
    # a few months and no benchmark: the held weights are all this test reads
    first = _report(tmp_path, ("SPY", "TLT", "GLD"), "a", days=90, benchmark=False)
    second = _report(tmp_path, ("TLT", "SHY", "IEF", "DBC"), "b", days=90, benchmark=False)
    tlt = symbol_colour("TLT", ["SPY"])
    for out in (first, second):
        weights = _charts((out / "report.html").read_text())["held weights over time"]
        assert _has_colour(weights, tlt)
    spy_only = _charts((first / "report.html").read_text())["held weights over time"]
    assert _has_colour(spy_only, symbol_colour("SPY", []))
    assert not _has_colour(_charts((second / "report.html").read_text())[
        "held weights over time"], symbol_colour("SPY", []))


def test_tearsheet_without_benchmark_still_writes_every_chart(tmp_path):
    universe = ("AAA", "BBB")
    prices = random_walk_prices(list(universe), 300)
    result = run_backtest(prices, strategies.create("equal_weight"), _spec(universe))
    metrics = {"title": "solo", "strategy": {"name": "equal_weight",
                                              **result_metrics(result, 0.0)}}
    assert with_relative_statistics(metrics, result, None) is metrics
    write_outputs(tmp_path, result, None, metrics)
    page = (tmp_path / "report.html").read_text()
    assert set(_charts(page)) == set(CHART_ALTS) and "No benchmark." in page


def test_report_modules_import_without_matplotlib():
    code = ("import sys, bot.backtest.report, bot.backtest.tearsheet, bot.backtest.setup; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_drawdown_period_as_dict_is_json_ready():
    p = DrawdownPeriod(date(2020, 1, 2), date(2020, 2, 3), None, 0.1, 40)
    assert json.loads(json.dumps(p.as_dict()))["recovery"] is None


@pytest.mark.parametrize("days", [2, 30])
def test_tearsheet_short_backtest_writes_every_chart_without_error(tmp_path, days):
    universe = ("AAA", "BBB")
    prices = random_walk_prices(list(universe), 20 + days)  # 20 days of lookback first
    result = run_backtest(prices, strategies.create("equal_weight"), _spec(universe))
    bench = run_backtest(prices, strategies.create("equal_weight"), _spec(universe))
    assert len(result.dates) == days
    metrics = {"title": "short", "strategy": {"name": "a", **result_metrics(result, 0.0)},
               "benchmark": {"name": "b", **result_metrics(bench, 0.0)}}
    write_outputs(tmp_path, result, bench, metrics)
    assert set(_charts((tmp_path / "report.html").read_text())) == set(CHART_ALTS)


def test_held_weights_frame_keeps_largest_sums_the_rest_and_drops_never_held():
    from bot.backtest.engine import BacktestResult
    from bot.backtest.tearsheet import held_weights_frame

    days = pd.bdate_range("2021-01-04", periods=2)
    closes = np.ones((2, 4))
    qty = np.array([[50.0, 20, 10, 0], [40, 30, 10, 0]])  # DDD never held
    cash = np.array([20.0, 20.0])
    result = BacktestResult(days, ("AAA", "BBB", "CCC", "DDD"), cash + qty.sum(axis=1), cash,
                            qty, closes, pd.DataFrame(), (), None, 0.95, 1, 100.0, False, 0.0)
    frame = held_weights_frame(result, top=2)
    assert list(frame.columns) == ["AAA", "BBB", "other", "cash"]
    np.testing.assert_allclose(frame.to_numpy(), [[0.5, 0.2, 0.1, 0.2], [0.4, 0.3, 0.1, 0.2]])


def test_summary_table_prints_the_risk_free_rate_and_relative_statistics(report_dir):
    from rich.console import Console

    from bot.backtest.report import summary_table

    console = Console(width=120, record=True)
    console.print(summary_table(json.loads((report_dir / "metrics.json").read_text())))
    text = console.export_text()
    assert "Sharpe (rf 2.00%)" in text and "Sortino (rf 2.00%)" in text
    assert "strategy vs benchmark" in text and "Information ratio" in text


@pytest.mark.parametrize("years", [1.5, 12])
def test_charts_pinned_ticks_draw_the_same_pixels_as_matplotlibs_auto_ticks(monkeypatch, years):
    # charts._finish picks the date locator once, pins ticks to the drawn locations and skips
    # placing empty axis labels: a speed-up only, so no pixel may change (log, percent and
    # plain axes, a shared x axis, month ticks under 5 years, year ticks above).
    from bot.backtest import charts
    from bot.backtest.tearsheet import render

    days = pd.bdate_range("2010-01-04", periods=int(252 * years))
    rng = np.random.default_rng(7)
    curves = {name: pd.Series(np.cumprod(1 + rng.normal(3e-4, 0.01, len(days))), index=days)
              for name in ("a", "b")}
    colours = {"a": "#08519c", "b": "#525252"}

    def draw() -> list:
        roll = {f"{k} 6m": v.pct_change().rolling(126).std() for k, v in curves.items()}
        return [render(charts.equity_chart(curves, colours, "t"), "equity"),
                render(charts.rolling_chart(roll, roll, dict.fromkeys(roll, "#000000"), {},
                                            "rf"), "rolling")]

    fast = draw()
    fig = charts.equity_chart(curves, colours, "t")
    render(fig, "equity")
    shown = [t.get_text() for t in fig.axes[0].get_xticklabels()
             if fig.axes[0].get_xlim()[0] <= t.get_position()[0] <= fig.axes[0].get_xlim()[1]]
    assert shown and (years < 5 or all(re.fullmatch(r"20\d\d", s) for s in shown))
    monkeypatch.setattr(charts, "_finish", lambda fig: fig)
    for mine, auto in zip(fast, draw(), strict=True):
        assert np.array_equal(mine.pixels, auto.pixels), mine.alt
