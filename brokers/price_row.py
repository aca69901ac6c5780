"""One day's closes from a price file, without pandas: what a read-only observer
(``allocbot status``) needs to value the simulated account on its replay date.

The file shape is ``brokers/prices.py``'s (a ``date`` column, then one column per
symbol); the daemon validated the whole file when it loaded it, so this reads one row.
"""

from __future__ import annotations

import csv
from pathlib import Path

from brokers.errors import BrokerDataError


def read_price_row(path: Path, day: str) -> dict[str, float]:
    """Closes on ``day`` (ISO date) by symbol; blank cells are left out.

    Raises:
        BrokerDataError: the file is unreadable, has no ``date`` column, no row for
            ``day``, or a cell on that row that is not a number.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = csv.reader(handle)
            header = [cell.strip() for cell in next(rows, [])]
            at = header.index("date") if "date" in header else -1
            found = next((row for row in rows if at >= 0 and row and row[at].strip() == day),
                         None)
    except OSError as exc:
        raise BrokerDataError(f"{path}: cannot read closes for {day}: {exc}") from exc
    if at < 0:
        raise BrokerDataError(f"{path}: no 'date' column in the header")
    if found is None:
        raise BrokerDataError(f"{path}: no row for {day}")
    cells = {sym: cell.strip() for sym, cell in zip(header, found, strict=False)
             if sym != "date" and cell.strip()}
    try:
        return {sym: float(cell) for sym, cell in cells.items()}
    except ValueError as exc:
        raise BrokerDataError(f"{path}: row {day}: {exc}") from exc
