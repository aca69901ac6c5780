"""A corpus of bad inputs: configs, price files, strategy params and venue answers.

Each config or data case gives exit 2 from ``check-config`` (and, for the cases of the
issue, from ``once``) with a message naming the problem, no traceback, and nothing
created or sent. Each venue answer of the wrong type or shape (served by the fake Alpaca)
ends ``once`` cleanly (exit 1 or 2, a one-line reason naming the field) with no order
posted. Commands run in-process through click's ``CliRunner``.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fake_alpaca import FakeAlpaca
from test_alpaca_cycle import KEYS_ENV, alpaca_config, recent_bars

from bot.cli import main

HEADER = "date,SPY,TLT,IEF"
GOOD_ROWS = ["2024-01-02,100,50,60", "2024-01-03,101,50.5,60.1", "2024-01-04,102,50.2,60.3"]
SMALL_UNIVERSE = {"universe": {"symbols": ["SPY", "TLT", "IEF"]},
                  "strategy": {"name": "fixed", "params": {"weights": {"SPY": 0.5, "TLT": 0.5}}}}


def bl(*views: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": {"name": "black_litterman", "params": {"views": list(views)}}}


def strat(name: str, **params: Any) -> dict[str, Any]:
    return {"strategy": {"name": name, "params": params}}


FIXED_QQQ = {"name": "fixed", "params": {"weights": {"QQQ": 0.5}}}

# (case id, config overrides, expected fragments of the error message)
CONFIG_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("bl_view_unknown_symbol", bl({"assets": {"ZZZ": 1.0}, "return": 0.05}),
     ("[strategy.params].views[1].assets: 'ZZZ' is not in the universe",)),
    ("bl_second_view_unknown", bl({"assets": {"SPY": 1.0}, "return": 0.05},
                                  {"assets": {"SPY": 1.0, "QQQ": -1.0}, "return": 0.01}),
     ("views[2].assets: 'QQQ'",)),
    ("universe_symbol_not_in_prices", {"universe": {"symbols": ["SPY", "XYZ"]},
                                       "strategy": {"name": "equal_weight", "params": {}}},
     ("[universe].symbols[2]: 'XYZ' is not in the price file",)),
    ("rp_budget_unknown", strat("risk_parity", budgets={"QQQ": 2.0}),
     ("[strategy.params].budgets: 'QQQ'",)),
    ("minvar_bounds_unknown", strat("min_variance", bounds={"QQQ": [0.0, 0.5]}),
     ("[strategy.params].bounds: 'QQQ'",)),
    ("bl_bounds_unknown", {"strategy": {"name": "black_litterman",
                                        "params": {"bounds": {"QQQ": [0.0, 0.5]}}}},
     ("[strategy.params].bounds: 'QQQ'",)),
    ("max_sharpe_market_weights_unknown", strat("max_sharpe", expected_returns="equilibrium",
                                                market_weights={"QQQ": 1.0}),
     ("[strategy.params].market_weights: 'QQQ'",)),
    ("regime_weights_unknown", strat("regime_kmeans", regime_weights=[{"SPY": 1.0},
                                                                      {"QQQ": 1.0}]),
     ("[strategy.params].regime_weights[2]: 'QQQ'",)),
    ("trend_filter_safe_asset_unknown", strat("trend_filter", base="equal_weight",
                                              safe_asset="QQQ"),
     ("[strategy.params].safe_asset: 'QQQ'",)),
    ("momentum_safe_asset_unknown", strat("momentum", absolute_momentum=True, safe_asset="QQQ"),
     ("[strategy.params].safe_asset: 'QQQ'",)),
    ("fixed_weights_unknown", strat("fixed", weights={"SPY": 0.5, "QQQ": 0.5}),
     ("[strategy.params].weights: 'QQQ'",)),
    ("fixed_preset_needs_symbol_outside_universe", strat("fixed", preset="permanent_portfolio"),
     ("[strategy.params].preset: 'SHY' is not in the universe",)),
    ("nested_base_unknown", strat("vol_target", base=FIXED_QQQ),
     ("[strategy.params].base.params.weights: 'QQQ'",)),
    ("core_satellite_unknown", strat("core_satellite", core="equal_weight", satellite=FIXED_QQQ),
     ("[strategy.params].satellite.params.weights: 'QQQ'",)),
    ("fallback_unknown_symbol", {"strategy": {"fallback": FIXED_QQQ}},
     ("[strategy].fallback.params.weights: 'QQQ'",)),
    ("fallback_unknown_strategy", {"strategy": {"fallback": "no_such_strategy"}},
     ("[strategy].fallback", "no_such_strategy")),
    ("all_problems_at_once", {"universe": {"symbols": ["SPY", "TLT", "XYZ"]},
                              **bl({"assets": {"ZZZ": 1.0}, "return": 0.05})},
     ("2 problem(s)", "[universe].symbols[3]: 'XYZ'", "views[1].assets: 'ZZZ'")),
    ("risk_safe_asset_outside_universe", {"risk": {"safe_asset": "SHY"}}, ("[risk].safe_asset",)),
    ("guards_zero_order_fraction", {"guards": {"max_order_fraction": 0}},
     ("[guards].max_order_fraction",)),
    ("guards_unknown_key", {"guards": {"max_orders": 3}}, ("[guards].max_orders", "unknown key")),
    ("guards_negative_stale_sessions", {"guards": {"max_stale_sessions": -1}},
     ("[guards].max_stale_sessions",)),
    ("schedule_at_bad_offset", {"schedule": {"interval_secs": None, "at": "close-15"}},
     ("[schedule].at", "close-15min")),
    ("schedule_at_and_interval", {"schedule": {"at": "close-15min"}},
     ("exactly one of cron, interval_secs or at",)),
    ("unknown_strategy", {"strategy": {"name": "yolo"}}, ("[strategy].name", "yolo")),
    ("bl_views_not_a_list", strat("black_litterman", views="SPY up"),
     ("[strategy.params]", "views must be a list")),
    ("lowercase_symbol", {"universe": {"symbols": ["spy"]}}, ("[universe].symbols",)),
    ("live_on_simulator", {"bot": {"mode": "live"}}, ("[bot].mode",)),
    # every cycle would fail on too few rows (or the replay never starts)
    ("replay_start_inside_the_warm_up", {"sim": {"replay_start": date(2005, 3, 1)}},
     ("[sim].replay_start: 2005-03-01 leaves 39 rows of history", "need 252",
      "start on 2006-01-03 or later")),
    ("replay_start_after_the_data", {"sim": {"replay_start": date(2031, 1, 2)}},
     ("[sim].replay_start: 2031-01-02 is after the last date",)),
    # the strategy never sees an excluded symbol: every cycle held, the holding never sold
    ("fixed_preset_symbol_excluded", {"universe": {"exclude": ["DBC"]}},
     ("[strategy.params].preset: 'DBC' is in [universe].exclude",)),
    # caps that cannot hold a fully invested portfolio: every cycle would hold (trial)
    ("sector_caps_cannot_hold_everything", strat(
        "min_variance", sectors={"SPY": "eq", "TLT": "bd", "IEF": "bd", "GLD": "cm", "DBC": "cm"},
        sector_limits={"eq": 0.2, "bd": 0.2, "cm": 0.2}),
     ("[strategy.params].sector_limits: the capped sectors", "can hold at most 0.6")),
    ("sector_cap_below_its_lower_bounds", strat(
        "min_variance", sectors={"SPY": "eq", "GLD": "eq"}, sector_limits={"eq": 0.2},
        bounds={"SPY": [0.3, 1.0]}),
     ("[strategy.params].sector_limits: eq", "but the lower bounds of its symbols add up to "
      "0.3")),
    ("risk_safe_asset_excluded", {"universe": {"exclude": ["TLT"]}, "risk": {"safe_asset": "TLT"},
                                  "strategy": {"name": "equal_weight", "params": {}}},
     ("[risk].safe_asset: 'TLT' is in [universe].exclude",)),
]

# (case id, CSV text, expected fragments)
PRICE_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("ragged_short_row", "\n".join([HEADER, GOOD_ROWS[0], "2024-01-03,101,50.5", GOOD_ROWS[2]]),
     ("line 3 has 3 field(s) but the header has 4",)),
    ("ragged_long_row", "\n".join([HEADER, *GOOD_ROWS[:2], "2024-01-04,102,50.2,60.3,7"]),
     ("line 4 has 5 field(s)",)),
    ("several_ragged_rows", "\n".join([HEADER, "2024-01-02,100", "2024-01-03,101,50.5",
                                       GOOD_ROWS[2]]),
     ("line 2 has 2 field(s)", "also line(s) 3")),
    ("non_numeric_price", "\n".join([HEADER, GOOD_ROWS[0], "2024-01-03,abc,50.5,60.1"]),
     ("line 3", "SPY", "'abc'")),
    ("zero_price", "\n".join([HEADER, GOOD_ROWS[0], "2024-01-03,0,50.5,60.1"]),
     ("SPY", "2024-01-03", "positive")),
    ("negative_price", "\n".join([HEADER, GOOD_ROWS[0], "2024-01-03,101,-50.5,60.1"]),
     ("TLT", "positive")),
    ("unparseable_date", "\n".join([HEADER, GOOD_ROWS[0], "03/01/2024,101,50.5,60.1"]),
     ("line 3", "unparseable date")),
    ("duplicate_date", "\n".join([HEADER, GOOD_ROWS[0], GOOD_ROWS[0]]), ("duplicate date",)),
    ("unsorted_dates", "\n".join([HEADER, GOOD_ROWS[1], GOOD_ROWS[0]]), ("not sorted",)),
    ("gap_after_first_price", "\n".join([HEADER, GOOD_ROWS[0], "2024-01-03,101,,60.1",
                                         GOOD_ROWS[2]]), ("missing price", "TLT")),
    # a Saturday close once gave the simulator a cycle dated on a Saturday
    ("weekend_row", "\n".join([HEADER, *GOOD_ROWS, "2024-01-06,103,50.1,60.2"]),
     ("2024-01-06 is a Saturday", "weekdays")),
    ("empty_file", "", ("file is empty",)),
    ("header_only", HEADER, ("no price rows",)),
    ("no_date_column", "day,SPY,TLT,IEF\n2024-01-02,1,2,3", ("no 'date' column",)),
    ("duplicate_column", "date,SPY,SPY,IEF\n2024-01-02,1,2,3", ("'SPY' appears twice",)),
    ("empty_column_name", "date,SPY,,IEF\n2024-01-02,1,2,3", ("empty column name",)),
]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def assert_clean_refusal(result: Result, code: int, fragments: tuple[str, ...]) -> None:
    text = result.stdout + result.stderr
    assert result.exit_code == code, text[-2000:]
    assert "Traceback" not in text and "cycle_crashed" not in text
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-2000:])


@pytest.mark.parametrize(("overrides", "fragments"),
                         [pytest.param(o, f, id=i) for i, o, f in CONFIG_CASES])
def test_check_config_bad_config_exits_2_naming_the_key(write_config, tmp_path: Path,
                                                        overrides, fragments):
    result = invoke("check-config", "--config", str(write_config(overrides)))
    assert_clean_refusal(result, 2, fragments)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(("csv_text", "fragments"),
                         [pytest.param(c, f, id=i) for i, c, f in PRICE_CASES])
def test_check_config_bad_price_file_exits_2_naming_the_line(write_config, tmp_path: Path,
                                                             csv_text, fragments):
    prices = tmp_path / "prices.csv"
    prices.write_text(csv_text + ("\n" if csv_text else ""), encoding="utf-8")
    config = write_config({**SMALL_UNIVERSE, "sim": {"prices": str(prices)}})
    result = invoke("check-config", "--config", str(config))
    assert_clean_refusal(result, 2, ("[sim].prices", *fragments))
    assert not (tmp_path / "state").exists()


def test_check_config_missing_price_file_exits_2(write_config, tmp_path: Path):
    result = invoke("check-config", "--config",
                    str(write_config({"sim": {"prices": str(tmp_path / "nope.csv")}})))
    assert_clean_refusal(result, 2, ("[sim].prices: file not found",))


@pytest.mark.parametrize("command", ["once", "run"])
@pytest.mark.parametrize(("overrides", "fragment"), [
    (bl({"assets": {"ZZZ": 1.0}, "return": 0.05}), "views[1].assets: 'ZZZ'"),
    ({"universe": {"symbols": ["SPY", "XYZ"]}, "strategy": {"name": "equal_weight",
                                                            "params": {}}},
     "[universe].symbols[2]: 'XYZ'"),
], ids=["bl_view", "universe_symbol"])
def test_once_and_run_refuse_bad_symbols_before_first_cycle(write_config, tmp_path: Path,
                                                            command, overrides, fragment):
    args = [command, "--config", str(write_config(overrides))]
    result = invoke(*args, *(["--max-cycles", "1"] if command == "run" else []))
    assert_clean_refusal(result, 2, (fragment,))
    assert not (tmp_path / "state" / "allocbot.sqlite").exists()  # nothing opened


def test_weights_on_fewer_rows_than_the_lookbacks_exits_2_naming_the_need(write_config,
                                                                         tmp_path: Path):
    """A 252-day momentum once ranked on 29 returns (and a VaR from 2 returns could be
    negative): now the command refuses, naming the rows it has and needs."""
    prices = tmp_path / "short.csv"
    days = [d.date().isoformat() for d in __import__("pandas").bdate_range("2024-01-02",
                                                                           periods=30)]
    prices.write_text("\n".join([HEADER, *(f"{d},{100 + i},{50 - i / 10},{60}"
                                            for i, d in enumerate(days))]) + "\n")
    config = write_config({**SMALL_UNIVERSE, "sim": {"prices": str(prices),
                                                      "replay_start": None},
                           **strat("momentum", k=2, lookback=252)})
    result = invoke("weights", "--config", str(config))
    assert_clean_refusal(result, 2, ("has 30 price rows up to 2024-02-12",
                                     "strategy 'momentum'", "need 254"))


def test_once_on_a_venue_history_too_short_fails_the_cycle_with_no_order(write_config):
    """Alpaca answers 40 days of bars where the strategy and VaR need 253 rows: the cycle
    fails naming both (it once estimated everything on 39 returns and traded)."""
    with FakeAlpaca(bars=recent_bars(days=40), cash=100_000.0, api_key=KEYS_ENV[
            "APCA_API_KEY_ID"], secret_key=KEYS_ENV["APCA_API_SECRET_KEY"]) as fake:
        result = invoke("once", "--config", str(alpaca_config(write_config, fake)),
                        env=KEYS_ENV)
        assert result.exit_code == 1, result.stdout[-2000:] + result.stderr[-2000:]
        [failed] = [line for line in result.stdout.splitlines() if "cycle_failed" in line]
        assert "has 40 price rows" in failed and "need 253" in failed
        assert "Traceback" not in result.stdout + result.stderr
        assert fake.order_posts() == []


def test_once_default_replay_start_leaves_the_strategy_its_warm_up(write_config):
    """No [sim].replay_start: the first replayed day has the rows a 300-day momentum needs
    (the default was one year, 252 rows, whatever the strategy: every cycle then failed)."""
    config = write_config({"sim": {"replay_start": None},
                           **strat("momentum", k=2, lookback=300)})
    result = invoke("once", "--config", str(config))
    assert result.exit_code == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert '"status": "finished"' in result.stdout
    [loaded] = [json.loads(line) for line in result.stdout.splitlines() if "data_loaded" in line]
    assert loaded["rows"] >= 301  # the old default gave it 253 rows


def test_check_config_good_config_exits_0(write_config):
    result = invoke("check-config", "--config", str(write_config()))
    assert result.exit_code == 0, result.stderr


# ----- venue answers of the wrong type or shape (fake Alpaca) ---------------------------

def _fake(**kwargs: Any) -> FakeAlpaca:
    from test_alpaca_cycle import API_KEY, SECRET_KEY

    return FakeAlpaca(**{"bars": recent_bars(), "cash": 100_000.0, "api_key": API_KEY,
                         "secret_key": SECRET_KEY, **kwargs})


def _account_with(**changes: Any) -> dict[str, Any]:
    from fake_alpaca_shapes import account_json

    return account_json("PA3EXAMPLE01", 100_000, 100_000, 0) | changes  # type: ignore[arg-type]


def _position(qty: Any) -> list[dict[str, Any]]:
    from decimal import Decimal

    from fake_alpaca_shapes import position_json

    row = position_json("SPY", Decimal(10), Decimal(100), Decimal(100))
    return [row | {"qty": qty}]


# (case id, path prefix, payload served once... per matching request, fragments)
BROKER_CASES: list[tuple[str, str, Any, int, tuple[str, ...]]] = [
    ("account_cash_not_a_number", "/v2/account", _account_with(cash="abc"), 99,
     ("account.cash", "'abc'")),
    ("account_equity_missing", "/v2/account", _account_with(equity=None), 99, ("equity",)),
    ("account_is_a_list", "/v2/account", [1, 2], 99, ("/v2/account",)),
    ("positions_qty_null", "/v2/positions", _position(None), 99, ("qty",)),
    ("positions_qty_garbled", "/v2/positions", _position("1e999"), 99, ("SPY.qty",)),
    ("bars_close_not_a_number", "/v2/stocks/bars",
     {"bars": {"SPY": [{"t": "2024-01-02T05:00:00Z", "o": 1, "h": 1, "l": 1, "c": "x",
                        "v": 1, "n": 1, "vw": 1}]}, "next_page_token": None}, 99, ("bars",)),
    ("latest_trade_price_garbled", "/v2/stocks/trades/latest",
     {"trades": {"SPY": {"t": "2024-01-02T15:00:00Z", "x": "V", "p": "x", "s": 1, "c": [],
                         "i": 1, "z": "B"}}}, 99, ("trades/latest",)),
    ("latest_trades_not_a_table", "/v2/stocks/trades/latest", {"trades": [1, 2, 3]}, 99,
     ("trades/latest",)),
    ("asset_html_page", "/v2/assets", "<html><body>maintenance</body></html>", 99,
     ("/v2/assets",)),
    ("clock_garbage", "/v2/clock", {"timestamp": "yesterday", "is_open": "maybe"}, 99,
     ("/v2/clock",)),
]


@pytest.mark.parametrize(("prefix", "payload", "count", "fragments"),
                         [pytest.param(p, b, n, f, id=i) for i, p, b, n, f in BROKER_CASES])
def test_once_bad_venue_answer_ends_cleanly_with_no_order(write_config, prefix, payload, count,
                                                          fragments):
    with _fake() as fake:
        fake.answer_next(prefix, payload, count=count)
        config = alpaca_config(write_config, fake, retry_budget_secs=0.3)
        result = invoke("once", "--config", str(config), env=KEYS_ENV)
        assert fake.order_posts() == []
        assert fake.errors == []
    text = result.stdout + result.stderr
    assert result.exit_code in (1, 2), text[-2000:]
    assert "Traceback" not in text and "cycle_crashed" not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text[-3000:])


@pytest.mark.parametrize(("symbol", "fragment"), [
    ("SPY", "short position in 'SPY'"),
    # outside the universe: its proceeds sit in the cash the planner invested (110 % of
    # the account's equity), where a universe short was refused
    ("QQQ", "short position outside the universe: QQQ (-10 shares)"),
])
def test_run_short_position_fails_every_cycle_cleanly_and_exits_1(write_config, symbol,
                                                                  fragment):
    """A short position: each cycle is a clean cycle_failed telling the operator to close
    it at the broker; --max-cycles 2 with both failed exits 1; nothing is sent."""
    bars = recent_bars()
    bars["QQQ"] = bars["SPY"] * 1.5  # priced at the venue, outside the universe
    with _fake(positions={symbol: (-10.0, 100.0)}, bars=bars) as fake:
        config = alpaca_config(write_config, fake)
        result = invoke("run", "--config", str(config), "--max-cycles", "2", env=KEYS_ENV)
        assert fake.order_posts() == []
    text = result.stdout + result.stderr
    assert result.exit_code == 1, text[-2000:]
    assert "Traceback" not in text and "cycle_crashed" not in text
    assert text.count('"event": "cycle_failed"') == 2
    assert fragment in text and "close it at the broker" in text


@pytest.mark.parametrize("variable", ["ALLOCBOT_BLAS_THREADS", "ALLOCBOT_HEAP_RETAIN_MB"])
def test_weights_bad_process_policy_env_exits_2_naming_the_variable(write_config, variable):
    """The BLAS thread and heap policies come from the environment: a bad value stops a
    computing command before any work, naming the variable."""
    config = write_config(SMALL_UNIVERSE)
    result = invoke("weights", "--config", str(config), env={variable: "lots"})
    assert_clean_refusal(result, 2, (variable,))
