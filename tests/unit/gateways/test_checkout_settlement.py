"""Checkout.com's Financial actions report parser: every row of the fixture normalised, amounts exact in
every exponent (8 decimals in the file), the breakdown table failing closed, and bad or foreign files
refused in one line.

Fixture (tests/unit/gateways/fixtures/): ``checkout_financial_actions.csv`` is made up in the report's
layout (RECONCILIATION.md §4.2: the header names Checkout.com's support article and third-party parsers
of its published sample use; §4 has no sample rows): a capture and its fee, a full refund and its
``Refund Fixed Fee``, a partial refund with two identical fee rows (a quoted two-line Fee Detail) and its
``Clearing Failed`` credit, a JPY refund held in EUR, a KWD refund, a fee given back by a tiered-pricing
adjustment, an unknown breakdown under a refund action, a payout, a capture that failed clearing, a
chargeback, and a refund not yet paid out (no Payout ID, no Processed On).
"""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refundwatch.gateways.checkout.settlement import (
    KIND_BY_BREAKDOWN,
    CheckoutFinancialActionsParser,
    classify,
)
from refundwatch.reconciliation.lines import Direction, LineKind, LineSource, SettlementLine
from refundwatch.reconciliation.parsing import SettlementFormatError, parser_for, supported

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "fixtures" / "settlement"
FIXTURE = "checkout_financial_actions.csv"

parser = CheckoutFinancialActionsParser()


def parse(name: str = FIXTURE, folder: Path = FIXTURES) -> list[SettlementLine]:
    with (folder / name).open("rb") as stream:
        return list(parser.parse(stream, name))


def parse_bytes(data: bytes, name: str = "financial-actions.csv") -> list[SettlementLine]:
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
        line.settlement_currency,
        line.gateway_refund_id,
        line.gateway_payment_id,
        line.merchant_reference,
        line.payout_id,
        line.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
        line.source_timezone,
        line.raw_type,
    )


A, B = "0b7e5a0c-1d2f-4e3a-9b8c-7d6e5f4a3b2c", "1c8f6b1d-2e3f-4a5b-8c9d-0e1f2a3b4c5d"
JP, KW = "2d9e7c2e-3f4a-5b6c-9d0e-1f2a3b4c5d6e", "3e0f8d3f-4a5b-6c7d-0e1f-2a3b4c5d6e7f"
R1, R2, R3, R4 = (f"act_rfd000000000000000000000{n}" for n in range(1, 5))
P1, P2 = "pay_eur00000000000000000000001", "pay_eur00000000000000000000002"
EU1, EU2, EU3 = "000000RWEU01", "000000RWEU02", "000000RWEU03"

