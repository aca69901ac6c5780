"""Load a wide CSV of daily adjusted closes and pick a universe from it.

The file shape is the one the bundled sample market uses (``bot/sample_market/sample_prices.csv``)
and any real data export can use: a ``date`` column (ISO ``YYYY-MM-DD``) and one column
per symbol with the adjusted close in account currency. Blank cells before a symbol's
first price mean "not listed yet" and are kept as NaN; any other blank, a zero, negative
or non-numeric price, a price outside [MIN_PRICE, MAX_PRICE], a column with no price at
all, a file that is not UTF-8 text, an unparseable, duplicate or unsorted date is an error
that names the file, the line or date and the symbol, because a bad price must never reach
an order.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from brokers.base import validate_price_frame
from brokers.errors import BrokerDataError

DATE_COLUMN = "date"
# Line 1 of the file is the header, so data row i (0-based) sits on line i + 2.
_FIRST_DATA_LINE = 2
# Plausible adjusted closes per share. BRK.A, the dearest US share, trades near 7e5 and
# sub-penny OTC stocks near 1e-4; a price beyond these is a unit, exponent or decimal-point
# error, and 1e300 or 1e-300 overflows equity / price to inf inside a cycle.
MAX_PRICE = 1e9
MIN_PRICE = 1e-6
# First bytes of files that are not CSV text, and what they are.
_BINARY_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed: decompress it first (gunzip)"),
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook?): save it as \"CSV UTF-8\""),
    (b"\xff\xfe", "UTF-16 text (Excel's \"Unicode Text\"): save it as \"CSV UTF-8\""),
    (b"\xfe\xff", "UTF-16 text: save it as \"CSV UTF-8\""),
)


def _read_utf8_bytes(path: Path) -> bytes:
    """The file's bytes, once they are known to be UTF-8 text: a compressed, binary or
    Latin-1/cp1252 file is refused naming the line, column and byte where decoding fails."""
    raw = path.read_bytes()
    if raw.isascii() and b"\x00" not in raw:  # the usual file: nothing to decode
        return raw
    for signature, what in _BINARY_SIGNATURES:
        if raw.startswith(signature):
            raise BrokerDataError(f"{path}: not a CSV text file: it is {what}")
    bad, reason, fix = raw.find(b"\x00"), "a NUL byte (0x00), as in a binary file", ""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if bad < 0 or exc.start < bad:
            bad, reason = exc.start, f"byte 0x{raw[exc.start]:02X}, not UTF-8"
            fix = "; a Latin-1/cp1252 export converts with iconv -f cp1252 -t utf-8"
    if bad < 0:
        return raw
    line = raw.count(b"\n", 0, bad) + 1
    column = bad - raw.rfind(b"\n", 0, bad)
    raise BrokerDataError(
        f"{path}: line {line}, column {column}: {reason}; the file must be UTF-8 text "
        f"(in Excel save it as \"CSV UTF-8\"{fix})"
    )


def _read_header(path: Path) -> list[str]:
    """The header cells, stripped; errors name the file when it is empty or has duplicates."""
    with path.open(newline="", encoding="utf-8-sig") as handle:  # tolerate a BOM
        header = next(csv.reader(handle), None)
    if not header or all(not cell.strip() for cell in header):
        raise BrokerDataError(f"{path}: file is empty (expected a header with a 'date' column)")
    names = [cell.strip() for cell in header]
    if DATE_COLUMN not in names:
        raise BrokerDataError(
            f"{path}: no '{DATE_COLUMN}' column in header {names}; the first column must be "
            f"'{DATE_COLUMN}' (YYYY-MM-DD) followed by one column per symbol"
            + _header_hint(names)
        )
    seen: set[str] = set()
    for name in names:
        if not name:
            raise BrokerDataError(f"{path}: header has an empty column name: {names}")
        if name in seen:
            raise BrokerDataError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)
    if len(names) < 2:
        raise BrokerDataError(f"{path}: no symbol columns besides '{DATE_COLUMN}'")
    return names


def _header_hint(names: list[str]) -> str:
    """Why a header has no 'date' column, when the cause is plain: another separator, or
    the name in other letter case."""
    if len(names) == 1:
        for separator, what in ((";", "semicolon"), ("\t", "tab")):
            if separator in names[0]:
                return (f"; the file looks {what}-separated: allocbot reads comma-separated "
                        "CSV (export with ',' as the separator and '.' as the decimal point)")
    cased = [name for name in names if name.lower() == DATE_COLUMN]
    if cased:
        return (f"; column names are case-sensitive: rename {cased[0]!r} to "
                f"'{DATE_COLUMN}'")
    return ""


def _check_row_widths(path: Path, width: int, raw: bytes) -> None:
    """Every data row has exactly the header's field count (blank lines aside): pandas
    would pad a short row with NaN and a bad price would reach an order. Names the lines.
    ``raw``: the file's bytes."""
    # plain ASCII, no quoting, "\n" lines (the usual file): a row's fields are its commas
    # + 1, and an empty line is the blank the reader skips
    plain = raw.isascii() and b'"' not in raw and b"\r" not in raw
    if plain and all(line.count(b",") == width - 1 or not line for line in raw.split(b"\n")[1:]):
        return
    bad: list[tuple[int, int]] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for row in reader:
            if row and len(row) != width:
                bad.append((reader.line_num, len(row)))
    if bad:
        line, fields = bad[0]
        more = (f" (also line(s) {', '.join(str(n) for n, _ in bad[1:6])}"
                f"{', ...' if len(bad) > 6 else ''})") if len(bad) > 1 else ""
        raise BrokerDataError(
            f"{path}: line {line} has {fields} field(s) but the header has {width}{more}; "
            "every row needs a date and one cell per symbol (leave a cell blank, never drop it)"
        )


