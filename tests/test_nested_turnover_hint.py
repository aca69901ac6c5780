"""The hint of the nested turnover-settings error fits where the wrapper sits: it said
"use NAME directly as [strategy]" also for a wrapper in the fallback (the operator would
replace the main strategy) and for a cap under regime_kmeans (dropping the regime
switching). It now says to put what is nested in the wrapper's place, which is given the
portfolio's weights wherever it is; following it gives a config ``check-config`` accepts."""

from __future__ import annotations

from typing import Any

from tests.conftest import invoke_cli

CAPPED = {"name": "min_variance", "params": {"max_turnover": 0.1}}
REGIME = {"name": "regime_kmeans", "params": {"lookback_days": 200, "regime_strategy": CAPPED}}


def _check_config(write_config, strategy: dict[str, Any], name: str) -> Any:
    """``check-config`` on the test config with ``strategy`` as its [strategy] table."""
    table = {"params": None, **strategy}  # (None: not the base config's params)
    return invoke_cli("check-config", "--config", str(write_config({"strategy": table},
                                                                   name=name)))


def test_a_wrapper_in_the_fallback_is_told_to_use_the_capped_strategy_as_the_fallback(
        write_config):
    refused = _check_config(write_config, {"name": "equal_weight", "fallback": {
        "name": "vol_target", "params": {"base": CAPPED}}}, "refused.toml")
    assert refused.exit_code == 2, (refused.stdout, refused.stderr)
    assert "[strategy].fallback: base.params.max_turnover: a strategy nested in vol_target" \
        in refused.stderr
    assert "use 'min_variance' in vol_target's place ([strategy], [strategy].fallback and a " \
           "regime_kmeans regime_strategy are each given the portfolio's weights)" \
        in refused.stderr, refused.stderr
    assert "directly as [strategy]" not in refused.stderr
    hinted = _check_config(write_config, {"name": "equal_weight", "fallback": CAPPED},
                           "hinted.toml")
    assert hinted.exit_code == 0, hinted.stderr


def test_a_cap_under_regime_kmeans_is_told_to_use_regime_kmeans_in_the_wrappers_place(
        write_config):
    refused = _check_config(write_config, {"name": "vol_target", "params": {"base": REGIME}},
                            "refused.toml")
    assert refused.exit_code == 2, (refused.stdout, refused.stderr)
    assert "[strategy.params]: base.params.regime_strategy.params.max_turnover: a strategy " \
           "nested in vol_target" in refused.stderr
    assert "use 'regime_kmeans' in vol_target's place ([strategy], [strategy].fallback and a " \
           "regime_kmeans regime_strategy are each given the portfolio's weights, and " \
           "regime_kmeans passes them on to 'min_variance')" in refused.stderr, refused.stderr
    hinted = _check_config(write_config, REGIME, "hinted.toml")
    assert hinted.exit_code == 0, hinted.stderr


def test_a_wrapper_under_regime_kmeans_is_told_to_put_the_capped_strategy_in_its_place(
        write_config):
    wrapped = {"name": "regime_kmeans", "params": {
        "lookback_days": 200, "regime_strategy": {"name": "trend_filter",
                                                  "params": {"base": CAPPED}}}}
    refused = _check_config(write_config, wrapped, "refused.toml")
    assert refused.exit_code == 2, (refused.stdout, refused.stderr)
    assert "[strategy.params]: regime_strategy: base.params.max_turnover: a strategy nested " \
           "in trend_filter" in refused.stderr
    assert "use 'min_variance' in trend_filter's place" in refused.stderr, refused.stderr
    assert "directly as [strategy]" not in refused.stderr
    hinted = _check_config(write_config, REGIME, "hinted.toml")
    assert hinted.exit_code == 0, hinted.stderr


def test_a_wrapper_as_the_strategy_is_told_to_use_the_capped_strategy_in_its_place(
        write_config):
    refused = _check_config(write_config, {"name": "vol_target", "params": {"base": CAPPED}},
                            "refused.toml")
    assert refused.exit_code == 2, (refused.stdout, refused.stderr)
    assert "[strategy.params]: base.params.max_turnover: a strategy nested in vol_target" \
        in refused.stderr
    assert "use 'min_variance' in vol_target's place" in refused.stderr, refused.stderr
    hinted = _check_config(write_config, CAPPED, "hinted.toml")
    assert hinted.exit_code == 0, hinted.stderr
