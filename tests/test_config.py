"""Config validation: every bad input names its key, exits 2, and sends nothing."""

from __future__ import annotations

import math
import re
import sqlite3
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from bot.config import MAX_SCHEDULE_SECS, MAX_WAIT_SECS, Config, load_config
from bot.errors import ConfigError
from tests.conftest import REPO, run_cli_in_process


def test_config_shipped_file_is_valid_and_uses_sim_on_bundled_data():
    cfg = load_config(REPO / "config.toml")
    assert cfg.broker.kind == "sim"
    assert cfg.bot.mode == "paper"
    assert cfg.sim.prices.is_file()
    assert cfg.sim.prices.name == "sample_prices.csv"


DEFAULT_PARAM_STRATEGIES = ("black_litterman", "direct_reinforcement", "efficient_risk",
                            "equal_weight", "hrp", "inverse_volatility", "max_sharpe",
                            "mean_reversion", "mean_variance", "min_variance", "ml_regression",
                            "momentum", "risk_parity")


@pytest.mark.parametrize("name", DEFAULT_PARAM_STRATEGIES)
def test_shipped_config_with_any_strategy_at_its_defaults_passes_check_config(tmp_path, name):
    """A user's first edit: the shipped config with another strategy's name. Its replay
    start must leave that strategy's warm-up (ml_regression: 757 rows), not fail as a
    fixed start one row short of every 252-day estimator did."""
    text = (REPO / "config.toml").read_text()
    head, rest = text.split("[strategy]\nname = \"fixed\"", 1)
    rest = rest.replace('preset = "all_weather"\n', "", 1)
    config = tmp_path / "config.toml"
    config.write_text(f'{head}[strategy]\nname = "{name}"{rest}'.replace(
        'state_dir = "state"', f'state_dir = "{tmp_path / "state"}"'))
    outcome = run_cli_in_process("check-config", "--config", str(config))
    assert outcome.returncode == 0, outcome.stderr


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"sim": {"startng_cash": 5.0}}, "[sim].startng_cash: unknown key"),
        ({"sim": {"starting_cash": "lots"}}, "[sim].starting_cash"),
        ({"sim": {"starting_cash": -100.0}}, "[sim].starting_cash: Input should be greater than 0"),
        ({"rebalance": {"drift_abs": -0.01}}, "[rebalance].drift_abs"),
        ({"rebalance": {"cash_buffer": 1.5}}, "[rebalance].cash_buffer"),
        ({"risk": {"max_weight": 1.2}}, "[risk].max_weight"),
        ({"strategy": {"name": "crystal_ball"}}, "[strategy].name: unknown strategy 'crystal_ball'"),
        ({"strategy": {"name": "sector_cap", "params": {  # a nested name's typo: a parameter
            "base": "equal_weights", "sectors": {"SPY": "eq"}, "sector_limits": {"eq": 0.5}}}},
         "[strategy.params]: unknown strategy 'equal_weights'"),
        ({"strategy": {"name": "fixed", "params": {"weights": {"SPY": 1.4}}}}, "[strategy.params]"),
        ({"strategy": {"name": "fixed", "params": {"colour": "red"}}}, "colour"),
        ({"schedule": {"cron": "45 15 * * 1-5", "interval_secs": None}}, "day names"),
        ({"schedule": {"cron": "45 15 * * mon-fri"}}, "exactly one of cron, interval_secs or at"),
        ({"schedule": {"timezone": "Mars/Olympus"}}, "[schedule].timezone"),
        ({"bot": {"mode": "yolo"}}, "[bot].mode"),
        ({"bot": {"mode": "live"}}, '"live" needs [broker].kind = "alpaca"'),
        ({"bot": {"mode": "paper"}, "broker": {"kind": "alpaca"}, "alpaca": {"account": "live"}},
         '[alpaca].account: "live" needs [bot].mode = "dry_run"'),
        ({"bot": {"mode": "live"}, "broker": {"kind": "alpaca"}, "alpaca": {"account": "paper"}},
         '[alpaca].account: "paper" contradicts [bot].mode = "live"'),
        ({"bot": {"mode": "dry_run"}, "alpaca": {"account": "live"}},
         '[alpaca].account: applies to [broker].kind = "alpaca" only'),
        ({"bot": {"mode": "dry_run"}, "broker": {"kind": "alpaca"}, "alpaca": {"account": "demo"}},
         "[alpaca].account"),
        ({"bot": {"mode": "dry_run"}, "broker": {"kind": "alpaca"}, "alpaca": {"account": "live"},
          "faults": {"enabled": True}}, "[faults].enabled: fault injection is a drill tool"),
        ({"risk": {"safe_asset": "SHY"}}, "[risk].safe_asset"),
        ({"sim": {"prices": "/nonexistent/prices.csv"}}, "[sim].prices: file not found"),
        ({"universe": {"symbols": ["SPY", "SPY"]}}, "duplicate symbol"),
        ({"universe": {"exclude": ["QQQ"]}}, "[universe].exclude[1]: 'QQQ' is not in"),
        ({"universe": {"symbols": ["SPY"], "exclude": ["SPY"]}}, "every symbol"),
        ({"strategy": {"signal": "hourly"}}, "[strategy].signal"),
        ({"strategy": {"signal": "monthly", "every_sessions": 5}}, "at most one of signal"),
        ({"strategy": {"every_sessions": 0}}, "[strategy].every_sessions"),
    ],
)
def test_config_bad_value_raises_config_error_naming_key(write_config, overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(overrides))
    assert expected in str(info.value)