def _parse_dates(raw: pd.Series, path: Path) -> pd.DatetimeIndex:
    """ISO dates to a naive DatetimeIndex; the first bad cell is reported with its line."""
    text = raw.str.strip()
    parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BrokerDataError(
            f"{path}: line {row + _FIRST_DATA_LINE}: unparseable date {raw.iloc[row]!r} "
            f"(expected YYYY-MM-DD)"
        )
    index = pd.DatetimeIndex(parsed, name=DATE_COLUMN)
    return index


def _parse_prices(raw: pd.DataFrame, dates: pd.DatetimeIndex, path: Path) -> pd.DataFrame:
    """Text cells to float64; blank → NaN, anything else non-numeric is an error."""
    columns: dict[str, np.ndarray] = {}
    for symbol in raw.columns:
        text = raw[symbol].str.strip()
        values = pd.to_numeric(text.mask(text == ""), errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(values) & (text != "").to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise BrokerDataError(
                f"{path}: line {row + _FIRST_DATA_LINE} ({dates[row].date()}): price for "
                f"{symbol} is {raw[symbol].iloc[row]!r}, not a number"
            )
        columns[str(symbol)] = values
    return pd.DataFrame(columns, index=dates)


def _read_strict(path: Path, names: list[str]) -> pd.DataFrame | None:
    """The frame in one C-engine pass when every cell is clean (ISO dates, plain numbers,
    blank = NaN), ~8x faster than the text-first parse; None when any cell is not, so the
    text-first parse finds it and names its line. Both give the same floats (the C parser
    and ``pd.to_numeric`` round the same way); ``nan``/``NA`` text is refused by both."""
    symbols = [name for name in names if name != DATE_COLUMN]
    try:
        raw = pd.read_csv(
            path,
            header=0,
            names=names,
            dtype={DATE_COLUMN: str, **dict.fromkeys(symbols, "float64")},
            keep_default_na=False,
            na_values=[""],
            skipinitialspace=True,
            encoding="utf-8-sig",
            engine="c",
        )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    if raw.empty:
        return None
    parsed = pd.to_datetime(raw[DATE_COLUMN], format="%Y-%m-%d", errors="coerce")
    if parsed.isna().any():
        return None
    dates = pd.DatetimeIndex(parsed, name=DATE_COLUMN)
    return pd.DataFrame({s: raw[s].to_numpy(dtype=float) for s in symbols}, index=dates)


def load_price_csv(path: str | Path) -> pd.DataFrame:
    """Read a wide close-price CSV into a float frame indexed by date.

    Args:
        path: CSV with a ``date`` column (YYYY-MM-DD) and one column per symbol.

    Returns:
        DataFrame with a naive ``DatetimeIndex`` named ``date`` and float64 columns in file
        order; leading NaNs mark symbols not listed yet.

    Raises:
        BrokerDataError: missing file, not UTF-8 text, no ``date`` column,
            unparseable/duplicate/unsorted date, NaN after a symbol's first price,
            zero/negative/non-numeric price or one outside [MIN_PRICE, MAX_PRICE], a
            column with no price, a row whose field count differs from the header's. The
            message names the file and the line or date and the symbol.
    """
    path = Path(path)
    if not path.is_file():
        raise BrokerDataError(f"price file not found: {path}")
    raw_bytes = _read_utf8_bytes(path)
    names = _read_header(path)
    _check_row_widths(path, len(names), raw_bytes)
    strict = _read_strict(path, names)
    if strict is not None:
        return _check_plausible(validate_price_frame(strict, str(path)), path)
    try:
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skipinitialspace=True,
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BrokerDataError(f"{path}: not a readable CSV: {exc}") from exc
    raw.columns = names
    if raw.empty:
        raise BrokerDataError(f"{path}: header only, no price rows")
    dates = _parse_dates(raw[DATE_COLUMN], path)
    symbols = raw.drop(columns=DATE_COLUMN)
    prices = _parse_prices(symbols, dates, path)
    return _check_plausible(validate_price_frame(prices, str(path)), path)


def _check_plausible(prices: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``prices`` (already positive and finite where present) unless a column has no price
    at all or a price lies outside [MIN_PRICE, MAX_PRICE]: either names the file, the
    symbol and, for a price, the date and the value."""
    values = prices.to_numpy(dtype=float)
    present = ~np.isnan(values)
    empty = ~present.any(axis=0)
    if empty.any():
        names = [str(s) for s in prices.columns[empty]]
        one = len(names) == 1
        raise BrokerDataError(
            f"{path}: column{'' if one else 's'} {', '.join(names)} "
            f"{'has' if one else 'have'} no prices (every cell is blank): fill "
            f"{'it' if one else 'them'} in or remove {'it' if one else 'them'} from the file"
        )
    wild = present & ((values > MAX_PRICE) | (values < MIN_PRICE))
    if wild.any():
        r, c = map(int, next(zip(*wild.nonzero(), strict=True)))
        raise BrokerDataError(
            f"{path}: price for {prices.columns[c]} on {prices.index[r].date()} is "
            f"{values[r, c]:g}, outside the plausible {MIN_PRICE:g} to {MAX_PRICE:g} per "
            "share (a unit, exponent or decimal-point error?)"
        )
    return prices


def select_universe(prices: pd.DataFrame, symbols: Sequence[str],
                    source: str | Path | None = None) -> pd.DataFrame:
    """The given symbols' columns, in the given order; ``source`` (the price file, when
    known) is named in the missing-symbol error.

    Raises:
        BrokerDataError: a symbol is not a column of ``prices`` (all missing ones are named),
            a symbol is listed twice, or the list is empty.
    """
    wanted = list(symbols)
    if not wanted:
        raise BrokerDataError("universe is empty: list at least one symbol")
    repeated = sorted({s for s in wanted if wanted.count(s) > 1})
    if repeated:
        raise BrokerDataError(f"universe lists {', '.join(repeated)} more than once")
    missing = [s for s in wanted if s not in prices.columns]
    if missing:
        where = "the price data" if source is None else f"the price file {source}"
        raise BrokerDataError(
            f"universe symbol(s) {', '.join(missing)} not in {where} "
            f"(available: {', '.join(map(str, prices.columns))})"
        )
    return prices[wanted]


def load_universe_prices(path: str | Path, symbols: Sequence[str] | None
                         ) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The whole price file and the universe in it: ``symbols`` (each must be a column;
    all missing ones are named) or, when None, every column in file order."""
    prices = load_price_csv(path)
    universe = tuple(symbols) if symbols else tuple(str(c) for c in prices.columns)
    select_universe(prices, universe, path)
    return prices, universe
