"""Streaming readers under the parsers: CSV records with their exact text, and a JSON list page's items.

Both keep each record's original text, so a line's ``raw`` and ``row_hash`` are the processor's own bytes,
not a re-serialisation.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from refundwatch.reconciliation.parsing import SettlementFormatError

# A physical line longer than this is not a settlement row; refusing it keeps memory bounded.
MAX_LINE_CHARS = 1 << 20
# A processor's API list page holds at most 100 objects; even expanded ones fit well under this.
MAX_PAGE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """What a parser needs from a header: every ``required`` column, and one of each ``any_of`` group."""

    title: str  # names the expected file in errors: "a Stripe itemized payout reconciliation report"
    required: tuple[str, ...]
    any_of: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class CsvRecord:
    row_number: int  # line where the record starts; the header is line 1
    raw: str
    fields: list[str]
    index: dict[str, int]  # header name -> position, shared by every record of a file

    def get(self, column: str) -> str:
        """The value, stripped; "" when the column is absent from this file or empty."""
        at = self.index.get(column)
        return self.fields[at].strip() if at is not None else ""

    def has(self, column: str) -> bool:
        return column in self.index


class _LineTap:
    """Feeds csv.reader one physical line at a time and remembers them, so that after each record the
    lines it took are exactly that record's text (a quoted field may span lines)."""

    def __init__(self, text: io.TextIOWrapper, source_name: str) -> None:
        self._text = text
        self._source_name = source_name
        self._taken: list[str] = []
        self.line_number = 0

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        try:
            line = self._text.readline(MAX_LINE_CHARS)
        except UnicodeDecodeError:
            raise SettlementFormatError(self._source_name, self.line_number + 1, "not UTF-8 text") from None
        if not line:
            raise StopIteration
        self.line_number += 1
        if len(line) == MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
            raise SettlementFormatError(
                self._source_name, self.line_number, f"line longer than {MAX_LINE_CHARS} characters"
            )
        self._taken.append(line)
        return line

    @property
    def record_start(self) -> int:
        return self.line_number - len(self._taken) + 1

    def take(self) -> str:
        """The current record's text without its final line break, and forget it."""
        raw = "".join(self._taken)
        self._taken.clear()
        return raw.removesuffix("\n").removesuffix("\r")


def read_csv(stream: BinaryIO, source_name: str, layout: CsvLayout) -> Iterator[CsvRecord]:
    """The records after the header, streamed. UTF-8, with or without a BOM; blank lines are skipped."""
    # newline="" hands line endings to csv untouched, as the csv module requires.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        tap = _LineTap(text, source_name)
        reader = csv.reader(tap, strict=True)
        records = _records(reader, tap, source_name)
        first = next(records, None)
        if first is None:
            raise SettlementFormatError(source_name, None, f"empty file: expected {layout.title}")
        header_row, (_, names) = first
        index = _check_header(header_row, names, layout, source_name)
        width = len(names)
        for row_number, (raw, values) in records:
            fitted = values if len(values) == width else _fit(values, width, source_name, row_number)
            yield CsvRecord(row_number, raw, fitted, index)
    finally:
        # Detach so that closing (or collecting) the wrapper leaves the caller's stream open.
        if not text.closed:
            text.detach()


def _records(
    reader: Iterator[list[str]], tap: _LineTap, source_name: str
) -> Iterator[tuple[int, tuple[str, list[str]]]]:
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SettlementFormatError(source_name, tap.record_start, f"malformed CSV: {exc}") from None
        row_number = tap.record_start
        raw = tap.take()
        if values:  # csv gives [] for a blank line
            yield row_number, (raw, values)


def _check_header(row: int, names: list[str], layout: CsvLayout, source_name: str) -> dict[str, int]:
    names = [name.strip() for name in names]
    present = set(names)
    missing = [name for name in layout.required if name not in present]
    missing += [" or ".join(group) for group in layout.any_of if not present.intersection(group)]
    if missing:
        begins = ", ".join(names[:4])
        raise SettlementFormatError(
            source_name,
            row,
            f"not {layout.title}: the header lacks {', '.join(missing)} (it begins: {begins})",
        )
    wanted = set(layout.required).union(*layout.any_of)
    index: dict[str, int] = {}
    for at, name in enumerate(names):
        if name in index and name in wanted:
            raise SettlementFormatError(source_name, row, f"column {name!r} appears twice in the header")
        index.setdefault(name, at)
    return index


