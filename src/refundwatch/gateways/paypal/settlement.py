"""PayPal's Settlement report (STL, ``STL-yyyymmdd.sequence.version.format``) as SettlementLines.

Facts: RECONCILIATION.md §3 (developer.paypal.com/docs/reports/sftp-reports/settlement-report; the
column list and record layout as in Wikimedia SmashPig's ``stl.csv`` fixture and Magento's STL reader).

- Every record starts with its type: ``RH`` report header, ``FH`` file header, ``SH`` section header
  (window start, window end, account id), ``CH`` the column names of the section's body, ``SB`` one body
  row, then the footers ``SF``, ``SC``, ``RF``, ``RC``, ``FF``. Every line comes from the body rows. Two
  footers are checked, so a damaged file is refused rather than imported short: a file that has its
  header (``FH``) must end with its footer (``FF``), and, where the file is the whole report (file 1,
  ending with the report's count ``RC``), a section's count (``SC``) must be its number of body rows. The
  totals (``SF``, ``RF``) and the report's count (``RC``, which spans a report split over several files)
  are not read: their layout is only known from third-party copies. Comma or tab separated (PayPal
  offers both), UTF-8 with or without a BOM.
- Amounts are unsigned integers with no decimal separator, **x100 whatever the currency**: "100,00 yen
  and $100.00 USD are both represented as 10000". So ``10000`` JPY is 100 yen (100 minor units, JPY has
  no decimals), ``10000`` EUR is 100.00 EUR (10000 minor units). The direction is in the ``DR``/``CR``
  column beside each amount. An amount that is not a whole number of the currency's minor units (``150``
  JPY: 1.50 yen) is an error, never rounded.
- Gross and fee are both in their own currency columns; PayPal books conversions as separate ``T0200``
  rows, so a fee in another currency than its gross is refused rather than guessed at.

Kinds, by T-code and direction (PayPal: the T-code's group "is sufficient for reconciliation", and each
code can be either DR or CR depending on the subject; developer.paypal.com/reports/reference/t-codes):
- ``T1107`` "Payment refund, initiated by merchant", DR: a refund. A CR one (a refund paid *to* this
  account) is not one the merchant made: unmapped.
- ``T1106`` "Payment reversal, initiated by PayPal": CR, money given back for a refund PayPal reversed
  (its PayPal Reference ID is the refund) → refund failure; DR, money PayPal took back from a payment
  (``PAYMENT.CAPTURE.REVERSED``) → a refund refundwatch did not make, so it surfaces as one unknown here
  rather than disappearing among "other" lines.
- ``T1108`` fee reversal, ``T1109`` fee refund and the ``T01nn`` fees: fee (DR) or fee refund (CR).
- ``T00nn`` payments (``T0006`` PayPal Checkout APIs) → payment; ``T04nn`` withdrawals → payout;
  ``T0200``/``T0201`` conversions, ``T1201``/``T1202`` chargebacks, holds and MassPay reversals → other.
- Anything else, including any other ``T11nn``/``T12nn`` code, is unmapped (fail closed: SmashPig raises on
  unknown codes in those groups).

Ids: the refund id is ``Transaction ID`` (for a ``T1106`` CR, the refund it reverses: ``PayPal Reference
ID``); the original payment is ``PayPal Reference ID`` when its type is ``TXN``. refundwatch sends its
refund id as ``custom_id`` (``Custom Field``) and the attempt's idempotency key as ``invoice_id``
(``Invoice ID``, ``rw_<refund id hex>[_r<n>]``); ``merchant_reference`` is the refund id from the first,
else from the second, else the Custom Field as written.

line_key = ``Transaction ID|T-code|DR or CR``: in the STL (balance-affecting rows only) a transaction id
names one movement. payout_id = ``<account id>:<yyyymmdd>`` from the section header: the account and the
day of the reporting window the row settled in. Times: ``Transaction Completion Date`` (else Initiation),
``YYYY/MM/DD HH:MM:SS -0800``, as UTC; the offset as written is the source time zone.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from types import MappingProxyType
from typing import BinaryIO, Final
from uuid import UUID

from refundwatch.lib.money import exponent
from refundwatch.reconciliation.lines import (
    Direction,
    LineKind,
    LineSource,
    SettlementLine,
    hash_row,
)
from refundwatch.reconciliation.parsing import FieldError, SettlementFormatError
from refundwatch.reconciliation.reading import MAX_LINE_BYTES
from refundwatch.reconciliation.values import currency_code

PROCESSOR: Final = "paypal"
TITLE: Final = "a PayPal Settlement report (STL)"

RECORD_TYPES: Final = frozenset({"RH", "FH", "SH", "CH", "SB", "SF", "SC", "RF", "RC", "FF"})

REQUIRED: Final = (
    "Transaction ID",
    "Transaction Event Code",
    "Transaction Debit or Credit",
    "Gross Transaction Amount",
    "Gross Transaction Currency",
)
DATES: Final = ("Transaction Completion Date", "Transaction Initiation Date")
OPTIONAL: Final = (
    "Invoice ID",
    "PayPal Reference ID",
    "PayPal Reference ID Type",
    "Fee Debit or Credit",
    "Fee Amount",
    "Fee Currency",
    "Custom Field",
)
_COLUMNS: Final = frozenset((*REQUIRED, *DATES, *OPTIONAL))
# The Transaction Detail Report (TRR) shares the record layout but lists non-balance-affecting rows too,
# each with a status; a settlement report has no such column.
_TRR_ONLY: Final = "Transaction Status"

# T-code -> (kind when DR, kind when CR).
KIND_BY_CODE: Final[Mapping[str, tuple[LineKind, LineKind]]] = MappingProxyType(
    {
        "T1107": (LineKind.REFUND, LineKind.UNMAPPED),
        "T1106": (LineKind.REFUND, LineKind.REFUND_FAILURE),
        "T1108": (LineKind.FEE, LineKind.FEE_REFUND),
        "T1109": (LineKind.FEE, LineKind.FEE_REFUND),
        **dict.fromkeys(
            [
                "T0200",  # currency conversions
                "T0201",
                "T1105",  # reversal of a general account hold
                "T1110",  # hold for dispute investigation
                "T1111",  # cancellation of a hold
                "T1114",  # MassPay reversal and refund
                "T1115",
                "T1201",  # chargeback and its reversal
                "T1202",
            ],
            (LineKind.OTHER, LineKind.OTHER),
        ),
    }
)
# T-code group -> (kind when DR, kind when CR), for the groups whose every code is one kind of money.
KIND_BY_GROUP: Final[Mapping[str, tuple[LineKind, LineKind]]] = MappingProxyType(
    {
        "T00": (LineKind.PAYMENT, LineKind.PAYMENT),  # account-to-account payments (T0006 Checkout)
        "T01": (LineKind.FEE, LineKind.FEE_REFUND),  # non-payment-related fees (T0106 chargeback fee)
        "T04": (LineKind.PAYOUT, LineKind.PAYOUT),  # withdrawals to the bank
    }
)

_REFUND_KINDS: Final = frozenset({LineKind.REFUND, LineKind.REFUND_FAILURE})
_DIGITS: Final = re.compile(r"\d{1,18}")
_T_CODE: Final = re.compile(r"T\d{4}")
# refundwatch's processor idempotency key (refunds.services.gateway_key), sent as invoice_id.
_GATEWAY_KEY: Final = re.compile(r"rw_(?P<hex>[0-9a-f]{32})(?:_r\d+)?")
_POWERS: Final = (1, 10, 100)  # exponents run from 0 to 3 (lib.money)
_TIME: Final = re.compile(r"(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2}) (?P<offset>[+-]\d{4})")


def classify(code: str, direction: Direction) -> LineKind:
    """The kind of a row with T-code ``code`` booked in ``direction``; unknown codes are unmapped."""
    kinds = KIND_BY_CODE.get(code)
    if kinds is None and not code.startswith(("T11", "T12")):
        kinds = KIND_BY_GROUP.get(code[:3])
    if kinds is None:
        return LineKind.UNMAPPED
    return kinds[0] if direction is Direction.DEBIT else kinds[1]


def stl_minor_units(text: str, currency: str, column: str) -> int:
    """An STL amount (unsigned, x100 of the major unit whatever the currency) -> minor units of
    ``currency`` by its ISO exponent: ``10000`` is 10000 EUR cents and 100 JPY. Exact or an error."""
    value = text.strip()
    if not _DIGITS.fullmatch(value):
        raise FieldError(f"{column} {value!r} is not an unsigned whole number (STL amounts are x100)")
    amount, places = int(value), exponent(currency)
    if places >= 2:
        return amount * _POWERS[places - 2]
    whole, rest = divmod(amount, _POWERS[2 - places])
    if rest:
        raise FieldError(
            f"{column} {value} is not a whole number of {currency} minor units (STL amounts are x100)"
        )
    return whole


def _side(text: str, column: str) -> Direction:
    side = text.strip().upper()
    if side == "DR":
        return Direction.DEBIT
    if side == "CR":
        return Direction.CREDIT
    raise FieldError(f"{column} {text.strip()!r} is neither DR nor CR")


def stl_time(text: str, column: str) -> tuple[datetime, str]:
    """``2026/01/06 23:31:39 -0800`` -> (that moment in UTC, ``-0800``). Read by hand, not strptime:
    a million rows each carry one."""
    value = " ".join(text.split())
    found = _TIME.fullmatch(value)
    if found is None:
        raise FieldError(f"{column} {value!r} is not a date like 2026/01/06 23:31:39 -0800")
    try:
        year, month, day, hour, minute, second = map(int, found.group(1, 2, 3, 4, 5, 6))
        local = datetime(year, month, day, hour, minute, second, tzinfo=_offset(found["offset"]))
    except ValueError:
        raise FieldError(f"{column} {value!r} is not a valid date and time") from None
    return local.astimezone(UTC), found["offset"]


@lru_cache(maxsize=64)
def _offset(text: str) -> timezone:
    minutes = int(text[1:3]) * 60 + int(text[3:5])
    if minutes >= 24 * 60:
        raise ValueError(text)
    return timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))


def _refund_id_in(custom: str, invoice: str) -> str | None:
    """refundwatch's refund id, from the custom_id it sent, else from its key in invoice_id."""
    if custom:
        try:
            return str(UUID(custom))
        except ValueError:
            pass
    found = _GATEWAY_KEY.fullmatch(invoice)
    return str(UUID(found["hex"])) if found else None