# (line_key, row, kind, direction, gross, fee, net, currency, settlement, refund id, payment id, reference,
#  payout, occurred_at UTC, source tz, raw type)
EXPECTED: list[tuple[Any, ...]] = [
    ("act_cap0000000000000000000001|Capture", 2, "payment", "credit", 10_000, 0, 10_000, "EUR", "EUR", None,
     P1, "order-4711", EU1, "2026-12-04 16:00:01", "UTC", "Capture/Capture"),
    # Fixed fees are booked in the holding currency only: the one amount is gross and net.
    ("act_cap0000000000000000000001|Scheme Fixed Fee", 3, "fee", "debit", -2, 0, -2, "EUR", "EUR", None,
     P1, "order-4711", EU1, "2026-12-04 16:00:01", "UTC", "Capture/Scheme Fixed Fee"),
    (f"{R1}|Refund", 4, "refund", "debit", -10_000, 0, -10_000, "EUR", "EUR", R1, P1, A, EU2,
     "2026-12-05 09:15:04", "UTC", "Refund/Refund"),
    (f"{R1}|Refund Fixed Fee", 5, "fee", "debit", -15, 0, -15, "EUR", "EUR", None, P1, A, EU2,
     "2026-12-05 09:15:04", "UTC", "Refund/Refund Fixed Fee"),
    (f"{R2}|Refund", 6, "refund", "debit", -1_250, 0, -1_250, "EUR", "EUR", R2, P2, B, EU2,
     "2026-12-05 10:00:00", "UTC", "Partial Refund/Refund"),
    # Two identical fee rows (Checkout.com: "use the row number to differentiate them"); each spans two
    # physical lines (a quoted line break in Fee Detail).
    (f"{R2}|Refund Fixed Fee", 7, "fee", "debit", -10, 0, -10, "EUR", "EUR", None, P2, B, EU2,
     "2026-12-05 10:00:00", "UTC", "Partial Refund/Refund Fixed Fee"),
    (f"{R2}|Refund Fixed Fee", 9, "fee", "debit", -10, 0, -10, "EUR", "EUR", None, P2, B, EU2,
     "2026-12-05 10:00:00", "UTC", "Partial Refund/Refund Fixed Fee"),
    # The refund failed clearing: credited back, named by the refund's action, in a later payout; its
    # time carries its own offset.
    (f"{R2}|Clearing Failed", 11, "refund_failure", "credit", 1_250, 0, 1_250, "EUR", "EUR", R2, P2, B, EU3,
     "2026-12-07 07:30:00", "+01:00", "Partial Refund/Clearing Failed"),
    # -1200.00000000 JPY is 1200 minor units (no decimals); held in EUR: -7.31 EUR.
    (f"{R3}|Refund", 12, "refund", "debit", -1_200, 0, -731, "JPY", "EUR", R3,
     "pay_jpy00000000000000000000003", JP, EU2, "2026-12-05 11:00:00", "UTC", "Refund/Refund"),
    # -1.25000000 KWD is 1250 minor units (three decimals).
    (f"{R4}|Refund", 13, "refund", "debit", -1_250, 0, -1_250, "KWD", "KWD", R4,
     "pay_kwd00000000000000000000004", KW, "000000RWKW01", "2026-12-05 12:00:00", "UTC",
     "Partial Refund/Refund"),
    ("adj_tier000000000000000000001|Refund Fixed Fee", 14, "fee_refund", "credit", 5, 0, 5, "EUR", "EUR",
     None, None, None, EU2, "2026-12-05 13:00:00", "UTC", "Tiered Pricing Adjustment/Refund Fixed Fee"),
    ("act_rfd0000000000000000000005|Refund Reserve Hold", 15, "unmapped", "debit", -300, 0, -300, "EUR",
     "EUR", None, P1, None, EU2, "2026-12-05 14:00:00", "UTC", "Refund/Refund Reserve Hold"),
    ("pyt_eur0000000000000000000002|Payout", 16, "payout", "debit", -50_000, 0, -50_000, "EUR", "EUR", None,
     None, None, EU2, "2026-12-06 02:00:00", "UTC", "Payout/Payout"),
    ("act_cap0000000000000000000006|Clearing Failed", 17, "other", "debit", -4_000, 0, -4_000, "EUR", "EUR",
     None, "pay_eur00000000000000000000006", "order-4712", EU2, "2026-12-05 15:00:00", "UTC",
     "Capture/Clearing Failed"),
    ("act_cbk0000000000000000000007|Chargeback (CBRV)", 18, "other", "debit", -2_000, 0, -2_000, "EUR", "EUR",
     None, "pay_eur00000000000000000000007", "order-4713", EU2, "2026-12-05 16:00:00", "UTC",
     "Chargeback/Chargeback (CBRV)"),
    # Not paid out yet: no Payout ID; no Processed On, so Requested On.
    ("act_rfd0000000000000000000008|Refund", 19, "refund", "debit", -500, 0, -500, "EUR", "EUR",
     "act_rfd0000000000000000000008", "pay_eur00000000000000000000007", None, None, "2026-12-05 17:00:00",
     "UTC", "Refund/Refund"),
]  # fmt: skip


def test_every_row_of_the_fixture() -> None:
    lines = parse()
    assert [summary(line) for line in lines] == EXPECTED
    assert {(line.processor, line.source) for line in lines} == {("checkout", LineSource.FILE)}


def test_raw_is_each_records_text_exactly() -> None:
    text = (FIXTURES / FIXTURE).read_text(encoding="utf-8").splitlines()
    for line in parse():
        taken = 2 if line.raw.endswith('"Refund fee,\nfixed"') else 1
        assert line.raw == "\n".join(text[line.row_number - 1 : line.row_number - 1 + taken])


def test_registered_as_checkouts_file_parser() -> None:
    assert ("checkout", "file") in supported()
    assert isinstance(parser_for("checkout"), CheckoutFinancialActionsParser)
    assert parser_for("checkout").processor == "checkout"
    with pytest.raises(LookupError, match="checkout"):
        parser_for("checkout", "api")


