"""Tests for strategies/machine_learning.py (ml_regression) and strategies/regime.py
(regime_kmeans): no look-ahead, planted signals, config errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import strategies
from strategies.base import StrategyConfigError, StrategyError

SYMBOLS = list("ABCDEFGH")


def frame(values: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(values, index=pd.bdate_range("2019-01-01", periods=len(values)),
                        columns=columns or SYMBOLS[: values.shape[1]])


def drifting_prices(n_days: int = 1500, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    """Returns with a persistent drift ±0.2%/day whose sign flips every ~100-150 days:
    trailing returns predict the next month's."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_days)[:, None]
    period = rng.uniform(200, 300, len(SYMBOLS))
    phase = rng.uniform(0, 2 * np.pi, len(SYMBOLS))
    drift = 0.002 * np.sign(np.sin(2 * np.pi * t / period + phase))
    r = drift + rng.normal(0, 0.01, (n_days, len(SYMBOLS)))
    return frame(100 * np.cumprod(1 + r, axis=0)), drift


def regime_prices(n_days: int = 1200, seed: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """Blocks of 150 days alternating calm (0.4%/day vol, rising) and stress (2%, falling)."""
    rng = np.random.default_rng(seed)
    stress = (np.arange(n_days) // 150) % 2 == 1
    vol = np.where(stress, 0.02, 0.004)[:, None]
    drift = np.where(stress, -0.002, 0.0005)[:, None]
    r = drift + vol * rng.normal(0, 1, (n_days, 4))
    return frame(100 * np.cumprod(1 + r, axis=0), ["SPY", "EFA", "IEF", "GLD"]), stress


def perturbed_after(prices: pd.DataFrame, asof_pos: int, seed: int = 99) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = prices.copy()
    tail = out.iloc[asof_pos + 1:]
    out.iloc[asof_pos + 1:] = tail * rng.uniform(0.5, 2.0, tail.shape)
    return out


# ---- ml_regression ---------------------------------------------------------------------

def test_ml_panel_labels_are_known_by_asof_and_match_forward_returns() -> None:
    from strategies.machine_learning import build_panel  # here: sklearn takes ~0.6 s to import

    prices, _ = drifting_prices(600)
    h = 21
    panel = build_panel(prices, lookback_days=500, horizon_days=h)
    assert panel.label_end_p.max() == panel.asof_p  # last label ends exactly on the as-of row
    window = prices.iloc[-501:].to_numpy()
    expected = window[panel.train_rows_p + h] / window[panel.train_rows_p] - 1
    assert panel.y_train.reshape(len(panel.train_rows_p), -1) == pytest.approx(expected,
                                                                                rel=1e-9)


def test_ml_features_use_only_past_prices() -> None:
    from strategies.machine_learning import build_panel  # here: sklearn takes ~0.6 s to import

    prices, _ = drifting_prices(700)
    asof = 599
    short = build_panel(prices.iloc[: asof + 1], lookback_days=599, horizon_days=21)
    longer = build_panel(perturbed_after(prices, asof), lookback_days=699, horizon_days=21)
    # the as-of date's prediction features equal the same date's training features in a
    # longer panel whose later prices were scrambled
    row = int(np.flatnonzero(longer.train_rows_p == asof)[0])  # both start at price row 0
    n = len(SYMBOLS)
    assert longer.x_train[row * n:(row + 1) * n] == pytest.approx(short.x_pred, rel=1e-9)


def test_ml_cv_folds_leave_horizon_gap_before_validation() -> None:
    from strategies.machine_learning import cv_splits  # here: sklearn takes ~0.6 s to import

    h, n_assets = 21, 3
    for train, test in cv_splits(400, n_assets, n_splits=5, gap_days=h):
        train_dates, test_dates = train // n_assets, test // n_assets
        assert train_dates.max() + h < test_dates.min()  # last label ends before validation
        assert len(train) % n_assets == 0 and len(test) % n_assets == 0


@pytest.mark.parametrize("model", ["ridge", "lasso"])
def test_ml_forecast_ignores_prices_after_asof(model: str) -> None:
    prices, _ = drifting_prices(1300)
    asof = 1100
    s = strategies.create("ml_regression", model=model)
    a = s.forecast(prices.iloc[: asof + 1])
    b = s.forecast(perturbed_after(prices, asof).iloc[: asof + 1])
    assert a.alpha == b.alpha
    np.testing.assert_array_equal(a.mu_annual, b.mu_annual)


@pytest.mark.parametrize("model", ["ridge", "lasso"])
def test_ml_forecast_detects_planted_momentum(model: str) -> None:
    from strategies.machine_learning import DEFAULT_ALPHAS  # here: sklearn takes ~0.6 s to import

    prices, drift = drifting_prices(1500)
    fc = strategies.create("ml_regression", model=model).forecast(prices)
    up = drift[-1] > 0
    assert fc.mu_annual[up].mean() > fc.mu_annual[~up].mean() + 0.2
    assert fc.alpha < max(DEFAULT_ALPHAS[model])  # CV chose less than the max penalty


def test_ml_forecast_on_noise_chooses_strong_penalty() -> None:
    rng = np.random.default_rng(4)
    prices = frame(100 * np.cumprod(1 + rng.normal(0.0003, 0.01, (1200, 5)), axis=0))
    fc = strategies.create("ml_regression", model="ridge").forecast(prices)
    assert fc.alpha >= 1e4
    assert np.ptp(fc.mu_annual) < 0.05  # nearly the same forecast for every asset


def test_ml_short_history_raises_naming_lookback() -> None:
    prices, _ = drifting_prices(200)
    with pytest.raises(StrategyError, match="lookback_days"):
        strategies.create("ml_regression").forecast(prices)


def test_ml_target_weights_long_only_within_bounds_and_no_look_ahead() -> None:
    prices, drift = drifting_prices(1300)
    asof = 1199
    s = strategies.create("ml_regression", max_weight=0.4, risk_aversion=2.5)
    w = s.target_weights(prices.iloc[: asof + 1])
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    assert (w >= -1e-12).all() and (w <= 0.4 + 1e-9).all()
    w2 = s.target_weights(perturbed_after(prices, asof).iloc[: asof + 1])
    pd.testing.assert_series_equal(w, w2)
    up = drift[asof] > 0
    assert w[up].sum() > w[~up].sum()


@pytest.mark.parametrize("params, key", [
    ({"model": "xgboost"}, "model"),
    ({"horizon_days": 0}, "horizon_days"),
    ({"alphas": []}, "alphas"),
    ({"alphas": [1.0, -2.0]}, "alphas"),
    ({"n_splits": 1}, "n_splits"),
    ({"max_weight": 0}, "max_weight"),
    ({"covariance": "shrunk"}, "covariance"),
    ({"penalty": 1.0}, "penalty"),
])
def test_ml_invalid_params_raise_config_error(params: dict, key: str) -> None:
    with pytest.raises(StrategyConfigError, match=key):
        strategies.create("ml_regression", **params)


# ---- regime_kmeans ---------------------------------------------------------------------

CALM_STRESS = [{"SPY": 0.8, "IEF": 0.2}, {"IEF": 0.5, "GLD": 0.5}]


@pytest.mark.parametrize("asof, expected", [(1040, CALM_STRESS[0]), (1190, CALM_STRESS[1])])
def test_regime_kmeans_uses_current_regime_weights(asof: int, expected: dict) -> None:
    prices, stress = regime_prices()
    assert bool(stress[asof]) == (expected is CALM_STRESS[1])
    s = strategies.create("regime_kmeans", regime_weights=CALM_STRESS, lookback_days=1000)
    w = s.target_weights(prices.iloc[: asof + 1])
    assert {k: v for k, v in w.items() if v > 0} == expected


def test_regime_kmeans_regimes_ordered_by_volatility_and_match_planted_blocks() -> None:
    prices, stress = regime_prices()
    s = strategies.create("regime_kmeans", regime_weights=CALM_STRESS, lookback_days=1000,
                          vol_window_days=21)
    fit = s.regimes(prices)
    assert fit.regime_vols[0] < fit.regime_vols[1]
    truth = stress[prices.index.get_indexer(fit.dates)]
    assert np.mean(fit.labels == truth) > 0.85


def test_regime_kmeans_ignores_prices_after_asof() -> None:
    prices, _ = regime_prices()
    asof = 1100
    for params in ({"regime_weights": CALM_STRESS},
                   {"regime_strategy": {"name": "inverse_volatility"}}):
        s = strategies.create("regime_kmeans", lookback_days=1000, **params)
        a = s.target_weights(prices.iloc[: asof + 1])
        b = s.target_weights(perturbed_after(prices, asof).iloc[: asof + 1])
        pd.testing.assert_series_equal(a, b)


def test_regime_kmeans_strategy_is_fitted_on_current_regime_days_only() -> None:
    prices, _ = regime_prices()
    # a 200-day estimation window reaches past the current 150-day block into earlier
    # blocks of the same regime: only that regime's days may enter it
    s = strategies.create("regime_kmeans", lookback_days=1000, regime_strategy={
        "name": "inverse_volatility", "params": {"lookback_days": 200}})
    fit = s.regimes(prices)
    w = s.target_weights(prices)
    rets = prices.pct_change().iloc[-1000:]
    in_regime = rets.index.isin(fit.dates[fit.labels == fit.current])
    sd = rets.loc[in_regime].iloc[-200:].std(ddof=1)
    expected = (1 / sd) / (1 / sd).sum()
    assert w.to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-9)
    all_days = rets.iloc[-200:].std(ddof=1)
    assert not np.allclose(w.to_numpy(), ((1 / all_days) / (1 / all_days).sum()).to_numpy(),
                           rtol=1e-3)


def test_regime_kmeans_is_deterministic() -> None:
    prices, _ = regime_prices()
    s = strategies.create("regime_kmeans", regime_weights=CALM_STRESS, n_regimes=2)
    first = s.regimes(prices)
    np.testing.assert_array_equal(first.labels, s.regimes(prices).labels)


@pytest.mark.parametrize("params, key", [
    ({}, "exactly one"),
    ({"regime_weights": CALM_STRESS, "regime_strategy": "equal_weight"}, "exactly one"),
    ({"regime_weights": [{"SPY": 1.0}]}, "regime_weights"),
    ({"regime_weights": [{"SPY": 1.0}, {"SPY": 1.5}]}, r"regime_weights\[1\]"),
    ({"regime_strategy": {"name": "nope"}}, "regime_strategy"),
    ({"regime_strategy": "equal_weight", "n_regimes": 1}, "n_regimes"),
    ({"regime_strategy": "equal_weight", "clusters": 3}, "clusters"),
])
def test_regime_kmeans_invalid_params_raise_config_error(params: dict, key: str) -> None:
    with pytest.raises(StrategyConfigError, match=key):
        strategies.create("regime_kmeans", **params)


def test_regime_kmeans_weight_symbol_missing_from_prices_raises() -> None:
    prices, _ = regime_prices()
    s = strategies.create("regime_kmeans", regime_weights=[{"QQQ": 1.0}, {"QQQ": 0.5}],
                          lookback_days=1000)
    with pytest.raises(StrategyError, match="QQQ"):
        s.target_weights(prices)