@dataclass(slots=True)
class _Section:
    """What the current section header says, and the body's column positions once CH has named them."""

    payout_id: str | None = None
    columns: dict[str, int] | None = None
    width: int = 0
    rows: int = 0  # body rows read, for the section's count (SC)


class PayPalSettlementParser:
    """The STL file as PayPal delivers it (SFTP ``/ppreports/outgoing`` or the website), comma or tab
    separated. Each section's CH row names its columns; extra columns are kept only in the raw text."""

    processor = PROCESSOR

    def parse(self, stream: BinaryIO, source_name: str) -> Iterator[SettlementLine]:
        section: _Section | None = None
        seen_any = file_header = file_footer = first_file = report_ends = False
        counts: list[tuple[list[str], int, int]] = []  # each section's count (SC), its rows read, its row
        for row_number, raw, fields in _records(stream, source_name):
            kind = fields[0].strip()
            if not seen_any:
                seen_any = True
                if kind not in RECORD_TYPES:
                    begins = ", ".join(field.strip() for field in fields[:4])
                    raise SettlementFormatError(source_name, row_number, f"not {TITLE}: it begins {begins}")
            if kind == "SB":
                if section is None or section.columns is None:
                    where = "section header (SH)" if section is None else "column header (CH)"
                    raise SettlementFormatError(
                        source_name, row_number, f"a body row (SB) before its {where}"
                    )
                try:
                    line = _line(row_number, raw, fields, section)
                except FieldError as exc:
                    raise SettlementFormatError(source_name, row_number, str(exc)) from None
                section.rows += 1
                yield line
            elif kind == "SC" and section is not None:
                counts.append((fields, section.rows, row_number))
            elif kind == "FH":
                file_header = True
                first_file = len(fields) > 1 and fields[1].strip().lstrip("0") == "1"
            elif kind == "RC":
                report_ends = True
            elif kind == "FF":
                file_footer = True
            elif kind == "SH":
                section = _Section(payout_id=_payout_id(fields, source_name, row_number))
            elif kind == "CH":
                if section is None:
                    raise SettlementFormatError(source_name, row_number, "a column header (CH) before any SH")
                section.columns, section.width = _header(fields, source_name, row_number), len(fields)
            elif kind not in RECORD_TYPES:
                raise SettlementFormatError(source_name, row_number, f"unknown record type {kind[:20]!r}")
            # RH and the other footers (totals, the report's count): recognised, not read
        if not seen_any:
            raise SettlementFormatError(source_name, None, f"empty file: expected {TITLE}")
        if file_header and not file_footer:  # cut at a line boundary: every line read looked whole
            raise SettlementFormatError(
                source_name, None, "the file ends before its file footer (FF): it is cut short"
            )
        # A large report is split over files, and a section may run on from one into the next: its
        # counts are checked only where the whole report is this file (its first, ending with RC).
        if first_file and report_ends:
            for fields, rows, row_number in counts:
                _check_count(fields, rows, source_name, row_number)