def test_a_bom_crlf_blank_lines_and_another_column_order_change_nothing_but_the_raw_text() -> None:
    data = (FIXTURES / FIXTURE).read_bytes()
    expected = [summary(line)[2:] for line in parse_bytes(data)]
    for variant in (b"\xef\xbb\xbf" + data, data.replace(b"\n", b"\r\n")):
        assert [summary(line)[2:] for line in parse_bytes(variant)] == expected
    # Columns found by name: the first two swapped everywhere.
    rows = data.decode().split("\n")
    swapped = "\n".join(",".join([r.split(",")[1], r.split(",")[0], *r.split(",")[2:]]) if r.count(",") > 5
                        else r for r in rows).encode()  # fmt: skip
    assert [summary(line)[2:] for line in parse_bytes(swapped)] == expected
    spaced = data.replace(b"\n", b"\n\n", 1)
    assert parse_bytes(spaced)[0].row_number == 3  # physical line numbers


def test_a_zone_for_times_without_an_offset() -> None:
    local = CheckoutFinancialActionsParser("Europe/London")
    lines = list(local.parse(io.BytesIO((FIXTURES / FIXTURE).read_bytes()), FIXTURE))
    assert (lines[0].occurred_at.hour, lines[0].source_timezone) == (16, "Europe/London")  # winter: UTC+0
    assert lines[7].source_timezone == "+01:00"  # its own offset wins
    pacific = CheckoutFinancialActionsParser("America/Los_Angeles")
    first = next(iter(pacific.parse(io.BytesIO((FIXTURES / FIXTURE).read_bytes()), FIXTURE)))
    assert first.occurred_at.strftime("%Y-%m-%d %H:%M") == "2026-12-05 00:00"


def test_breakdowns_classify_by_action_and_direction_and_unknown_ones_fail_closed() -> None:
    debit, credit = Direction.DEBIT, Direction.CREDIT
    assert classify("Refund", "Refund", debit) is LineKind.REFUND
    assert classify("Partial Refund", "Refund", debit) is LineKind.REFUND
    assert classify("Refund", "Refund", credit) is LineKind.UNMAPPED  # money in for a refund: not known
    assert classify("Capture", "Refund", debit) is LineKind.UNMAPPED
    assert classify("Refund", "Clearing Failed", credit) is LineKind.REFUND_FAILURE
    assert classify("Partial Refund", "Clearing Failed", credit) is LineKind.REFUND_FAILURE
    assert classify("Refund", "Clearing Failed", debit) is LineKind.UNMAPPED
    assert classify("Capture", "Clearing Failed", debit) is LineKind.OTHER
    assert classify("Capture", "Capture", credit) is LineKind.PAYMENT
    assert classify("Partial Capture", "Partial Capture", credit) is LineKind.PAYMENT
    assert classify("Capture", "Capture", debit) is LineKind.UNMAPPED
    for fee in ("Refund Fixed Fee", "Scheme Variable Fee", "Interchange Fixed Fee", "Gateway Fixed Fee",
                "Premium Variable Fee", "Scheme Fixed Fee Tax", "Minimum Billing Fee"):  # fmt: skip
        assert classify("Refund", fee, debit) is LineKind.FEE
        assert classify("Tiered Pricing Adjustment", fee, credit) is LineKind.FEE_REFUND
    for breakdown, kind in KIND_BY_BREAKDOWN.items():
        assert classify("Adjustment", breakdown, debit) is kind
    for unknown in ("Refund Reserve Hold", "refund", "Fee", "Capture Reversal", "Future Breakdown"):
        assert classify("Refund", unknown, debit) is LineKind.UNMAPPED


# ------------------------------------------------------------------------------------------ refusals

HEADER = (FIXTURES / FIXTURE).read_text(encoding="utf-8").splitlines()[0]
ROW = (
    "ent_rwsim01,ent_rwsubeu,ca_rweur01,pc_rweu01,Refund,act_rfd0000000000000000000001,"
    "pay_eur00000000000000000000001,0b7e5a0c-1d2f-4e3a-9b8c-7d6e5f4a3b2c,2026-12-05T09:15:02.000,"
    "2026-12-05T09:15:04.500,000000RWEU02,Refund,EUR,-100.00000000,EUR,-100.00000000,1.00000000,EUR,"
    "-100.00000000,VISA,Credit,"
)


