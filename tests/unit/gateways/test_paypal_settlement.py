"""PayPal's Settlement report (STL) parser: every row of the fixtures normalised, the x100 amount trap in
every exponent, the T-code table failing closed, and bad or foreign files refused in one line.

Fixtures (tests/unit/gateways/fixtures/):
- ``paypal_stl_smashpig.csv``: verbatim Wikimedia SmashPig ``PaymentProviders/PayPal/Tests/Data/stl.csv``
  (test data; RECONCILIATION.md §3.3): an SH-first file, two T0006 and a T0003 payment, a T1107 refund
  whose fee comes back (CR), unquoted and quoted values mixed, per-currency SF/RF footers.
- ``paypal_stl_refunds.csv``: made up in the same layout with every record type (RH, FH, two SH sections,
  SF, SC, RF, RC, FF): refundwatch refunds carrying ``invoice_id`` and ``custom_id``, a refund with fee
  credited back, a T1109 fee refund, a T1106 CR reversal of a refund, a T1106 DR PayPal-initiated
  reversal, an unknown T1199, and JPY, HUF and TWD refunds (PayPal's no-decimal currencies).
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from refundwatch.gateways.paypal.settlement import (
    KIND_BY_CODE,
    PayPalSettlementParser,
    classify,
    stl_minor_units,
)
from refundwatch.reconciliation.lines import Direction, LineKind, LineSource, SettlementLine
from refundwatch.reconciliation.parsing import FieldError, SettlementFormatError, parser_for, supported
from refundwatch.refunds.services import gateway_key

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "fixtures" / "settlement"

parser = PayPalSettlementParser()


def parse(name: str, folder: Path = FIXTURES) -> list[SettlementLine]:
    with (folder / name).open("rb") as stream:
        return list(parser.parse(stream, name))


def parse_bytes(data: bytes, name: str = "STL-20261206.01.009.CSV") -> list[SettlementLine]:
    return list(parser.parse(io.BytesIO(data), name))


def summary(line: SettlementLine) -> tuple[Any, ...]:
    return (
        line.line_key,
        line.row_number,
        line.kind.value,
        line.direction.value,
        line.gross,
        line.fee,
        line.net,
        line.currency,
        line.gateway_refund_id,
        line.gateway_payment_id,
        line.merchant_reference,
        line.payout_id,
        line.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
        line.source_timezone,
        line.raw_type,
    )


A, B, C = "0b7e5a0c-1d2f-4e3a-9b8c-7d6e5f4a3b2c", "1c8f6b1d-2e3f-4a5b-8c9d-0e1f2a3b4c5d", "order-4711"
JP, HU, TW = (
    "2d9e7c2e-3f4a-5b6c-9d0e-1f2a3b4c5d6e",
    "3e0f8d3f-4a5b-6c7d-0e1f-2a3b4c5d6e7f",
    "4f1a9e4a-5b6c-7d8e-1f2a-3b4c5d6e7f8a",
)
DAY1, DAY2 = "RWTESTACCT001:20261205", "RWTESTACCT001:20261206"

# (line_key, row, kind, direction, gross, fee, net, currency, refund id, payment id, merchant reference,
#  payout, occurred_at UTC, source tz, T-code)
EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "paypal_stl_smashpig.csv": [
        ("5678|T0006|CR", 3, "payment", "credit", 5200, 225, 4975, "AUD", None, "5678", None,
         "EZ782AXEUJUW8:20260106", "2026-01-06 08:00:30", "-0800", "T0006"),
        ("6789|T0006|CR", 4, "payment", "credit", 535, 75, 460, "AUD", None, "6789", None,
         "EZ782AXEUJUW8:20260106", "2026-01-06 08:06:02", "-0800", "T0006"),
        ("68C7|T0003|CR", 5, "payment", "credit", 834, 87, 747, "GBP", None, "68C7", "1BNiJizt4I507Sxkgn4DRX",
         "EZ782AXEUJUW8:20260106", "2026-01-07 07:31:39", "-0800", "T0003"),
        # "refund of 1.34 GBP debited, fee 0.47 credited back; PayPal Reference ID 99900 = original txn"
        ("6899|T1107|DR", 6, "refund", "debit", -134, -47, -87, "GBP", "6899", "99900", None,
         "EZ782AXEUJUW8:20260106", "2026-01-07 07:31:39", "-0800", "T1107"),
    ],
    "paypal_stl_refunds.csv": [
        ("8MC585209K746631H|T1107|DR", 5, "refund", "debit", -1050, 0, -1050, "EUR", "8MC585209K746631H",
         "2GG279541U471931P", A, DAY1, "2026-12-05 17:15:04", "-0800", "T1107"),
        # No Custom Field: the refund id comes from the idempotency key in Invoice ID (a re-send, _r1).
        ("9TR02844JX3812503|T1107|DR", 6, "refund", "debit", -2500, -85, -2415, "USD", "9TR02844JX3812503",
         "5AB12345CD678901E", B, DAY1, "2026-12-05 18:00:00", "-0800", "T1107"),
        ("4FE112233445566AA|T1109|CR", 7, "fee_refund", "credit", 35, 0, 35, "USD", None,
         "5AB12345CD678901E", None, DAY1, "2026-12-05 18:00:01", "-0800", "T1109"),
        # PayPal reversed refund 8MC…: the money comes back, named by the refund it reverses.
        ("7RV998877665544BB|T1106|CR", 8, "refund_failure", "credit", 1050, 0, 1050, "EUR",
         "8MC585209K746631H", None, A, DAY1, "2026-12-06 00:40:00", "-0800", "T1106"),
        # PayPal took money back from a payment on its own: a refund refundwatch did not make.
        ("6PR123456789012CC|T1106|DR", 9, "refund", "debit", -4000, -150, -3850, "EUR", "6PR123456789012CC",
         "2GG279541U471931P", C, DAY1, "2026-12-06 02:05:11", "-0800", "T1106"),
        ("1UN000000000001XX|T1199|DR", 10, "unmapped", "debit", -500, 0, -500, "EUR", None, None, None,
         DAY1, "2026-12-06 03:00:00", "-0800", "T1199"),
        # 150000 is 1500.00 yen: 1500 minor units (JPY has none), not 150000.
        ("3JP000111222333DD|T1107|DR", 11, "refund", "debit", -1500, 0, -1500, "JPY", "3JP000111222333DD",
         "1JP999888777666EE", JP, DAY1, "2026-12-06 07:59:59", "-0800", "T1107"),
        # HUF and TWD have two decimals in ISO 4217: 250000 is 2500.00 HUF = 250000 minor units.
        ("5HU000111222333FF|T1107|DR", 18, "refund", "debit", -250_000, 0, -250_000, "HUF",
         "5HU000111222333FF", "2HU999888777666GG", HU, DAY2, "2026-12-06 16:00:00", "-0800", "T1107"),
        ("6TW000111222333HH|T1107|DR", 19, "refund", "debit", -30_000, 0, -30_000, "TWD",
         "6TW000111222333HH", "3TW999888777666II", TW, DAY2, "2026-12-06 16:30:00", "-0800", "T1107"),
        ("2GG279541U471931P|T0006|CR", 20, "payment", "credit", 10_000, 398, 9_602, "EUR", None,
         "2GG279541U471931P", "order-4712", DAY2, "2026-12-06 17:00:00", "-0800", "T0006"),
        ("8WD000000000000JJ|T0400|DR", 21, "payout", "debit", -500_000, 0, -500_000, "EUR", None, None, None,
         DAY2, "2026-12-06 20:00:00", "-0800", "T0400"),
    ],
}  # fmt: skip


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_every_row_of_each_fixture(fixture: str) -> None:
    lines = parse(fixture)
    assert [summary(line) for line in lines] == EXPECTED[fixture]
    assert {(line.processor, line.source) for line in lines} == {("paypal", LineSource.FILE)}
    assert all(line.settlement_currency == line.currency for line in lines)


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_raw_is_each_body_rows_text_exactly(fixture: str) -> None:
    text = (FIXTURES / fixture).read_text(encoding="utf-8").splitlines()
    for line in parse(fixture):
        assert line.raw == text[line.row_number - 1]
        assert line.raw.startswith('"SB",')


def test_registered_as_paypals_file_parser() -> None:
    assert ("paypal", "file") in supported()
    assert isinstance(parser_for("paypal"), PayPalSettlementParser)
    assert parser_for("paypal").processor == "paypal"
    with pytest.raises(LookupError, match="paypal"):
        parser_for("paypal", "api")


def test_a_bom_tabs_crlf_and_blank_lines_change_nothing_but_the_raw_text() -> None:
    data = (FIXTURES / "paypal_stl_refunds.csv").read_bytes()
    expected = [summary(line)[2:] for line in parse_bytes(data)]
    tabbed = data.replace(b",", b"\t")
    variants = [b"\xef\xbb\xbf" + data, data.replace(b"\n", b"\r\n"), tabbed]
    for variant in variants:
        assert [summary(line)[2:] for line in parse_bytes(variant)] == expected
    spaced = data.replace(b'"FH",01\n', b'"FH",01\n\n\n')
    assert [summary(line)[1] for line in parse_bytes(spaced)][:2] == [7, 8]  # physical line numbers


def test_the_x100_rule_in_every_exponent() -> None:
    # "100,00 yen and $100.00 USD are both represented as 10000" (PayPal's STL specification).
    assert stl_minor_units("10000", "USD", "amount") == 10_000
    assert stl_minor_units("10000", "JPY", "amount") == 100
    assert stl_minor_units("10000", "HUF", "amount") == 10_000
    assert stl_minor_units("10000", "TWD", "amount") == 10_000
    assert stl_minor_units("12345", "KWD", "amount") == 123_450
    assert stl_minor_units("0", "JPY", "amount") == 0
    for text, currency in [("150", "JPY"), ("-134", "GBP"), ("1.34", "GBP"), ("", "EUR"), ("1e3", "EUR")]:
        with pytest.raises(FieldError):
            stl_minor_units(text, currency, "amount")


def test_every_code_of_the_table_and_the_groups_classify_by_direction() -> None:
    for code, (debit, credit) in KIND_BY_CODE.items():
        assert classify(code, Direction.DEBIT) is debit
        assert classify(code, Direction.CREDIT) is credit
    assert classify("T1107", Direction.DEBIT) is LineKind.REFUND
    assert classify("T1107", Direction.CREDIT) is LineKind.UNMAPPED  # a refund paid to this account
    assert classify("T1106", Direction.CREDIT) is LineKind.REFUND_FAILURE
    assert classify("T0006", Direction.CREDIT) is LineKind.PAYMENT
    assert (classify("T0106", Direction.DEBIT), classify("T0106", Direction.CREDIT)) == (
        LineKind.FEE,
        LineKind.FEE_REFUND,
    )
    assert classify("T0403", Direction.DEBIT) is LineKind.PAYOUT
    for unknown in ("T1116", "T1299", "T0300", "T9999", "T0700"):
        assert classify(unknown, Direction.DEBIT) is LineKind.UNMAPPED
        assert classify(unknown, Direction.CREDIT) is LineKind.UNMAPPED


def test_the_refund_id_comes_from_custom_field_else_from_refundwatchs_key_in_invoice_id() -> None:
    refund_id = UUID("0b7e5a0c-1d2f-4e3a-9b8c-7d6e5f4a3b2c")
    data = (FIXTURES / "paypal_stl_refunds.csv").read_bytes()
    # The key in Invoice ID is the one refunds.services makes, generation 0 or a re-send.
    for key in (gateway_key(refund_id), gateway_key(refund_id, 3)):
        changed = data.replace(b'"rw_0b7e5a0c1d2f4e3a9b8c7d6e5f4a3b2c","2GG', f'"{key}","2GG'.encode())
        changed = changed.replace(f'"{refund_id}","","","",'.encode(), b'"","","","",', 1)
        (first, *_) = parse_bytes(changed)
        assert first.merchant_reference == str(refund_id)
    # Neither field refundwatch's: the Custom Field is kept as written; nothing at all: None.
    lines = parse("paypal_stl_refunds.csv")
    assert (lines[4].merchant_reference, lines[5].merchant_reference) == ("order-4711", None)


# ------------------------------------------------------------------------------------------ refusals

HEADER = (FIXTURES / "paypal_stl_refunds.csv").read_text(encoding="utf-8").splitlines()[3]
SECTION = '"SH",2026/12/05 00:00:00 -0800,2026/12/05 23:59:59 -0800,"RWTESTACCT001"'
ROW = (
    '"SB","8MC585209K746631H","","2GG279541U471931P","TXN","T1107",2026/12/05 09:15:02 -0800,'
    '2026/12/05 09:15:04 -0800,"DR",1050,"EUR","",,"","","","","","",,,'
)


def stl(*rows: str, head: tuple[str, ...] = (SECTION, HEADER)) -> bytes:
    return ("\n".join([*head, *rows]) + "\n").encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "STL-20261206.01.009.CSV: empty file: expected a PayPal Settlement report (STL)"),
        (b"\n\n", "empty file"),
        (stl(ROW.replace(",1050,", ",150,").replace('"EUR"', '"JPY"')),
         "row 3: Gross Transaction Amount 150 is not a whole number of JPY minor units"),
        (stl(ROW.replace(",1050,", ",-1050,")), "row 3: Gross Transaction Amount '-1050' is not an unsigned"),
        (stl(ROW.replace(",1050,", ",10.50,")), "row 3: Gross Transaction Amount '10.50' is not an unsigned"),
        (stl(ROW.replace('"DR"', '"D"')), "row 3: Transaction Debit or Credit 'D' is neither DR nor CR"),
        (stl(ROW.replace('"T1107"', '"Refund"')), "row 3: Transaction Event Code 'REFUND' is not a T-code"),
        (stl(ROW.replace('"EUR"', '"XYZ"')), "row 3: Gross Transaction Currency 'XYZ' is not a currency"),
        (stl(ROW.replace("2026/12/05 09:15:04 -0800", "2026-12-05 09:15:04")),
         "row 3: Transaction Completion Date '2026-12-05 09:15:04' is not a date"),
        (stl(ROW.replace('"8MC585209K746631H"', '""', 1)), "row 3: Transaction ID is empty"),
        (stl(ROW.replace(',"","","","","",,,', ',"","","","",')),
         "row 3: row has 19 fields, the column header has 22"),
        (stl(ROW + ',"extra"'), "row 3: row has 23 fields"),
        (stl(ROW.replace('"",,"","",', '"CR",35,"USD","",')),
         "row 3: Fee Currency USD differs from Gross Transaction Currency EUR"),
        (stl(ROW, '"XX",1'), "row 4: unknown record type 'XX'"),
        (stl(ROW, head=(SECTION,)), "row 2: a body row (SB) before its column header (CH)"),
        (stl(ROW, head=(HEADER,)), "row 1: a column header (CH) before any SH"),
        (stl(ROW, head=()), "row 1: a body row (SB) before its section header (SH)"),
        (stl(ROW, head=('"SH","yesterday","today","X"', HEADER)),
         "row 1: section start 'yesterday' is not a date"),
        (stl(ROW, head=(SECTION, HEADER.replace('"Gross Transaction Currency",', ""))),
         "row 2: not a PayPal Settlement report (STL): the column header lacks Gross Transaction Currency"),
        (stl(ROW, head=(SECTION, HEADER + ',"Transaction Status"')),
         "row 2: not a PayPal Settlement report (STL): a Transaction Detail Report"),
        (stl(ROW, head=(SECTION, HEADER + ',"Invoice ID"')), "row 2: column 'Invoice ID' appears twice"),
        (stl(ROW.replace('"TXN"', '"TXN'), "x"), "row 3: malformed CSV: a quoted field never ends"),
        (b"\xff\xfe\x00S\x00H", "row 1: not UTF-8 text"),
    ],
)  # fmt: skip
def test_bad_files_fail_with_one_line_naming_the_row(data: bytes, message: str) -> None:
    with pytest.raises(SettlementFormatError) as caught:
        parse_bytes(data)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("folder", "fixture"),
    [
        (SHARED, "stripe_payout_reconciliation.csv"),
        (SHARED, "stripe_itemized_utc.csv"),
        (SHARED, "stripe_balance_transactions.json"),
        (SHARED, "adyen_settlement_detail_report_batch_4.csv"),
        (SHARED, "adyen_settlement_detail_report_batch_1300.csv"),
    ],
)
def test_another_processors_file_is_refused_before_any_line(folder: Path, fixture: str) -> None:
    with pytest.raises(SettlementFormatError) as caught:
        parse(fixture, folder)
    assert f"{fixture}: row 1: not a PayPal Settlement report (STL): it begins" in str(caught.value)


def test_and_paypals_file_is_refused_by_the_other_parsers() -> None:
    for processor in ("stripe", "adyen"):
        with (FIXTURES / "paypal_stl_refunds.csv").open("rb") as stream, pytest.raises(SettlementFormatError):
            list(parser_for(processor).parse(stream, "stl.csv"))


def test_lines_before_a_bad_row_come_out_first_and_the_callers_stream_stays_open() -> None:
    stream = io.BytesIO(stl(ROW, ROW.replace("8MC", "9MC").replace(",1050,", ",x,")))
    lines = parser.parse(stream, "stl.csv")
    assert next(lines).gross == -1050
    with pytest.raises(SettlementFormatError, match="row 4"):
        next(lines)
    assert not stream.closed


def test_a_very_long_line_or_record_is_refused_not_read_into_memory() -> None:
    with pytest.raises(SettlementFormatError, match="row 3: line longer than"):
        parse_bytes(stl(ROW.replace('"TXN"', '"' + "T" * (2 << 20) + '"')))
    unclosed = ROW.replace('"TXN"', '"TXN') + "\n" + "x\n" * (600 << 10)
    with pytest.raises(SettlementFormatError, match="row 3: record longer than"):
        parse_bytes(stl(unclosed))


class GeneratedFile(io.RawIOBase):
    """A read-only binary file whose bytes come from a generator: the test never holds the file."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _rows(count: int) -> Iterator[bytes]:
    yield f"{SECTION}\n{HEADER}\n".encode()
    for n in range(count):
        yield (
            ROW.replace("8MC585209K746631H", f"8MC{n:014d}").replace(",1050,", f",{n % 997 + 1},") + "\n"
        ).encode()