def _check_count(fields: list[str], rows: int, source_name: str, row_number: int) -> None:
    """A section's count (SC) is its number of body rows: another number means rows went missing."""
    declared = fields[1].strip() if len(fields) > 1 else ""
    if declared.isdigit() and int(declared) != rows:
        raise SettlementFormatError(
            source_name,
            row_number,
            f"the section's count (SC) says {int(declared)} body rows, {rows} were read: the file is damaged",
        )


def _records(stream: BinaryIO, source_name: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line number where the record starts, its text, its fields), one physical line at a time.

    STL quotes every text field; a quoted field spanning lines is joined like csv does. Blank lines are
    skipped. The separator (comma or tab) is the one after the first record type."""
    taken: list[str] = []
    start = number = size = quotes = 0
    delimiter: str | None = None
    while True:
        data = stream.readline(MAX_LINE_BYTES)
        if not data:
            break
        number += 1
        if len(data) == MAX_LINE_BYTES and not data.endswith(b"\n"):
            raise SettlementFormatError(source_name, number, f"line longer than {MAX_LINE_BYTES} bytes")
        try:
            text = data.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise SettlementFormatError(source_name, number, "not UTF-8 text") from None
        if not taken:
            if not text.strip():
                continue
            start, size, quotes = number, 0, 0
        taken.append(text)
        size += len(data)
        if size > MAX_LINE_BYTES:  # an unclosed quote must not pull the rest of the file into memory
            raise SettlementFormatError(source_name, start, f"record longer than {MAX_LINE_BYTES} bytes")
        quotes += text.count('"')
        if quotes % 2:  # inside a quoted field: the record goes on
            continue
        joined = taken[0] if len(taken) == 1 else "".join(taken)
        taken.clear()
        if delimiter is None:
            delimiter = "\t" if "\t" in joined.split(",", 1)[0] else ","
        try:
            fields = next(csv.reader([joined], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            raise SettlementFormatError(source_name, start, f"malformed CSV: {exc}") from None
        yield start, joined.removesuffix("\n").removesuffix("\r"), fields
    if taken:
        raise SettlementFormatError(source_name, start, "malformed CSV: a quoted field never ends")


def _payout_id(fields: list[str], source_name: str, row_number: int) -> str:
    """``SH``, window start, window end, account id: ``<account>:<yyyymmdd of the start>``."""
    values = [field.strip() for field in fields]
    if len(values) < 3:
        raise SettlementFormatError(source_name, row_number, "section header (SH) without its window")
    try:
        stl_time(values[1], "section start")
        stl_time(values[2], "section end")
    except FieldError as exc:
        raise SettlementFormatError(source_name, row_number, str(exc)) from None
    day = " ".join(values[1].split())[:10].replace("/", "")  # the window's own (local) day
    account = values[3] if len(values) > 3 else ""
    return f"{account}:{day}" if account else day


def _header(fields: list[str], source_name: str, row_number: int) -> dict[str, int]:
    # Names compared with their spaces collapsed: Magento's copy has "Transaction  Debit or Credit".
    names = [" ".join(name.split()) for name in fields]
    present = set(names[1:])
    if _TRR_ONLY in present:
        raise SettlementFormatError(
            source_name, row_number, f"not {TITLE}: a Transaction Detail Report (it has {_TRR_ONLY})"
        )
    missing = [name for name in REQUIRED if name not in present]
    if not present.intersection(DATES):
        missing.append(" or ".join(DATES))
    if missing:
        raise SettlementFormatError(
            source_name, row_number, f"not {TITLE}: the column header lacks {', '.join(missing)}"
        )
    index: dict[str, int] = {}
    for at, name in enumerate(names):
        if at == 0 or name not in _COLUMNS:
            continue
        if name in index:
            raise SettlementFormatError(
                source_name, row_number, f"column {name!r} appears twice in the header"
            )
        index[name] = at
    return index


def _line(row_number: int, raw: str, fields: list[str], section: _Section) -> SettlementLine:
    columns = section.columns or {}
    # A stray empty field at the end carries nothing; anything else is a row cut short or shifted.
    if len(fields) < section.width or any(f.strip() for f in fields[section.width :]):
        raise FieldError(f"row has {len(fields)} fields, the column header has {section.width}")

    def value(name: str) -> str:
        at = columns.get(name)
        return fields[at].strip() if at is not None else ""

    transaction = value("Transaction ID")
    if not transaction:
        raise FieldError("Transaction ID is empty")
    code = value("Transaction Event Code").upper()
    if not _T_CODE.fullmatch(code):
        raise FieldError(f"Transaction Event Code {code[:20]!r} is not a T-code")
    side = _side(value("Transaction Debit or Credit"), "Transaction Debit or Credit")
    currency = currency_code(value("Gross Transaction Currency"), "Gross Transaction Currency")
    amount = stl_minor_units(value("Gross Transaction Amount"), currency, "Gross Transaction Amount")
    gross = -amount if side is Direction.DEBIT else amount
    fee = _fee(value, currency)
    kind = classify(code, side)
    column = next((name for name in DATES if value(name)), DATES[0])
    occurred_at, offset = stl_time(value(column), column)
    reference = value("PayPal Reference ID") if value("PayPal Reference ID Type").upper() == "TXN" else ""
    custom, invoice = value("Custom Field"), value("Invoice ID")
    if kind is LineKind.REFUND_FAILURE:  # T1106 CR: the reversal names the refund it gives back
        refund_id, payment_id = reference or None, None
    elif kind is LineKind.REFUND:
        refund_id, payment_id = transaction, reference or None
    else:
        refund_id, payment_id = None, (transaction if kind is LineKind.PAYMENT else reference or None)
    return SettlementLine(
        processor=PROCESSOR,
        source=LineSource.FILE,
        row_number=row_number,
        raw=raw,
        row_hash=hash_row(raw),
        line_key=f"{transaction}|{code}|{'DR' if side is Direction.DEBIT else 'CR'}",
        kind=kind,
        direction=side,
        gross=gross,
        fee=fee,
        net=gross - fee,
        currency=currency,
        settlement_currency=currency,
        gateway_refund_id=refund_id if kind in _REFUND_KINDS else None,
        gateway_payment_id=payment_id,
        merchant_reference=_refund_id_in(custom, invoice) or custom or None,
        payout_id=section.payout_id,
        occurred_at=occurred_at,
        source_timezone=offset,
        raw_type=code,
    )


def _fee(read: Callable[[str], str], currency: str) -> int:
    """The row's fee, signed as a cost: DR (charged) positive, CR (given back) negative. PayPal leaves
    the fee columns empty when there is no fee."""
    amount_text = read("Fee Amount")
    if not amount_text:
        return 0
    fee_currency_text = read("Fee Currency")
    if fee_currency_text:
        fee_currency = currency_code(fee_currency_text, "Fee Currency")
        if fee_currency != currency:
            raise FieldError(
                f"Fee Currency {fee_currency} differs from Gross Transaction Currency {currency}"
            )
    amount = stl_minor_units(amount_text, currency, "Fee Amount")
    if not amount:
        return 0
    return amount if _side(read("Fee Debit or Credit"), "Fee Debit or Credit") is Direction.DEBIT else -amount
