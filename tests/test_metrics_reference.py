"""The tearsheet's statistics computed without scipy.stats (imported only by these tests)
equal scipy's: skewness, excess kurtosis, binomial tails and the χ²₁ tail."""

from __future__ import annotations

import numpy as np
import pytest

from bot.backtest.metrics import (
    binomial_tail,
    chi2_sf_1df,
    distribution_figures,
    kupiec_pof_p_value,
    var_breaches,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distribution_figures_skew_and_kurtosis_equal_scipys_biased_moments(seed):
    from scipy.stats import kurtosis, skew  # here: scipy.stats takes ~0.7 s to import

    returns = np.random.default_rng(seed).standard_t(4, 4000) * 0.01
    figures = distribution_figures(returns)
    assert figures["skew"] == pytest.approx(skew(returns), rel=1e-12, abs=1e-14)
    assert figures["kurtosis"] == pytest.approx(kurtosis(returns), rel=1e-12)


@pytest.mark.parametrize(("n", "p"), [(1, 0.05), (100, 0.05), (250, 0.01), (4800, 0.05),
                                      (20_000, 0.1), (30, 0.5)])
def test_binomial_tail_equals_scipys_cdf_and_sf(n, p):
    from scipy.stats import binom

    for count in sorted({0, 1, int(n * p) // 2, int(n * p), int(n * p) + 1, 2 * int(n * p), n}):
        count = min(count, n)
        assert binomial_tail(range(count + 1), n, p) == pytest.approx(
            binom.cdf(count, n, p), rel=1e-9, abs=1e-300)
        assert binomial_tail(range(count, n + 1), n, p) == pytest.approx(
            binom.sf(count - 1, n, p), rel=1e-9, abs=1e-300)


def test_chi2_sf_1df_equals_scipys_chi2_with_one_degree_of_freedom():
    from scipy.stats import chi2

    for x in np.linspace(0.0, 60.0, 241):
        assert chi2_sf_1df(float(x)) == pytest.approx(chi2.sf(x, 1), rel=1e-12)


def test_var_breaches_p_values_equal_the_scipy_formulas():
    from scipy.stats import binom

    rng = np.random.default_rng(7)
    returns = rng.normal(0.0, 0.01, 2000)
    var_1d = np.full(2000, 0.014)  # ~8% of days breach at 95%: too many
    block = var_breaches(returns, var_1d, 0.95)
    count, n = block["var_breaches"], block["var_days_evaluated"]
    tail = binom.sf(count - 1, n, 0.05) if count > n * 0.05 else binom.cdf(count, n, 0.05)
    assert block["var_breach_p_value"] == pytest.approx(min(1.0, 2 * tail), rel=1e-9)
    assert kupiec_pof_p_value(count, n, 0.05) == block["var_kupiec_pof_p_value"]
    assert block["var_kupiec_pof_p_value"] < 0.05  # the test does reject a VaR that is too low
