"""load_price_csv on files that are not UTF-8 CSV text (a Latin-1/cp1252 Excel export, a
stray byte deep in the file, gzip, xlsx, UTF-16, binary): a BrokerDataError naming the file
and where decoding failed, never a UnicodeDecodeError traceback."""

from __future__ import annotations

import gzip

import pytest

from brokers.errors import BrokerDataError
from brokers.prices import load_price_csv
from tests.conftest import one_line_error, run_cli_in_process

GOOD_ROWS = "".join(f"2024-01-{day:02d},{100 + day}.5,{90 + day}.25\n" for day in range(2, 6))


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        # an Excel "CSV" export in cp1252: é in a price cell
        (b"date,SPY,TLT\n2020-01-02,1\xe9,2\n", ["line 2, column 13", "byte 0xE9, not UTF-8",
                                                 "CSV UTF-8", "iconv"]),
        # Latin-1 in the header
        (b"date,SPY,CAC\xc9\n2024-01-02,1,2\n", ["line 1, column 13", "byte 0xC9"]),
        # a no-break space (0xA0 in cp1252) deep in an otherwise ASCII file
        (b"date,SPY,TLT\n" + GOOD_ROWS.encode() + b"2024-01-08,\xa0331.7,65.6\n",
         ["line 6, column 12", "byte 0xA0, not UTF-8", "must be UTF-8"]),
        # a binary file
        (bytes(range(128, 256)) * 4, ["line 1, column 1", "byte 0x80, not UTF-8"]),
        # NUL padding after the last row (a file cut short by a crash)
        (b"date,SPY,TLT\n" + GOOD_ROWS.encode() + b"\x00" * 16, ["line 6, column 1", "NUL"]),
        (gzip.compress(b"date,SPY,TLT\n" + GOOD_ROWS.encode()), ["gzip-compressed"]),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(200)), ["zip archive", "xlsx"]),
        (("date,SPY,TLT\n" + GOOD_ROWS).encode("utf-16"), ["UTF-16", "CSV UTF-8"]),
    ],
    ids=["cp1252-cell", "latin1-header", "nbsp-deep", "binary", "nul-tail", "gzip", "xlsx",
         "utf16"],
)
def test_load_price_csv_not_utf8_text_names_file_and_place(tmp_path, data, fragments):
    path = tmp_path / "prices.csv"
    path.write_bytes(data)
    with pytest.raises(BrokerDataError) as caught:
        load_price_csv(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_check_config_refuses_a_latin1_price_file_in_one_line(write_config, tmp_path):
    """It used to exit 1 with a UnicodeDecodeError traceback; UTF-8 text that is not ASCII
    (a symbol named with an accent, a BOM) still loads."""
    prices = tmp_path / "latin1.csv"
    prices.write_bytes(b"date,SPY,TLT\n" + GOOD_ROWS.encode() + b"2024-01-08,1\xe9,2\n")
    config = write_config({"sim": {"prices": str(prices), "replay_start": None},
                           "universe": {"symbols": ["SPY", "TLT"]}})
    line = one_line_error(run_cli_in_process("check-config", "--config", str(config)))
    assert f"{prices}: line 6, column 13: byte 0xE9, not UTF-8" in line
    prices.write_bytes(("\ufeffdate,SPY,CAC\u00c9\n" + GOOD_ROWS).encode())
    assert list(load_price_csv(prices).columns) == ["SPY", "CAC\u00c9"]
