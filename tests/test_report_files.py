"""The backtest's CSV files: weights.csv is written by a row formatter that must equal
pandas' ``to_csv(float_format="%.10g")`` byte for byte (users diff these files)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bot.backtest import report
from bot.backtest.engine import run_backtest
from bot.backtest.report import _write_float_table
from tests.conftest import random_walk_prices
from tests.test_backtest import fixed, make_spec

SYMBOLS = ["AAA", "BBB", "CCC"]


def test_weights_table_equals_pandas_to_csv_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_ROWS_PER_CHUNK", 7)  # several chunks, the last one short
    prices = random_walk_prices(SYMBOLS, 120)
    result = run_backtest(prices, fixed(), make_spec("weekly"))
    day = pd.Index(result.dates.strftime("%Y-%m-%d"), name="date")
    values = np.column_stack([result.held_weights(), result.cash / result.equity])
    values[3, 1] = 0.0
    values[4, 2] = 1e-17  # exponent notation
    columns = [*result.symbols, "cash"]
    _write_float_table(tmp_path / "ours.csv", day, columns, [values[:, :-1], values[:, -1]],
                       "%.10g")  # the weights block and the cash column, as the report does
    pd.DataFrame(values, index=day, columns=columns).to_csv(tmp_path / "pandas.csv",
                                                            float_format="%.10g")
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
    values[5, 0] = np.nan  # pandas writes an empty field: the same file still
    _write_float_table(tmp_path / "nan.csv", day, columns, [values], "%.10g")
    pd.DataFrame(values, index=day, columns=columns).to_csv(tmp_path / "pandas_nan.csv",
                                                            float_format="%.10g")
    assert (tmp_path / "nan.csv").read_bytes() == (tmp_path / "pandas_nan.csv").read_bytes()