def test_config_api_key_in_file_is_refused_without_echoing_it(write_config):
    path = write_config({"alpaca": {"api_key": "PKSECRETVALUE123"}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "alpaca.api_key" in message and "APCA_API_KEY_ID" in message
    assert "PKSECRETVALUE123" not in message


def test_config_relative_paths_resolve_against_config_dir(tmp_path: Path, write_config):
    path = write_config({"bot": {"state_dir": "mystate"}})
    assert load_config(path).bot.state_dir == (tmp_path / "mystate").resolve()


def test_config_is_frozen(write_config):
    cfg = load_config(write_config())
    with pytest.raises(ValidationError, match="frozen"):
        cfg.sim.starting_cash = 1.0  # type: ignore[misc]


def test_cli_bad_config_exits_2_names_key_and_sends_nothing(tmp_path: Path, write_config):
    path = write_config({"rebalance": {"drift_rel": -1.0}})
    for command in ("once", "run", "check-config"):
        proc = run_cli_in_process(command, "--config", str(path))
        assert proc.returncode == 2, proc.stderr
        assert "[rebalance].drift_rel" in proc.stderr
    assert not (tmp_path / "state").exists(), "nothing may be created or sent on a bad config"


def test_cli_check_config_prints_resolved_defaults(write_config):
    proc = run_cli_in_process("check-config", "--config", str(write_config()))
    assert proc.returncode == 0, proc.stderr
    assert '"order_wait_secs": 5.0' in proc.stdout
    assert '"resolved_params"' in proc.stdout


def test_cli_missing_config_file_exits_2(tmp_path: Path):
    proc = run_cli_in_process("once", "--config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda lines: [*lines[:3], lines[3].replace(lines[3].split(",")[1], ""), *lines[4:]],
         "missing price"),
        (lambda lines: [*lines[:3], lines[3].replace(lines[3].split(",")[2], "0"), *lines[4:]],
         "must be"),
        (lambda lines: [*lines[:3], lines[2], *lines[3:]], "duplicate date"),
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], "sorted"),
    ],
    ids=["nan", "zero", "duplicate-date", "unsorted"],
)
def test_cli_bad_price_data_exits_2_with_clear_error_and_no_order(tmp_path, write_config,
                                                                   mutate, expected):
    lines = (REPO / "bot" / "sample_market" / "sample_prices.csv").read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(mutate(lines[:400])) + "\n")
    path = write_config({"sim": {"prices": str(bad), "replay_start": None}})
    proc = run_cli_in_process("once", "--config", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr.lower() or expected in proc.stderr
    _assert_no_orders(tmp_path)


def test_cli_universe_symbol_missing_from_data_exits_2(tmp_path, write_config):
    path = write_config({"universe": {"symbols": ["SPY", "XYZ"]}})
    proc = run_cli_in_process("once", "--config", str(path))
    assert proc.returncode == 2
    assert "XYZ" in proc.stderr
    _assert_no_orders(tmp_path)


def _assert_no_orders(tmp_path: Path) -> None:
    db = tmp_path / "state" / "allocbot.sqlite"
    if not db.exists():
        return
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "sim_orders" in tables:
            assert conn.execute("SELECT COUNT(*) FROM sim_orders").fetchone()[0] == 0


# --- numbers: finite everywhere, durations/money/day counts with a ceiling ------------------

def _section_models() -> dict[str, type[BaseModel]]:
    return {name: field.annotation for name, field in Config.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}


def _numeric_keys() -> list[tuple[str, str]]:
    numeric = (float, int, float | None, int | None)
    return [(table, key) for table, model in _section_models().items()
            for key, field in model.model_fields.items() if field.annotation in numeric]


def _duration_keys() -> list[tuple[str, str]]:
    return [(table, key) for table, key in _numeric_keys() if key.endswith("_secs")]


def _ceiling(table: str, key: str) -> float | None:
    field = _section_models()[table].model_fields[key]
    limits = [getattr(m, "le", None) for m in field.metadata] + [
        getattr(m, "lt", None) for m in field.metadata]
    return min((v for v in limits if v is not None), default=None)


def test_config_numeric_field_list_covers_the_known_fields():
    keys = _numeric_keys()
    assert len(keys) > 40
    for expected in [("rebalance", "drift_rel"), ("schedule", "interval_secs"),
                     ("schedule", "misfire_grace_secs"), ("sim", "starting_cash"),
                     ("alpaca", "retry_budget_secs"), ("faults", "seed")]:
        assert expected in keys


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize(("table", "key"), _numeric_keys(), ids=lambda v: v)
def test_config_every_number_refuses_inf_and_nan_naming_the_key(write_config, table, key, value):
    with pytest.raises(ConfigError) as info:
        load_config(write_config({table: {key: value}}))
    message = str(info.value)  # a whole number's key refuses any float
    assert (f"[{table}].{key}: Input should be a finite number" in message
            or f"[{table}].{key}: Input should be a valid integer" in message), message


@pytest.mark.parametrize(("table", "key"), _numeric_keys(), ids=lambda v: v)
@pytest.mark.parametrize("value", [True, "0.3"], ids=["true", "text"])
def test_config_every_number_refuses_a_boolean_or_text_naming_the_key(write_config, table,
                                                                      key, value):
    # lax validation read `max_var = true` as 1.0 (a VaR limit switched off) and "0.02" as
    # 0.02 (a sweep's best.toml then held text), where the README promises a refusal
    with pytest.raises(ConfigError) as info:
        load_config(write_config({table: {key: value}}))
    message = str(info.value)
    assert (f"[{table}].{key}: Input should be a valid number" in message
            or f"[{table}].{key}: Input should be a valid integer" in message), message


@pytest.mark.parametrize(("table", "key", "value"), [
    ("sim", "fractional", "no"), ("schedule", "run_at_start", 1), ("guards", "enabled", "yes")])
def test_config_every_switch_refuses_anything_but_a_boolean(write_config, table, key, value):
    with pytest.raises(ConfigError, match=rf"\[{table}\]\.{key}: Input should be a valid boolean "
                                          r"\(true or false, unquoted\)"):
        load_config(write_config({table: {key: value}}))


@pytest.mark.parametrize(("table", "key"), _duration_keys(), ids=lambda v: v)
def test_config_every_duration_has_a_ceiling_named_in_seconds(write_config, table, key):
    ceiling = _ceiling(table, key)
    assert ceiling is not None and ceiling <= MAX_SCHEDULE_SECS, f"[{table}].{key} has no ceiling"
    with pytest.raises(ConfigError) as info:
        load_config(write_config({table: {key: 10**17}}))
    message = str(info.value)
    assert f"[{table}].{key}: Input should be less than or equal to" in message
    assert "seconds" in message


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [("sim", "starting_cash", 1e300), ("sim", "commission_min", 1e13),
     ("rebalance", "min_order_notional", 1e300), ("alpaca", "data_lookback_days", 10**9),
     ("risk", "lookback_days", 10**9)],
)
def test_config_money_and_day_counts_have_a_ceiling(write_config, table, key, value):
    with pytest.raises(ConfigError, match=re.escape(f"[{table}].{key}: Input should be less")):
        load_config(write_config({table: {key: value}}))


