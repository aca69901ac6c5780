"""Walk-forward edges: the held signal's strategy key stays one size as fits accumulate,
a configured ``lookback_days`` is kept inside each training window (TRAIN only fills in an
unset one), and a TRAIN shorter than the strategy's lookback is refused naming both."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

import strategies
from bot.backtest.walk_forward import (
    WalkForward,
    WalkForwardStrategy,
    build_learner,
    fold_starts,
)
from bot.engine.targets import _strategy_key
from strategies.errors import ConfigError
from tests.conftest import random_walk_prices, run_cli_in_process


def _wf_strategy(prices: pd.DataFrame, wf: WalkForward, **params: object
                 ) -> WalkForwardStrategy:
    inner = build_learner("inverse_volatility", dict(params), wf)
    return WalkForwardStrategy(inner, wf, fold_starts(prices.index, wf.train_days, wf.test_days))


def test_strategy_key_is_the_same_size_and_value_as_fits_accumulate():
    prices = random_walk_prices(["AAA", "BBB", "CCC"], 400, seed=3)
    wf = WalkForward(60, 10)
    strategy = _wf_strategy(prices, wf)
    key, size = _strategy_key(strategy), len(repr(strategy))
    for row in range(60, 400, 5):  # ~34 test windows, a fit each
        strategy.target_weights(prices.iloc[: row + 1])
        assert len(repr(strategy)) == size  # no fitted Series in it: the same cost per cycle
        assert _strategy_key(strategy) == key  # the held signal stays this strategy's
    assert len(strategy.fits) == len(strategy.starts) == 34


def test_strategy_key_changes_with_the_strategy_its_parameters_or_train_test():
    prices = random_walk_prices(["AAA", "BBB", "CCC"], 200, seed=3)
    base = _strategy_key(_wf_strategy(prices, WalkForward(60, 10)))
    assert _strategy_key(_wf_strategy(prices, WalkForward(60, 10))) == base
    assert _strategy_key(_wf_strategy(prices, WalkForward(60, 10), lookback_days=40)) != base
    assert _strategy_key(_wf_strategy(prices, WalkForward(80, 10))) != base
    assert _strategy_key(_wf_strategy(prices, WalkForward(60, 20))) != base
    other = WalkForwardStrategy(strategies.create("equal_weight"), WalkForward(60, 10),
                                fold_starts(prices.index, 60, 10))
    assert _strategy_key(other) != base


def test_configured_lookback_days_is_kept_and_an_unset_one_becomes_train():
    wf = WalkForward(252, 21)
    assert build_learner("risk_parity", {}, wf).lookback_days == 252
    assert build_learner("risk_parity", {"lookback_days": 63}, wf).lookback_days == 63
    assert build_learner("min_variance", {"lookback_days": 126}, wf).lookback_days == 126


def _wf_backtest(write_config, tmp_path, name: str, params: dict, spec: str, tag: str = "wf"):
    config = write_config({"strategy": {"name": name, "params": params},
                           "backtest": {"calendar": "monthly", "tearsheet": False}}, name=f"{tag}.toml")
    out = tmp_path / f"out_{tag}"
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2019-01-02",
                              "--end", "2020-12-31", "--walk-forward", spec, "--out", str(out))
    return proc, out


def test_swept_lookback_days_changes_the_walk_forward_backtest(write_config, tmp_path):
    """Two trials of a sweep over lookback_days are two strategies, not TRAIN twice."""
    runs = []
    for lookback in (63, 252):
        proc, out = _wf_backtest(write_config, tmp_path, "risk_parity",
                                 {"lookback_days": lookback}, "252:63", tag=str(lookback))
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads((out / "metrics.json").read_text())["strategy"])
    assert runs[0]["final_equity"] != runs[1]["final_equity"]
    assert runs[0]["turnover"] != runs[1]["turnover"]


def test_configured_lookback_days_longer_than_train_is_refused_naming_both(write_config,
                                                                           tmp_path):
    proc, out = _wf_backtest(write_config, tmp_path, "risk_parity", {"lookback_days": 300},
                             "252:63")
    assert proc.returncode == 2
    assert "TRAIN 252" in proc.stderr and "300-day lookback" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_train_shorter_than_the_strategy_lookback_exits_2_naming_train_and_lookback(
        write_config, tmp_path):
    proc, out = _wf_backtest(write_config, tmp_path, "momentum", {"k": 3, "lookback": 126},
                             "10:63")
    assert proc.returncode == 2
    assert "TRAIN 10" in proc.stderr and "127-day lookback" in proc.stderr  # 126 returns
    assert "--walk-forward 10:63" in proc.stderr
    assert not out.exists()


def test_train_check_applies_to_any_walk_forward_strategy():
    prices = random_walk_prices(["AAA", "BBB", "CCC"], 200, seed=3)
    momentum = strategies.create("momentum", k=2, lookback=126)
    with pytest.raises(ConfigError, match=r"TRAIN 100 days .* 127-day lookback"):
        WalkForwardStrategy(momentum, WalkForward(100, 21), fold_starts(prices.index, 100, 21))
    WalkForwardStrategy(momentum, WalkForward(127, 21), fold_starts(prices.index, 127, 21))


def test_each_fold_trades_its_fit_from_the_folds_first_day(write_config):
    """A fold's fit waited for the config's next signal day (monthly: weeks into the fold)
    and not one fold traded on its own first day; the signal now comes every TEST sessions
    from the first, so a fold whose picks change trades on its first day."""
    from bot.backtest.setup import load_backtest_prices, run_configured
    from bot.backtest.walk_forward import WalkForward
    from bot.config import load_config

    cfg = load_config(write_config({"strategy": {"name": "momentum",
                                                 "params": {"k": 2, "lookback": 126}},
                                    "backtest": {"end": date(2012, 12, 31)}}))
    prices, universe = load_backtest_prices(cfg, None)
    run = run_configured(cfg, prices, universe, walk_forward=WalkForward(252, 21))
    starts = [pd.Timestamp(f["test_start"]) for f in run.metrics["walk_forward"]["folds"]][1:]
    traded = set(pd.DatetimeIndex(run.result.trades["date"]))
    assert len(starts) > 30
    assert sum(s in traded for s in starts) > len(starts) / 3


def test_a_start_inside_the_training_window_exits_2_naming_it(write_config, tmp_path):
    """--start too early for TRAIN was moved on without a word (without walk-forward the
    same start is an exit-2 error naming the earliest day)."""
    config = write_config({"backtest": {"calendar": "monthly", "tearsheet": False}})
    proc = run_cli_in_process("backtest", "--config", str(config), "--start", "2006-01-03",
                              "--walk-forward", "504:63", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "--walk-forward 504:63" in proc.stderr and "start on 2007-01-" in proc.stderr