def _fit(values: list[str], width: int, source_name: str, row_number: int) -> list[str]:
    # A short row is truncated: refuse it. Trailing empty extras (a stray comma) carry nothing.
    if len(values) < width or any(value.strip() for value in values[width:]):
        raise SettlementFormatError(
            source_name, row_number, f"row has {len(values)} fields, the header has {width}"
        )
    return values[:width]


# --- JSON list pages --------------------------------------------------------------------------------

_SPACES = frozenset(" \t\n\r")  # JSON's whitespace; "" is not in it, so the end stops _skip
_Decode = Callable[[str, int], tuple[Any, int]]


@dataclass(frozen=True, slots=True)
class JsonItem:
    row_number: int  # position in the page's data array, from 1
    raw: str  # the item's exact JSON text
    value: Any


def read_json_list(stream: BinaryIO, source_name: str) -> Iterator[JsonItem]:
    """The items of a list page ``{"object": "list", "data": [...], ...}``, each with its exact text."""
    blob = stream.read(MAX_PAGE_BYTES + 1)
    if len(blob) > MAX_PAGE_BYTES:
        raise SettlementFormatError(source_name, None, f"larger than {MAX_PAGE_BYTES} bytes: not one page")
    try:
        text = blob.decode("utf-8-sig")
        items, kind = _walk_page(text)
    except UnicodeDecodeError:
        raise SettlementFormatError(source_name, None, "not UTF-8 text") from None
    except ValueError as exc:  # json.JSONDecodeError, and the walker's own complaints
        raise SettlementFormatError(source_name, None, f"not a JSON list page: {exc}") from None
    if kind != "list":
        raise SettlementFormatError(source_name, None, 'not a JSON list page: "object" is not "list"')
    for number, (raw, value) in enumerate(items, start=1):
        yield JsonItem(number, raw, value)


def _walk_page(text: str) -> tuple[list[tuple[str, Any]], Any]:
    """The top-level object walked by hand so each ``data`` item's text can be cut out exactly."""
    decode = json.JSONDecoder().raw_decode
    items: list[tuple[str, Any]] | None = None
    kind: Any = None
    at = _expect(text, 0, "{")
    if text[at : at + 1] == "}":
        return [], None
    while True:
        if text[at : at + 1] != '"':
            raise ValueError(f"expected a key at character {at}")
        key, at = decode(text, at)
        at = _expect(text, at, ":")
        if key == "data":
            if items is not None:
                raise ValueError('"data" appears twice')
            items, at = _walk_array(text, _expect(text, at, "["), decode)
        else:
            value, at = decode(text, at)
            if key == "object":
                kind = value
        at = _skip(text, at)
        if text[at : at + 1] == "}":
            break
        at = _expect(text, at, ",")
    if _skip(text, at + 1) != len(text):
        raise ValueError("text after the page")
    if items is None:
        raise ValueError('no "data" array')
    return items, kind


def _walk_array(text: str, at: int, decode: _Decode) -> tuple[list[tuple[str, Any]], int]:
    items: list[tuple[str, Any]] = []
    if text[at : at + 1] == "]":
        return items, at + 1
    while True:
        value, end = decode(text, at)
        items.append((text[at:end], value))
        at = _skip(text, end)
        if text[at : at + 1] == "]":
            return items, at + 1
        at = _expect(text, at, ",")


def _skip(text: str, at: int) -> int:
    """Past any JSON whitespace from ``at``."""
    while text[at : at + 1] in _SPACES:
        at += 1
    return at


def _expect(text: str, at: int, char: str) -> int:
    """Past ``char`` at ``at`` (after spaces) and the spaces after it; ValueError when it is not there."""
    at = _skip(text, at)
    if text[at : at + 1] != char:
        raise ValueError(f"expected {char!r} at character {at}")
    return _skip(text, at + 1)
