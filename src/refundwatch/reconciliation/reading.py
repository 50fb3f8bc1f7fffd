"""Streaming readers under the parsers: CSV records with their exact text, and a JSON list page's items.

Both keep each record's original text, so a line's ``raw`` and ``row_hash`` are the processor's own bytes,
not a re-serialisation.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from refundwatch.reconciliation.parsing import SettlementFormatError

# A physical line longer than this is not a settlement row; refusing it keeps memory bounded.
MAX_LINE_BYTES = 1 << 20
# A processor's API list page holds at most 100 objects; even expanded ones fit well under this.
MAX_PAGE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """The columns a parser reads: every ``required`` one, one of each ``any_of`` group, and ``optional``
    ones used when present. Other columns are kept only in the raw text."""

    title: str  # names the expected file in errors: "an Adyen Settlement details report"
    required: tuple[str, ...]
    any_of: tuple[tuple[str, ...], ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(self.required).union(self.optional, *self.any_of)


class Values(dict[str, str]):
    """A record's stripped values by column name; a column absent from the file reads as ""."""

    def __missing__(self, column: str) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class CsvRecord:
    row_number: int  # line where the record starts; the header is line 1
    raw: str
    values: Values  # only the layout's columns that the file has; ``column in values`` tells which


class _LineTap:
    """Feeds csv.reader one physical line at a time and remembers them, so that after each record the
    lines it took are exactly that record's text (a quoted field may span lines). Lines are decoded one by
    one, so a byte that is not UTF-8 is reported on its own line."""

    def __init__(self, stream: BinaryIO, source_name: str) -> None:
        self._stream = stream
        self._source_name = source_name
        self._taken: list[str] = []
        self.line_number = 0

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        data = self._stream.readline(MAX_LINE_BYTES)
        if not data:
            raise StopIteration
        self.line_number += 1
        if len(data) == MAX_LINE_BYTES and not data.endswith(b"\n"):
            raise SettlementFormatError(
                self._source_name, self.line_number, f"line longer than {MAX_LINE_BYTES} bytes"
            )
        try:
            line = data.decode("utf-8-sig" if self.line_number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise SettlementFormatError(self._source_name, self.line_number, "not UTF-8 text") from None
        self._taken.append(line)
        return line

    @property
    def record_start(self) -> int:
        return self.line_number - len(self._taken) + 1

    def take(self) -> str:
        """The current record's text without its final line break, and forget it."""
        taken = self._taken
        raw = taken[0] if len(taken) == 1 else "".join(taken)  # one physical line: the usual record
        taken.clear()
        return raw.removesuffix("\n").removesuffix("\r")


def read_csv(stream: BinaryIO, source_name: str, layout: CsvLayout) -> Iterator[CsvRecord]:
    """The records after the header, streamed. UTF-8, with or without a BOM; LF or CRLF line ends;
    blank lines are skipped. The caller's stream is read, never closed."""
    tap = _LineTap(stream, source_name)
    records = _records(csv.reader(tap, strict=True), tap, source_name)
    first = next(records, None)
    if first is None:
        raise SettlementFormatError(source_name, None, f"empty file: expected {layout.title}")
    header_row, (_, names) = first
    index = _check_header(header_row, names, layout, source_name)
    # The columns the parser reads and their positions, so each row costs one small dict.
    wanted = [(name, at) for name, at in index.items() if name in layout.columns]
    width = len(names)
    for row_number, (raw, fields) in records:
        if len(fields) != width:
            fields = _fit(fields, width, source_name, row_number)  # noqa: PLW2901 - the row, made whole
        yield CsvRecord(row_number, raw, Values({name: fields[at].strip() for name, at in wanted}))


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
    index: dict[str, int] = {}
    for at, name in enumerate(names):
        if name in index and name in layout.columns:
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
