"""Deflated Sharpe Ratio and PBO (CSCV) against hand-computed values and planted cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bot.research.overfitting import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)


def test_dsr_paper_worked_example_is_0_9004():
    """Bailey & López de Prado (2014), numerical example: N = 100 trials, V[SR] = 1/2
    (annualized), T = 1250 daily returns (250 a year), SR = 2.5 annualized, skew −3,
    kurtosis 10 → SR₀ ≈ 0.1132 daily and DSR ≈ 0.9004."""
    years = 250
    sr0 = expected_max_sharpe(100, 0.5 / years)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(years), 1250, 100, 0.5 / years, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_psr_normal_returns_equals_hand_formula():
    # SR 0.1 vs 0 over T = 101 normal returns: Φ(0.1·10 / √(1 + 2/4·0.01))
    from scipy.stats import norm  # here: scipy.stats takes ~0.7 s to import

    expected = norm.cdf(1.0 / math.sqrt(1.005))
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(expected,
                                                                                  rel=1e-12)


def test_expected_max_sharpe_one_trial_is_zero_and_grows_with_trials():
    assert expected_max_sharpe(1, 0.01) == 0.0
    assert 0 < expected_max_sharpe(10, 0.01) < expected_max_sharpe(1000, 0.01)


def _two_block_matrix(a_block0: float, a_block1: float, b_block0: float, b_block1: float
                      ) -> np.ndarray:
    """2 strategies, 2 blocks of 4 days: each block alternates mean ± 0.01 (sd fixed), so
    each block's Sharpe ranks by its mean."""
    wiggle = np.array([0.01, -0.01, 0.01, -0.01])
    a = np.concatenate([a_block0 + wiggle, a_block1 + wiggle])
    b = np.concatenate([b_block0 + wiggle, b_block1 + wiggle])
    return np.column_stack([a, b])


def test_pbo_winner_always_loses_out_of_sample_is_one():
    # A is best in block 0, worst in block 1; B the reverse: both splits pick a loser
    result = probability_of_backtest_overfitting(_two_block_matrix(0.02, -0.02, -0.01, 0.01),
                                                 n_blocks=2)
    assert result.n_combinations == 2
    assert result.pbo == 1.0
    # ω = rank 1 / (N + 1) = 1/3 → λ = ln(1/2)
    assert np.allclose(result.logits, math.log(0.5))


def test_pbo_dominant_strategy_is_zero():
    result = probability_of_backtest_overfitting(_two_block_matrix(0.02, 0.02, 0.0, 0.0),
                                                 n_blocks=2)
    assert result.pbo == 0.0
    assert np.allclose(result.logits, math.log(2.0))  # ω = 2/3


def test_pbo_matches_brute_force_on_a_small_matrix():
    rng = np.random.default_rng(3)
    m = rng.normal(0, 0.01, size=(40, 5))
    result = probability_of_backtest_overfitting(m, n_blocks=4)
    blocks = np.split(m, 4)
    from itertools import combinations

    lows = []
    for train in combinations(range(4), 2):
        tr = np.vstack([blocks[i] for i in train])
        te = np.vstack([blocks[i] for i in range(4) if i not in train])
        sr_tr = tr.mean(0) / tr.std(0, ddof=1)
        sr_te = te.mean(0) / te.std(0, ddof=1)
        rank = 1 + np.sum(sr_te < sr_te[np.argmax(sr_tr)])
        lows.append(rank <= 3)  # λ ≤ 0 ⇔ ω ≤ 1/2 ⇔ rank ≤ (N + 1)/2 = 3
    assert result.n_combinations == 6
    assert result.pbo == pytest.approx(np.mean(lows))


def test_pbo_planted_edge_near_zero_noise_around_half():
    rng = np.random.default_rng(42)
    noise = rng.normal(0.0, 0.01, size=(2000, 30))
    planted = noise.copy()
    planted[:, 7] += 0.002  # one real edge: daily Sharpe ≈ 0.2
    assert probability_of_backtest_overfitting(planted).pbo < 0.05
    assert probability_of_backtest_overfitting(noise).pbo >= 0.4


def test_pbo_rejects_odd_blocks_and_short_data():
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(np.zeros((100, 3)), n_blocks=3)
    with pytest.raises(ValueError, match="at least 32 rows"):
        probability_of_backtest_overfitting(np.zeros((20, 3)))


