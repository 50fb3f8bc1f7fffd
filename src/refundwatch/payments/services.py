"""Original transactions: registration (API and CSV), and the guarded refundable balance."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.connections.services import ConnectionCache
from refundwatch.db.engine import Database
from refundwatch.db.models import Payment
from refundwatch.lib.cards import refuse_card_numbers
from refundwatch.lib.exceptions import BadInput, Conflict, ValidationFailed
from refundwatch.lib.identifiers import refuse_control_characters
from refundwatch.lib.money import is_known_currency
from refundwatch.refunds.schemas import MAX_AMOUNT, MAX_REFERENCE_LENGTH

CSV_COLUMNS = [
    "connection",
    "payment_reference",
    "amount",
    "currency",
    "captured_at",
    "order_id",
    "invoice_id",
]


EARLIEST_CAPTURE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CAPTURE_HORIZON = dt.timedelta(days=100 * 365)


@dataclass(frozen=True, slots=True)
class PaymentInput:
    connection: str
    payment_reference: str
    amount: int
    currency: str
    captured_at: dt.datetime
    order_id: str | None = None
    invoice_id: str | None = None


def check_payment(data: PaymentInput) -> None:
    if not data.payment_reference.strip() or len(data.payment_reference) > MAX_REFERENCE_LENGTH:
        raise ValidationFailed(
            f"payment_reference must be 1 to {MAX_REFERENCE_LENGTH} characters", code="validation_error"
        )
    if "/" in data.payment_reference:  # the payment's own address, /api/v1/payments/{payment_reference}
        raise ValidationFailed(
            "payment_reference must not contain '/' (no processor's payment id does)", code="validation_error"
        )
    if isinstance(data.amount, bool) or not 0 < data.amount <= MAX_AMOUNT:
        raise ValidationFailed("amount must be a positive whole number of minor units", code="invalid_amount")
    if not is_known_currency(data.currency):
        raise ValidationFailed(f"unknown currency {data.currency!r}", code="invalid_currency")
    if data.captured_at.tzinfo is None:
        raise ValidationFailed("captured_at must include a time zone", code="validation_error")
    # Years 1 and 9999 overflow once stored in UTC (a 500); no capture predates 1970 or lies a century on.
    if not EARLIEST_CAPTURE <= data.captured_at <= dt.datetime.now(dt.UTC) + CAPTURE_HORIZON:
        raise ValidationFailed(
            "captured_at must be from 1970-01-01 to 100 years from now", code="validation_error"
        )
    refuse_control_characters(
        {
            "payment_reference": data.payment_reference,
            "order_id": data.order_id,
            "invoice_id": data.invoice_id,
        }
    )
    for name in ("order_id", "invoice_id"):
        value = getattr(data, name)
        if value is not None and len(value) > MAX_REFERENCE_LENGTH:
            raise ValidationFailed(f"{name} must be at most {MAX_REFERENCE_LENGTH} characters")
    refuse_card_numbers({"order_id": data.order_id, "invoice_id": data.invoice_id})


def _same(row: Payment, data: PaymentInput) -> bool:
    return (
        row.amount == data.amount
        and row.currency == data.currency
        and row.order_id == data.order_id
        and row.invoice_id == data.invoice_id
        and abs((row.captured_at - data.captured_at).total_seconds()) < 1
    )


async def _upsert(session: AsyncSession, connection_id: UUID, data: PaymentInput) -> tuple[Payment, bool]:
    existing = await session.scalar(
        select(Payment).where(
            Payment.connection_id == connection_id, Payment.payment_reference == data.payment_reference
        )
    )
    if existing is not None:
        if not _same(existing, data):
            raise Conflict(
                f"payment {data.payment_reference} already exists with different data",
                code="payment_conflict",
            )
        return existing, False
    payment = Payment(
        connection_id=connection_id,
        payment_reference=data.payment_reference,
        amount=data.amount,
        currency=data.currency,
        # Stored and read back in UTC on both databases: the answer to this request says the same.
        captured_at=data.captured_at.astimezone(dt.UTC),
        order_id=data.order_id,
        invoice_id=data.invoice_id,
        reserved_amount=0,
        refunded_amount=0,
    )
    session.add(payment)
    return payment, True


async def create_payment(
    db: Database, connections: ConnectionCache, data: PaymentInput, actor: Actor
) -> tuple[Payment, bool]:
    # An empty order or invoice id is no id, as an empty column of `payments import` and a refund's.
    data = replace(data, order_id=data.order_id or None, invoice_id=data.invoice_id or None)
    check_payment(data)
    conn = await connections.by_name(data.connection)
    if conn is None:
        raise ValidationFailed(f"unknown connection {data.connection!r}", code="unknown_connection")
    for _ in range(2):  # a concurrent insert of the same payment: read it back and compare
        try:
            async with db.session() as session:
                payment, created = await _upsert(session, conn.id, data)
                if created:
                    await session.flush()
                    record(
                        session,
                        actor,
                        actions.API_PAYMENT_CREATE,
                        target_type="payment",
                        target_id=str(payment.id),
                        details={
                            "connection": data.connection,
                            "reference": data.payment_reference,
                            "amount": data.amount,
                            "currency": data.currency,
                        },
                    )
                    await session.commit()
                return payment, created
        except IntegrityError:
            continue
    raise Conflict("payment is being created concurrently; retry", code="payment_conflict")


def _records(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """The CSV's records with the line each one starts on (what a person looks for), blank lines
    skipped: blank lines and quoted fields over several lines made counting records name the wrong line."""
    reader = csv.reader(io.StringIO(text))
    ended = 0  # the line the previous record ended on
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field beyond the csv module's 128 KiB limit
            raise BadInput(f"{source}:{ended + 1}: not valid CSV ({exc})") from None
        start, ended = ended + 1, reader.line_num
        if fields:
            yield start, fields


def parse_payments_csv(text: str, source: str) -> list[tuple[int, PaymentInput]]:
    """(line, payment) for every record, all checked; the line is where the record starts."""
    records = _records(text, source)
    header = next(records, None)
    if header is None or [f.strip() for f in header[1]] != CSV_COLUMNS:
        raise BadInput(f"{source}: header must be exactly {','.join(CSV_COLUMNS)}")
    rows: list[tuple[int, PaymentInput]] = []
    for line_no, fields in records:
        where = f"{source}:{line_no}"
        if len(fields) != len(CSV_COLUMNS):
            raise BadInput(f"{where}: expected {len(CSV_COLUMNS)} columns")
        row = {k: v.strip() for k, v in zip(CSV_COLUMNS, fields, strict=True)}
        # Plain ASCII digits only: int() also reads "1_000", and fullwidth and other scripts' digits.
        if not re.fullmatch(r"-?[0-9]+", row["amount"]):
            raise BadInput(f"{where}: amount {row['amount']!r} is not a whole number of minor units")
        amount = int(row["amount"])
        try:
            captured = dt.datetime.fromisoformat(row["captured_at"].replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"{where}: captured_at {row['captured_at']!r} is not an ISO 8601 time") from None
        if captured.tzinfo is None:
            captured = captured.replace(tzinfo=dt.UTC)
        data = PaymentInput(
            connection=row["connection"],
            payment_reference=row["payment_reference"],
            amount=amount,
            currency=row["currency"].upper(),
            captured_at=captured,
            order_id=row["order_id"] or None,
            invoice_id=row["invoice_id"] or None,
        )
        try:
            check_payment(data)
        except ValidationFailed as exc:
            raise BadInput(f"{where}: {exc.message}") from None
        rows.append((line_no, data))
    if not rows:
        raise BadInput(f"{source}: no payments in file")
    return rows


async def import_payments(
    db: Database, connections: ConnectionCache, path: Path, actor: Actor
) -> tuple[int, int]:
    """All rows or none: validates the whole file, then writes it in one transaction."""
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc.__class__.__name__})") from None
    rows = parse_payments_csv(text, str(path))
    created = existing = 0
    async with db.session() as session:
        for line_no, data in rows:
            conn = await connections.by_name(data.connection)
            if conn is None:
                raise BadInput(f"{path}:{line_no}: unknown connection {data.connection!r}")
            try:
                _, was_created = await _upsert(session, conn.id, data)
            except Conflict as exc:
                raise BadInput(f"{path}:{line_no}: {exc.message}") from None
            created += was_created
            existing += not was_created
            await session.flush()
        record(
            session,
            actor,
            actions.CLI_PAYMENTS_IMPORT,
            target_type="file",
            target_id=path.name,
            details={"created": created, "unchanged": existing},
        )
        await session.commit()
    return created, existing


async def reserve(session: AsyncSession, payment_id: UUID, amount: int, *, force: bool = False) -> bool:
    """Count ``amount`` against the payment, atomically, only if it still fits under the captured amount.

    One guarded UPDATE: PostgreSQL re-checks the condition on the locked row and SQLite runs it under
    its write lock, so concurrent requests can never reserve more than was captured. ``force`` skips
    the guard: only for a processor's report that the money has already moved (the books follow it).
    """
    guard = [] if force else [Payment.reserved_amount + amount <= Payment.amount]
    result = await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, *guard)
        .values(reserved_amount=Payment.reserved_amount + amount)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, payment_id: UUID, amount: int) -> None:
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(reserved_amount=Payment.reserved_amount - amount)
        .execution_options(synchronize_session=False)
    )


async def add_refunded(session: AsyncSession, payment_id: UUID, delta: int) -> None:
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(refunded_amount=Payment.refunded_amount + delta)
        .execution_options(synchronize_session=False)
    )
