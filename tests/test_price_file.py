"""load_price_csv / select_universe: good files load, every kind of bad file is named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import brokers.prices
from bot.sample_market.generator import SAMPLE_PRICES_PATH, SYMBOLS
from brokers.errors import BrokerDataError
from brokers.prices import load_price_csv, select_universe


def write(tmp_path, text: str):
    path = tmp_path / "prices.csv"
    path.write_text(text)
    return path


def test_load_price_csv_valid_file_gives_dated_float_frame(tmp_path):
    path = write(tmp_path, "date,SPY,TLT\n2024-01-02,470.1,\n2024-01-03,468.5,95.2\n")
    prices = load_price_csv(path)
    assert isinstance(prices.index, pd.DatetimeIndex) and prices.index.name == "date"
    assert list(prices.columns) == ["SPY", "TLT"]
    assert all(dtype == np.float64 for dtype in prices.dtypes)
    assert prices.loc["2024-01-03", "SPY"] == 468.5
    assert np.isnan(prices.loc["2024-01-02", "TLT"])  # not listed yet: allowed


def test_load_price_csv_bundled_sample_loads_every_symbol():
    prices = load_price_csv(SAMPLE_PRICES_PATH)
    assert tuple(prices.columns) == SYMBOLS
    assert len(prices) > 5000 and not prices.isna().to_numpy().any()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("day,SPY\n2024-01-02,1\n", ["no 'date' column"]),
        ("date,SPY\n2024-01-02,1\n2024-02-30,2\n", ["line 3", "2024-02-30"]),
        ("date,SPY\n2024-01-02,1\n2024-01-02,2\n", ["duplicate date", "2024-01-02"]),
        ("date,SPY\n2024-01-03,1\n2024-01-02,2\n", ["not sorted", "2024-01-02"]),
        ("date,SPY,TLT\n2024-01-02,1,2\n2024-01-03,1,\n", ["NaN", "TLT", "2024-01-03"]),
        ("date,SPY,TLT\n2024-01-02,1,2\n2024-01-03,0,2\n", ["SPY", "2024-01-03", "positive"]),
        ("date,SPY,TLT\n2024-01-02,1,2\n2024-01-03,1,-3\n", ["TLT", "2024-01-03", "positive"]),
        ("date,SPY,TLT\n2024-01-02,1,2\n2024-01-03,n/a,2\n", ["line 3", "SPY", "'n/a'"]),
        # text the C parser's float reader refuses or a text NaN: never read as "not listed"
        ("date,SPY,TLT\n2024-01-02,1,nan\n2024-01-03,1,2\n", ["line 2", "TLT", "'nan'"]),
        ("date,SPY,TLT\n2024-01-02,1,NA\n2024-01-03,1,2\n", ["line 2", "TLT", "'NA'"]),
        ("date,SPY\n2024-01-02,1\n2024-01-03,inf\n", ["SPY", "2024-01-03", "positive"]),
        ("date,SPY,SPY\n2024-01-02,1,2\n", ["'SPY' appears twice"]),
        ("", ["empty"]),
        ("date,SPY\n", ["no price rows"]),
    ],
)
def test_load_price_csv_bad_data_raises_naming_file_and_place(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(BrokerDataError) as caught:
        load_price_csv(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_load_price_csv_missing_file_raises_naming_path(tmp_path):
    with pytest.raises(BrokerDataError, match=r"not found.*nowhere\.csv"):
        load_price_csv(tmp_path / "nowhere.csv")


def test_select_universe_returns_requested_columns_in_order():
    prices = pd.DataFrame({"SPY": [1.0], "TLT": [2.0], "GLD": [3.0]})
    assert list(select_universe(prices, ["GLD", "SPY"]).columns) == ["GLD", "SPY"]


def test_select_universe_missing_symbols_raises_naming_each():
    prices = pd.DataFrame({"SPY": [1.0], "TLT": [2.0]})
    with pytest.raises(BrokerDataError, match="QQQ, IWM") as caught:
        select_universe(prices, ["SPY", "QQQ", "IWM"])
    assert "available: SPY, TLT" in str(caught.value)


def test_select_universe_repeated_or_empty_list_raises():
    prices = pd.DataFrame({"SPY": [1.0]})
    with pytest.raises(BrokerDataError, match="SPY more than once"):
        select_universe(prices, ["SPY", "SPY"])
    with pytest.raises(BrokerDataError, match="empty"):
        select_universe(prices, [])


def test_load_price_csv_spreadsheet_export_with_bom_and_spaces_loads(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffdate, SPY\r\n2024-01-02, 470.1\r\n2024-01-03, 468.5\r\n".encode())
    prices = load_price_csv(path)
    assert list(prices.columns) == ["SPY"]
    assert prices["SPY"].tolist() == [470.1, 468.5]


def test_load_price_csv_padded_cells_load_same_as_clean_file(tmp_path):
    clean = write(tmp_path, "date,SPY,TLT\n2024-01-02,470.1,\n2024-01-03,468.5,95.25\n")
    padded = tmp_path / "padded.csv"
    padded.write_text("date ,SPY,TLT\n2024-01-02 , 470.1 ,\n 2024-01-03,468.5 , 95.25\n")
    pd.testing.assert_frame_equal(load_price_csv(padded), load_price_csv(clean), check_exact=True)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("quoted", [False, True])
def test_load_price_csv_short_row_named_whatever_the_files_shape(tmp_path, newline, quoted):
    """The row-width check counts commas on a plain file and reads CSV otherwise (CRLF,
    quoted cells): both name the short row, and both skip an empty line."""
    q = '"' if quoted else ""
    rows = ["date,SPY,TLT", f"2024-01-02,{q}470.1{q},95.0", "", f"2024-01-03,{q}468.5{q}",
            "2024-01-04,469.0,95.5"]
    path = tmp_path / "prices.csv"
    path.write_bytes(newline.join(rows).encode() + newline.encode())
    with pytest.raises(BrokerDataError, match="line 4 has 2 field"):
        load_price_csv(path)
    del rows[3]
    path.write_bytes(newline.join(rows).encode() + newline.encode())
    assert load_price_csv(path)["SPY"].tolist() == [470.1, 469.0]


@pytest.mark.parametrize("cell", ["1e308", "1e300", "1.5e9", "1e-300", "1e-320", "9e-7"])
def test_load_price_csv_absurd_price_refused_naming_symbol_date_value(tmp_path, cell):
    """1e308 used to load and overflow equity / price to inf inside a cycle (a traceback);
    the bounds themselves still load."""
    path = write(tmp_path, f"date,SPY,TLT\n2024-01-02,1,2\n2024-01-03,3,{cell}\n")
    with pytest.raises(BrokerDataError) as caught:
        load_price_csv(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: price for TLT on 2024-01-03 is {float(cell):g}, ")
    assert "outside the plausible 1e-06 to 1e+09 per share" in message
    ok = write(tmp_path, "date,SPY,TLT\n2024-01-02,1e9,2\n2024-01-03,3,1e-6\n")
    assert load_price_csv(ok).to_numpy().tolist() == [[1e9, 2.0], [3.0, 1e-6]]


@pytest.mark.parametrize("text_first", [False, True])  # the one-pass C parse, or not
def test_load_price_csv_column_without_any_price_refused(tmp_path, monkeypatch, text_first):
    """An all-blank VNQ used to load (check-config exit 0) and every cycle held; a column
    whose prices start late (an IPO) still loads."""
    if text_first:
        monkeypatch.setattr(brokers.prices, "_read_strict", lambda path, names: None)
    path = write(tmp_path, "date,SPY,VNQ,TLT\n2024-01-02,1,,\n2024-01-03,1,,2\n")
    with pytest.raises(BrokerDataError, match=rf"^{path}: column VNQ has no prices \(every "
                                              r"cell is blank\)"):
        load_price_csv(path)
    path = write(tmp_path, "date,SPY,VNQ,TLT\n2024-01-02,1,,\n2024-01-03,1,,\n")
    with pytest.raises(BrokerDataError, match="columns VNQ, TLT have no prices"):
        load_price_csv(path)
    late = write(tmp_path, "date,SPY,VNQ\n2024-01-02,1,\n2024-01-03,1,\n2024-01-04,1,5\n")
    assert load_price_csv(late)["VNQ"].isna().tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("header", "hint"),
    [
        ("date;SPY;TLT", "the file looks semicolon-separated: allocbot reads comma-separated"),
        ("date\tSPY\tTLT", "the file looks tab-separated: allocbot reads comma-separated"),
        ("Date,SPY,TLT", "column names are case-sensitive: rename 'Date' to 'date'"),
        ("DATE,SPY,TLT", "column names are case-sensitive: rename 'DATE' to 'date'"),
    ],
)
def test_load_price_csv_header_without_date_column_hints_why(tmp_path, header, hint):
    row = "2024-01-02;1;2" if ";" in header else "2024-01-02,1,2"
    path = write(tmp_path, f"{header}\n{row}\n")
    with pytest.raises(BrokerDataError) as caught:
        load_price_csv(path)
    assert str(caught.value).startswith(f"{path}: no 'date' column in header ")
    assert hint in str(caught.value)
