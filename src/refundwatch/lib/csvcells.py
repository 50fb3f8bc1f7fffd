"""What every CSV download shares: defused cells, RFC 4180 lines, and a UTC-stamped file name.

Finance opens these files in spreadsheets, so a text cell that a spreadsheet would take for a formula
gets a leading apostrophe (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from typing import Any

# Spreadsheets read a cell starting with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def iso_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def cell(value: Any, times: Callable[[dt.datetime], str] = iso_utc) -> str | int:
    """One cell: numbers as they are, times in UTC (``times``), text defused if it could be a formula."""
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        return times(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def lines(rows: Sequence[Sequence[str | int]]) -> bytes:
    """Rows as UTF-8 CSV: quoted where needed, CRLF line ends (RFC 4180)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8")


def stamped(stem: str, now: dt.datetime, extension: str = "csv") -> str:
    """``refunds-20261201T101500Z.csv``: the download's name, stamped with when it was made."""
    return f"{stem}-{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}.{extension}"
