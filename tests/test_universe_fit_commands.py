"""Strategy parameters the universe can never satisfy (``Strategy.universe_problems``, as
``check-config``/``run``/``once`` refuse them) are refused by the other commands too: a
sweep whose space reaches such a value at an edge or a choice (its best.toml would be
refused by ``run``), ``backtest`` and ``weights`` over the universe they actually run on,
``compare`` naming the spec. And ``weights --asof`` outside the price data is refused
instead of silently answering for the last date. Commands run in-process.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_PRICES, one_line_error, run_cli_in_process
from tests.research_setup import write_config as write_research_config
from tests.research_setup import write_market, write_space

K_REFUSED = "assets to hold, but the universe it sees"




def momentum(k: int) -> dict[str, dict[str, Any]]:
    return {"strategy": {"name": "momentum", "params": {"k": k, "lookback": 126}}}


# ---- sweep: the space's edges and choices, and the config's unswept keys ------------------

@pytest.fixture
def market(tmp_path: Path) -> Path:
    """Four symbols (AAA..DDD), 200 days: short trials."""
    return write_market(tmp_path, days=200)


def sweep(config: Path, space: Path, out: Path) -> Any:
    return run_cli_in_process("sweep", "--config", str(config), "--space", str(space),
                              "--trials", "1", "--jobs", "1", "--out", str(out))


@pytest.mark.parametrize("space_text,named", [
    ("[space.strategy.params]\nk = {int = [1, 5]}",
     "[space].strategy.params.k: value 5 cannot work with the universe: "
     "[strategy.params].k: 5 assets to hold"),
    ("[space.strategy.params]\nk = {choice = [2, 6, 3]}",
     "[space].strategy.params.k: value 6 cannot work with the universe: "
     "[strategy.params].k: 6 assets to hold"),
    ('[space]\nstrategy = {choice = ["equal_weight", {name = "momentum", '
     'params = {k = 7, lookback = 40}}]}',
     "[space].strategy: value {'name': 'momentum', 'params': {'k': 7, 'lookback': 40}} "
     "cannot work with the universe: [strategy.params].k: 7 assets to hold"),
])
def test_sweep_refuses_a_space_edge_or_choice_the_universe_cannot_hold(
        tmp_path, market, space_text, named):
    """It used to run the trials (exit 0) and write a best.toml ``run`` refused."""
    out = tmp_path / "out"
    line = one_line_error(sweep(write_research_config(tmp_path, market),
                                write_space(tmp_path, space_text), out))
    assert named in line and "has 4" in line
    assert not out.exists()  # refused before any trial


def test_sweep_refuses_an_unswept_key_every_trial_keeps(tmp_path, market):
    """The config's k = 6 over 4 symbols: every trial of a rebalance sweep would hold."""
    config = write_research_config(tmp_path, market,
                                   strategy={"params": {"k": 6, "lookback": 40}})
    out = tmp_path / "out"
    line = one_line_error(sweep(config, write_space(
        tmp_path, "[space.rebalance]\ndrift_abs = {float = [0.01, 0.1]}"), out))
    assert f"invalid config {config}" in line
    assert f"[strategy.params].k: 6 {K_REFUSED}" in line and "has 4" in line
    assert not out.exists()


def test_a_swept_k_replaces_the_configs_own_and_best_toml_passes_check_config(tmp_path,
                                                                             market):
    """The config's own k = 6 does not matter when the space sweeps k: the space's edge 5
    is what is refused, and a space within the universe writes a best.toml ``check-config``
    (so ``run``) accepts."""
    config = write_research_config(tmp_path, market,
                                   strategy={"params": {"k": 6, "lookback": 40}},
                                   backtest={"start": date(2020, 3, 2)})
    out = tmp_path / "out"
    line = one_line_error(sweep(config, write_space(
        tmp_path, "[space.strategy.params]\nk = {int = [4, 5]}"), out))
    assert "[space].strategy.params.k: value 5 " in line and "k: 6" not in line
    proc = sweep(config, write_space(tmp_path, "[space.strategy.params]\nk = {int = [4, 4]}"),
                 out)
    assert proc.returncode == 0, proc.stderr
    check = run_cli_in_process("check-config", "--config", str(out / "best.toml"))
    assert check.returncode == 0, check.stderr