@pytest.mark.parametrize(
    ("table", "key", "value", "expected"),
    [
        ("rebalance", "drift_rel", math.inf, "finite number"),
        ("rebalance", "min_order_notional", math.inf, "finite number"),
        ("schedule", "interval_secs", math.inf, "finite number"),
        ("schedule", "misfire_grace_secs", 10**17, f"less than or equal to {MAX_SCHEDULE_SECS}"),
        ("schedule", "interval_secs", MAX_SCHEDULE_SECS + 1, "seconds (1 week)"),
        ("broker", "order_wait_secs", math.inf, "finite number"),
        ("broker", "order_wait_secs", MAX_WAIT_SECS * 2, "seconds (1 hour)"),
        ("sim", "starting_cash", math.inf, "finite number"),
        ("sim", "commission_min", math.inf, "finite number"),
        ("sim", "commission_min", math.nan, "finite number"),
        ("sim", "slippage_bps", math.nan, "finite number"),
        ("risk", "max_var", math.nan, "finite number"),
        ("guards", "max_daily_move", math.inf, "finite number"),
    ],
    ids=lambda v: str(v),
)
def test_cli_check_config_impossible_number_exits_2_naming_the_key(tmp_path, write_config,
                                                                   table, key, value, expected):
    proc = run_cli_in_process("check-config", "--config", str(write_config({table: {key: value}})))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"[{table}].{key}: " in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [("rebalance", "drift_rel", math.inf), ("rebalance", "min_order_notional", math.inf),
     ("schedule", "interval_secs", math.inf), ("schedule", "misfire_grace_secs", 10**17)],
    ids=lambda v: str(v),
)
def test_cli_once_and_run_refuse_impossible_numbers_before_any_cycle(tmp_path, write_config,
                                                                     table, key, value):
    path = write_config({table: {key: value}})
    for args in (("once",), ("run", "--max-cycles", "1")):
        proc = run_cli_in_process(*args, "--config", str(path))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"[{table}].{key}: " in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "state").exists(), "nothing may be created or sent on a bad config"