def report(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "financial-actions.csv: empty file: expected a Checkout.com Financial actions report"),
        (report(ROW.replace("EUR,-100.00000000,EUR", "JPY,-100.50000000,JPY")),
         "row 2: Processing Currency Amount -100.50000000 has more decimals than JPY allows"),
        (report(ROW.replace("EUR,-100.00000000,EUR,-100.00000000,1", "KWD,-1.23450000,KWD,-1.23450000,1")),
         "row 2: Processing Currency Amount -1.23450000 has more decimals than KWD allows"),
        (report(ROW.replace("EUR,-100.00000000,1", "EUR,-100.000000001,1")),
         "row 2: Holding Currency Amount -100.000000001 has more decimals than EUR allows"),
        (report(ROW.replace(",-100.00000000,EUR", ",-1e2,EUR", 1)),
         "row 2: Processing Currency Amount '-1e2' is not a decimal amount"),
        (report(ROW.replace(",-100.00000000,EUR", ",\"-1,000.00\",EUR", 1)),
         "row 2: Processing Currency Amount '-1,000.00' is not a decimal amount"),
        (report(ROW.replace("EUR,-100.00000000,1", "EUR,100.00000000,1")),
         "row 2: Processing Currency Amount and Holding Currency Amount have opposite signs"),
        (report(ROW.replace("EUR,-100.00000000,EUR,-100.00000000,1", "EUR,,EUR,,1")),
         "row 2: Processing Currency Amount and Holding Currency Amount are both empty"),
        (report(ROW.replace("EUR,-100.00000000,EUR", "XYZ,-100.00000000,EUR")),
         "row 2: Processing Currency 'XYZ' is not a currency refundwatch knows"),
        (report(ROW.replace("2026-12-05T09:15:04.500", "05/12/2026 09:15")),
         "row 2: Processed On '05/12/2026 09:15' is not a date and time"),
        (report(ROW.replace("act_rfd0000000000000000000001", "")), "row 2: Action ID is empty"),
        (report(ROW.replace(",Refund,EUR", ",,EUR")), "row 2: Breakdown Type is empty"),
        (report(ROW.removesuffix(",VISA,Credit,")), "row 2: row has 19 fields, the header has 22"),
        (report(ROW + ",x"), "row 2: row has 23 fields, the header has 22"),
        (report(ROW, header=HEADER.replace("Breakdown Type", "Breakdown")),
         "row 1: not a Checkout.com Financial actions report: the header lacks Breakdown Type"),
        (report(ROW, header=HEADER.replace("Processed On", "Settled On").replace("Requested On", "Asked")),
         "the header lacks Processed On or Requested On"),
        (report(ROW, header=HEADER + ",Action ID"), "row 1: column 'Action ID' appears twice in the header"),
        (report(ROW.replace("pay_eur", '"pay_eur', 1)), "row 2: malformed CSV"),
        (b"Action ID\xff\n", "row 1: not UTF-8 text"),
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
        (FIXTURES, "paypal_stl_refunds.csv"),
        (FIXTURES, "paypal_stl_smashpig.csv"),
    ],
)
def test_another_processors_file_is_refused_before_any_line(folder: Path, fixture: str) -> None:
    with pytest.raises(SettlementFormatError) as caught:
        parse(fixture, folder)
    assert f"{fixture}: row 1: not a Checkout.com Financial actions report: the header lacks" in str(
        caught.value
    )


@pytest.mark.parametrize("processor", ["stripe", "adyen", "paypal"])
def test_and_checkouts_file_is_refused_by_the_other_parsers(processor: str) -> None:
    with (FIXTURES / FIXTURE).open("rb") as stream, pytest.raises(SettlementFormatError):
        list(parser_for(processor).parse(stream, FIXTURE))


def test_lines_before_a_bad_row_come_out_first_and_the_callers_stream_stays_open() -> None:
    stream = io.BytesIO(report(ROW, ROW.replace("-100.00000000,1", "x,1")))
    lines = parser.parse(stream, "financial-actions.csv")
    assert next(lines).gross == -10_000
    with pytest.raises(SettlementFormatError, match="row 3"):
        next(lines)
    assert not stream.closed


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
    yield f"{HEADER}\n".encode()
    for n in range(count):
        amount = f"-{n % 997 + 1}.00000000"
        yield (
            ROW.replace("0000000000000000000001", f"{n:022d}").replace("-100.00000000", amount) + "\n"
        ).encode()


def test_a_large_file_streams_in_bounded_memory() -> None:
    count = 10_000
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
    assert total == -100 * sum(n % 997 + 1 for n in range(count))
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