def _sweep_returns(tmp_path, columns: list[np.ndarray], rf: float):
    """FinishedTrials (slot j: returns column j, its Sharpe at ``rf`` as the objective)
    and the returns/ files ``overfitting_stats`` reads."""
    from bot.backtest.metrics import sharpe
    from bot.research.study import FinishedTrial
    from bot.research.sweep import RETURNS_DIR

    (tmp_path / RETURNS_DIR).mkdir()
    rows = []
    for j, r in enumerate(columns):
        np.save(tmp_path / RETURNS_DIR / f"slot_{j:06d}.npy", r)
        value = sharpe(r, rf)
        rows.append(FinishedTrial(j, j, {"k": j}, value,
                                  "complete" if value is not None else "failed",
                                  {"metrics": {"sharpe": value}}))
    return rows


def test_dsr_uses_the_excess_returns_of_the_reported_sharpe(tmp_path):
    """At [backtest] risk_free_rate 5 %, the DSR's Sharpe is the reported (objective's)
    Sharpe ÷ √252, not the rf = 0 figure; V and the DSR follow from those Sharpe ratios.
    An all-cash trial (zero volatility: no Sharpe) stays out of V but counts in N."""
    from bot.backtest.metrics import daily_risk_free, sharpe
    from bot.research.results import best_trial, overfitting_stats

    rng = np.random.default_rng(5)
    rf = 0.05
    cols = [rng.normal(mu, 0.01, 600) for mu in (0.0004, 0.0006, 0.0002, 0.0005)]
    cols.append(np.zeros(600))  # all cash
    rows = _sweep_returns(tmp_path, cols, rf)
    best = best_trial(rows, "maximize")
    assert best is not None and best.slot == int(np.argmax([sharpe(c, rf) for c in cols[:4]]))
    stats = overfitting_stats(tmp_path, rows, best, rf)
    daily = [sharpe(c, rf) / math.sqrt(252) for c in cols[:4]]
    assert stats["best_daily_sharpe"] * math.sqrt(252) == pytest.approx(best.value, rel=1e-12)
    assert stats["sharpe_variance_daily"] == pytest.approx(np.var(daily, ddof=1), rel=1e-12)
    x = cols[best.slot] - daily_risk_free(rf)
    from scipy.stats import kurtosis, skew

    expected = deflated_sharpe_ratio(daily[best.slot], 600, 5, float(np.var(daily, ddof=1)),
                                     float(skew(x)), float(kurtosis(x, fisher=False)))
    assert stats["n_trials"] == 5
    assert stats["deflated_sharpe_ratio"] == pytest.approx(expected, rel=1e-12)
    assert "nan" not in stats["verdict"]


def test_dsr_undefined_for_a_flat_best_is_none_and_the_verdict_says_why(tmp_path):
    """An objective other than Sharpe can pick a zero-volatility trial: its DSR is None
    (JSON null) and the verdict names the reason instead of printing nan."""
    from bot.research.results import overfitting_stats

    rng = np.random.default_rng(6)
    rows = _sweep_returns(tmp_path, [np.zeros(600), rng.normal(0, 0.01, 600),
                                     rng.normal(0, 0.01, 600)], 0.0)
    stats = overfitting_stats(tmp_path, rows, rows[0], 0.0)
    assert stats["deflated_sharpe_ratio"] is None and stats["best_daily_sharpe"] is None
    assert "nan" not in stats["verdict"].lower()
    assert "undefined" in stats["verdict"] and "zero volatility" in stats["verdict"]


def test_pbo_flat_trial_below_the_risk_free_rate_ranks_last():
    """Constant excess returns −rf_d (all cash) rank as a Sharpe of −∞ in every split, as
    a trial far worse than the others does, whatever the rounding of their variance (they
    used to rank at 0, in the middle of losing trials)."""
    rng = np.random.default_rng(8)
    m = rng.normal(-0.0003, 0.01, size=(320, 3))
    flat = np.column_stack([m, np.full(320, -0.0002)])
    awful = np.column_stack([m, -0.05 + rng.normal(0, 1e-4, 320)])
    np.testing.assert_array_equal(probability_of_backtest_overfitting(flat).logits,
                                  probability_of_backtest_overfitting(awful).logits)


def test_sweep_report_never_shows_an_undefined_deflated_sharpe_ratio_as_cleared():
    """A flat best trial leaves the DSR undefined: the page once styled that verdict green
    ("verdict ok") and printed the DSR as a bare dash."""
    from bot.research.sweep_report import _overfitting_html

    stats = {"n_trials": 4, "n_obs": 100, "best_daily_sharpe": None,
             "sharpe_variance_daily": None, "expected_max_sharpe_annual": None,
             "skewness": None, "kurtosis": None, "deflated_sharpe_ratio": None,
             "dsr_note": "the best trial's returns have zero volatility",
             "verdict": "Deflated Sharpe Ratio undefined (zero volatility)", "pbo": None}
    page = _overfitting_html(stats)
    assert 'class="verdict"' in page and "verdict ok" not in page
    assert "zero volatility" in page.split("Deflated Sharpe Ratio (Bailey")[1]