def test_config_longest_schedule_runs_in_the_daemon_and_health_check(write_config):
    """The ceilings are usable: a week's interval and misfire grace run a cycle at start and
    stop on max_cycles (1e17 s made APScheduler overflow on every loop and never run one)."""
    from bot.engine.scheduler import Daemon
    from bot.monitoring.health import success_due_after

    cfg = load_config(write_config({"schedule": {"interval_secs": MAX_SCHEDULE_SECS,
                                                 "misfire_grace_secs": MAX_SCHEDULE_SECS}}))
    wakes = []
    Daemon(cfg.schedule, lambda: wakes.append(1), max_cycles=1).run()
    assert wakes == [1]
    now = datetime.now(UTC)
    assert success_due_after(cfg.schedule, now) == now - timedelta(seconds=2 * MAX_SCHEDULE_SECS)


# --- the shipped config's comments state the code's defaults --------------------------------

_TABLE_LINE = re.compile(r"^(?:# )?\[(?P<table>[a-z_.]+)\]")
_KEY_LINE = re.compile(r"^(?:# )?(?P<key>[a-z_]+) = (?P<value>.+?)(?:\s+#(?P<comment>.*))?$")
_CONTINUATION = re.compile(r"^#\s+#(?P<comment>.*)$")
_DEFAULT_NOTE = re.compile(r"default:\s*(?P<value>[^\s,;)]+)")


def _documented_keys(text: str) -> list[tuple[str, str, str, str]]:
    """(table, key, value, comment) of every ``key = value  # comment`` line, commented out or
    not, with the comment's continuation lines (``#   # ...``) joined to it."""
    entries: list[list[str]] = []
    table, in_entry = "", False
    for line in text.splitlines():
        if match := _TABLE_LINE.match(line):
            table, in_entry = match["table"], False
        elif in_entry and (match := _CONTINUATION.match(line)):
            entries[-1][3] += " " + match["comment"]
        elif match := _KEY_LINE.match(line):
            entries.append([table, match["key"], match["value"], match["comment"] or ""])
            in_entry = True
        else:
            in_entry = False
    return [(t, k, v, c) for t, k, v, c in entries]


@pytest.mark.parametrize("path", [REPO / "config.toml", REPO / "bot" / "starter" / "config.toml"],
                         ids=["config.toml", "starter"])
def test_config_file_comments_state_the_code_defaults(path: Path):
    """A value shown without a ``default: X`` note is the code's default; with one, X is
    (``none``: the default is None or empty). Notes in words ("default: the strategy's own")
    are not checked."""
    models = _section_models()
    checked = []
    for table, key, value, comment in _documented_keys(path.read_text(encoding="utf-8")):
        if table not in models:  # [strategy.params]: the strategy's own
            continue
        field = models[table].model_fields.get(key)
        assert field is not None, f"{path.name}: [{table}].{key} is not a config key"
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        default = str(default) if isinstance(default, Path) else default
        default = list(default) if isinstance(default, tuple) else default
        note = _DEFAULT_NOTE.search(comment)
        if note is None:
            shown = tomllib.loads(f"v = {value}")["v"]
            assert shown == default, f"{path.name}: [{table}].{key} = {value}, code default {default!r}"
        elif note["value"] == "none":
            assert default in (None, []), f"{path.name}: [{table}].{key}: code default {default!r}"
        else:
            try:
                noted = tomllib.loads(f"v = {note['value']}")["v"]
            except tomllib.TOMLDecodeError:
                continue  # a default described in words
            assert noted == default, f"{path.name}: [{table}].{key}: noted default " \
                                     f"{note['value']}, code default {default!r}"
        checked.append(f"{table}.{key}")
    assert len(checked) > 60
    assert {"sim.commission_bps", "sim.slippage_bps", "risk.max_var"} <= set(checked)


def test_config_sim_costs_default_to_zero_when_omitted(write_config):
    cfg = load_config(write_config({"sim": {"commission_bps": None, "slippage_bps": None}}))
    assert (cfg.sim.commission_bps, cfg.sim.commission_min, cfg.sim.slippage_bps) == (0.0, 0.0, 0.0)
