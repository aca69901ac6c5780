"""Search spaces: a bad space is an error naming the key before any trial runs."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.research.space import Choice, IntRange, apply_params, check_space, parse_space
from bot.research.study import grid_points
from tests.conftest import run_cli_in_process
from tests.research_setup import write_config, write_market, write_space


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path, write_market(tmp_path, days=200))


def _check(text: str, config) -> None:
    import tomllib

    raw = tomllib.loads(config.read_text())
    check_space(parse_space(text), raw, config.parent)


@pytest.mark.parametrize(("space", "named"), [
    ('[space.rebalance]\ndrift_abz = {float = [0.01, 0.1]}', "[space].rebalance.drift_abz"),
    ('[space.strategy.params]\nk = {int = [5, 1]}', "[space].strategy.params.k"),
    ('[space.rebalance]\ndrift_abs = {float = [0.0, 2.0]}', "[space].rebalance.drift_abs"),
    ('[space.strategy.params]\nkk = {int = [1, 3]}', "[space].strategy.params.kk"),
    ('[space.sim]\nstarting_cash = {float = [1.0, 2.0]}', "[space].sim.starting_cash"),
    ('[space.backtest]\ncalendar = {choice = ["monthly", "hourly"]}',
     "[space].backtest.calendar"),
    ('[space.risk]\nmax_var = {float = [0.0, 0.1], log = true}', "[space].risk.max_var"),
    ('[space]\nstrategy = {choice = ["momentum", "no_such"]}', "[space].strategy"),
])
def test_check_space_bad_key_or_value_raises_naming_the_key(config, space, named):
    with pytest.raises(ConfigError) as err:
        _check(space, config)
    assert named in str(err.value)


def test_parse_space_reads_ranges_choices_and_objective():
    space = parse_space("""
[objective]
metric = "cagr"
direction = "maximize"
constraints = ["max_drawdown <= 0.25", "turnover <= 2"]
[space.strategy.params]
k = {int = [1, 4]}
[space.backtest]
calendar = {choice = ["monthly", "quarterly"]}
""")
    assert [p.path for p in space.params] == ["strategy.params.k", "backtest.calendar"]
    assert space.params[0].domain == IntRange(1, 4)
    assert space.params[1].domain == Choice(("monthly", "quarterly"))
    assert [str(c) for c in space.objective.constraints] == ["max_drawdown <= 0.25",
                                                            "turnover <= 2"]
    assert space.objective.constraints[0].holds({"max_drawdown": 0.2})
    assert not space.objective.constraints[0].holds({"max_drawdown": 0.3})


def test_whole_strategy_choice_replaces_the_strategy_table():
    space = parse_space('[space]\nstrategy = {choice = ["equal_weight", '
                        '{name = "momentum", params = {k = 2}}]}')
    choice = space.params[0].domain
    raw = apply_params({"strategy": {"name": "fixed", "params": {"preset": "x"}}},
                       {"strategy": choice.value_of(choice.labels[1])})
    assert raw["strategy"] == {"name": "momentum", "params": {"k": 2}}


def test_grid_points_cover_the_product_in_order():
    space = parse_space('[space.strategy.params]\nk = {int = [1, 3]}\n'
                        'lookback = {int = [20, 40], step = 20}')
    points = grid_points(space)
    assert len(points) == 6
    assert points[0] == {"strategy.params.k": 1, "strategy.params.lookback": 20}
    assert points[-1] == {"strategy.params.k": 3, "strategy.params.lookback": 40}


def test_sweep_cli_bad_space_exits_2_naming_the_key_and_runs_no_trial(config, tmp_path):
    space = write_space(tmp_path, '[space.rebalance]\ndrift_abs = {float = [0.0, 2.0]}')
    out = tmp_path / "out"
    proc = run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--trials", "2", "--jobs", "1", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "[space].rebalance.drift_abs" in proc.stderr
    assert not out.exists()  # no study, no trial


def test_whole_strategy_choice_keeps_the_configs_schedule_and_fallback():
    """A swept strategy runs on the config's signal/every_sessions/fallback (they are not
    params of one strategy); a choice that sets a schedule replaces the config's."""
    space = parse_space('[space]\nstrategy = {choice = ["equal_weight", {name = "momentum", '
                        'params = {k = 2}}, {name = "momentum", every_sessions = 5}]}')
    choice = space.params[0].domain
    base = {"strategy": {"name": "fixed", "params": {"preset": "x"}, "signal": "weekly",
                         "fallback": "equal_weight"}}
    raws = [apply_params(base, {"strategy": choice.value_of(label)})["strategy"]
            for label in choice.labels]
    assert raws[0] == {"name": "equal_weight", "params": {}, "signal": "weekly",
                       "fallback": "equal_weight"}
    assert raws[1] == {"name": "momentum", "params": {"k": 2}, "signal": "weekly",
                       "fallback": "equal_weight"}
    assert raws[2] == {"name": "momentum", "params": {}, "every_sessions": 5,
                       "fallback": "equal_weight"}
    assert base["strategy"]["signal"] == "weekly"  # the base config is not changed


@pytest.mark.parametrize("constraint", ["max_drawdown <= 1..2", "max_drawdown <= -",
                                        "turnover < 1e", "sharpe >= ."])
def test_malformed_constraint_number_is_a_config_error_naming_it(constraint, config,
                                                                  tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_space(f'[objective]\nconstraints = ["{constraint}"]\n'
                    '[space.strategy.params]\nk = {int = [1, 3]}')
    assert repr(constraint) in str(err.value) and "not a number" in str(err.value)
    space = write_space(tmp_path, f'[objective]\nconstraints = ["{constraint}"]\n'
                                  '[space.strategy.params]\nk = {int = [1, 3]}')
    out = tmp_path / "out"
    proc = run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--trials", "2", "--jobs", "1", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "[objective].constraints" in proc.stderr and constraint in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