# ---- backtest, weights, compare ----------------------------------------------------------

def test_backtest_and_weights_refuse_a_momentum_k_above_the_universe(write_config, tmp_path):
    """They used to run with a momentum_k_reduced warning a cycle (exit 0)."""
    config = write_config(momentum(6))  # the conftest universe has 5 symbols
    out = tmp_path / "bt"
    for proc in (run_cli_in_process("backtest", "--config", str(config), "--out", str(out)),
                 run_cli_in_process("weights", "--config", str(config))):
        line = one_line_error(proc)
        assert f"invalid config {config}: 1 problem(s): [strategy.params].k: 6 {K_REFUSED}" \
            in line and "set k to at most 5" in line
        assert proc.stdout == ""
    assert not out.exists()


def test_backtest_and_weights_count_the_universe_of_prices(write_config, tmp_path):
    """Without [universe].symbols the universe is the price file's columns: k = 4 fits the
    configured sample (8 symbols) but not a --prices file of 3."""
    config = write_config({**momentum(4), "universe": {"symbols": None}})
    assert run_cli_in_process("check-config", "--config", str(config)).returncode == 0
    three = tmp_path / "three.csv"
    three.write_text("\n".join(",".join(row.split(",")[:4]) for row in
                               SAMPLE_PRICES.read_text().splitlines()) + "\n")
    for args in (["backtest", "--out", str(tmp_path / "bt")], ["weights"]):
        line = one_line_error(run_cli_in_process(*args, "--config", str(config),
                                                 "--prices", str(three)))
        assert f"[strategy.params].k: 4 {K_REFUSED}" in line and "has 3" in line


def test_compare_refuses_the_spec_naming_it(write_config, tmp_path):
    out = tmp_path / "cmp"
    line = one_line_error(run_cli_in_process("compare", "equal_weight", "momentum:k=6",
                                             "--config", str(write_config()),
                                             "--out", str(out)))
    assert f"compare spec 'momentum:k=6': [strategy.params].k: 6 {K_REFUSED}" in line
    assert "has 5" in line and not out.exists()


# ---- weights --asof ------------------------------------------------------------------------

def weights(config: Path, asof: str) -> Any:
    return run_cli_in_process("weights", "--config", str(config), "--asof", asof)


def test_weights_refuses_an_asof_after_the_data_and_resolves_a_weekend_inside(write_config):
    """2030-01-01 used to print the weights of 2024-12-31, the file's last date, exit 0. A
    Saturday inside the data still gives the Friday before it (the last prices known)."""
    config = write_config()
    line = one_line_error(weights(config, "2030-01-01"))
    assert f"--asof 2030-01-01 is outside the price data in {SAMPLE_PRICES} " \
           "(2005-01-03 to 2024-12-31)" in line
    saturday = weights(config, "2024-12-28")
    assert saturday.returncode == 0, saturday.stderr
    assert json.loads(saturday.stdout)["asof"] == "2024-12-27"


def test_weights_names_asof_and_the_first_date_with_enough_history(write_config):
    """An --asof inside the data but before the warm-up: the error used to name only the
    rows, not the option nor the first date that works (the risk step's 252 returns
    decide: 253 rows, the sample's 253rd day)."""
    config = write_config(momentum(2))
    line = one_line_error(weights(config, "2005-12-01"))
    assert line.count("--asof 2005-12-01: ") == 1 and "has 232 price rows" in line
    assert "need 253" in line and "(the first --asof with enough history is 2006-01-03)" in line
    assert weights(config, "2006-01-03").returncode == 0