def test_a_large_file_streams_in_bounded_memory() -> None:
    count = 10_000  # tracemalloc is slow; 10,000 lines kept would already be over 10 MB
    stream = io.BufferedReader(GeneratedFile(_rows(count)), buffer_size=64 * 1024)
    tracemalloc.start()
    try:
        seen = total = 0
        for line in parser.parse(stream, "generated.csv"):  # type: ignore[arg-type]
            seen += 1
            total += line.gross
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert total == -sum(n % 997 + 1 for n in range(count))
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("keep", [-1, -2, -7, -10])
def test_a_file_cut_at_a_line_boundary_is_refused(keep: int) -> None:
    """Every line read looked whole, so a file cut short imported as if complete (a probe: without its
    footers, 22 lines read and taken). A file with its header (FH) must end with its footer (FF)."""
    lines = (FIXTURES / "paypal_stl_refunds.csv").read_bytes().splitlines(keepends=True)
    with pytest.raises(SettlementFormatError, match="ends before its file footer"):
        parse_bytes(b"".join(lines[:keep]))


def test_a_body_row_missing_from_its_section_is_refused() -> None:
    """The section's count (SC) says how many body rows it has: one gone is a damaged file."""
    lines = (FIXTURES / "paypal_stl_refunds.csv").read_bytes().splitlines(keepends=True)
    first_body = next(i for i, line in enumerate(lines) if line.startswith(b'"SB"'))
    with pytest.raises(SettlementFormatError, match=r"count \(SC\) says 7 body rows, 6 were read"):
        parse_bytes(b"".join(lines[:first_body] + lines[first_body + 1 :]))


def test_a_sections_count_is_not_checked_where_the_report_is_split_over_files() -> None:
    """A large report is split over files and a section may run on into the next one, so its count
    (SC) can be more than one file's rows: checked only where the file is the whole report."""
    lines = (FIXTURES / "paypal_stl_refunds.csv").read_bytes().splitlines(keepends=True)
    first_body = next(i for i, line in enumerate(lines) if line.startswith(b'"SB"'))
    second_file = [line.replace(b'"FH",01', b'"FH",02') for line in lines]
    assert parse_bytes(b"".join(second_file[:first_body] + second_file[first_body + 1 :]))
