"""What reconciliation made of a payment's refunds, for the payment page: the settlement lines about each
refund and the breaks about the refunds, the payment and its invoice.

Index-backed whatever the size of the settlement tables: lines through ``ix_settlement_lines_refund``
(connection, processor's refund id), breaks through their unique (connection, kind, subject) key, with
the subjects reconciliation gives them (``refund:<id>``, ``payment:<id>``, ``line:<id>``,
``invoice:<id>:<currency>``). A line reconciliation linked by reference alone, under another processor
refund id than the refund's, is not found here; the refund's break for it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import ColumnElement, Select, and_, or_, select

from refundwatch.db.models import ReconciliationBreak, SettlementEntry, SettlementFile
from refundwatch.payments.ledger import PaymentView
from refundwatch.reconciliation.breaks import KINDS
from refundwatch.runtime import Runtime

MAX_LINES = 1000
MAX_BREAKS = 200
_SUBJECT_LENGTH = 255  # ReconciliationBreak.subject, as reconciliation cuts it


@dataclass(frozen=True, slots=True)
class LineVerdict:
    """A settlement line about a refund, and what matching made of it (``matched`` or a break kind)."""

    id: int
    kind: str
    match: str | None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    imported: bool  # settlement data was imported for the payment's connection at all
    lines: dict[UUID, list[LineVerdict]] = field(default_factory=dict)  # per refund
    breaks: dict[UUID, list[ReconciliationBreak]] = field(default_factory=dict)  # per refund
    about_payment: list[ReconciliationBreak] = field(default_factory=list)  # the payment's, its invoice's


async def reconciliation_of(rt: Runtime, view: PaymentView) -> Reconciliation:
    payment = view.payment
    by_gateway_id = {r.gateway_refund_id: r.id for r in view.refunds if r.gateway_refund_id}
    lines: dict[UUID, list[LineVerdict]] = defaultdict(list)
    refund_of_line: dict[int, UUID] = {}
    # The account's report may have been imported for another connection reaching the same account.
    connections = await rt.connections.siblings(payment.connection_id)
    async with rt.db.read_session() as session:
        imported = (
            await session.scalar(
                select(SettlementFile.id)
                .where(SettlementFile.connection_id.in_(connections), SettlementFile.status == "imported")
                .limit(1)
            )
        ) is not None
        if by_gateway_id:
            found = await session.execute(
                select(
                    SettlementEntry.id,
                    SettlementEntry.kind,
                    SettlementEntry.match,
                    SettlementEntry.refund_id,
                    SettlementEntry.gateway_refund_id,
                )
                .where(
                    SettlementEntry.connection_id.in_(connections),
                    SettlementEntry.gateway_refund_id.in_(by_gateway_id),
                    SettlementEntry.match.is_not(None),  # classified: its file was imported
                )
                .order_by(SettlementEntry.id)
                .limit(MAX_LINES)
            )
            for line_id, kind, match, refund_id, gateway_id in found:
                # A duplicate line is linked to no refund; its processor refund id still says whose it is.
                owner = refund_id or by_gateway_id.get(gateway_id)
                if owner is not None:
                    lines[owner].append(LineVerdict(line_id, kind, match))
                    refund_of_line[line_id] = owner
        breaks = list(await session.scalars(_breaks_query(view, list(refund_of_line), connections)))
    per_refund: dict[UUID, list[ReconciliationBreak]] = defaultdict(list)
    about_payment: list[ReconciliationBreak] = []
    for b in breaks:
        owner = b.refund_id or (refund_of_line.get(b.line_id) if b.line_id is not None else None)
        if owner is not None:
            per_refund[owner].append(b)
        else:
            about_payment.append(b)
    return Reconciliation(imported, dict(lines), dict(per_refund), about_payment)


def _breaks_query(
    view: PaymentView, line_ids: list[int], connections: Sequence[UUID]
) -> Select[tuple[ReconciliationBreak]]:
    payment = view.payment
    subjects = [
        f"payment:{payment.id}",
        *(f"refund:{r.id}" for r in view.refunds),
        *(f"line:{i}" for i in line_ids),
    ]
    about: ColumnElement[bool] = and_(
        ReconciliationBreak.connection_id.in_(connections),  # a line's break is under its connection
        ReconciliationBreak.kind.in_(KINDS),  # every kind: the unique key's middle column, for its index
        ReconciliationBreak.subject.in_(subjects),
    )
    if payment.invoice_id and view.invoice:
        invoices = [f"invoice:{payment.invoice_id}:{g.currency}"[:_SUBJECT_LENGTH] for g in view.invoice]
        about = or_(
            about,
            and_(
                ReconciliationBreak.connection_id.is_(None),  # the invoice check is across connections
                ReconciliationBreak.kind == "invoice_over_refunded",
                ReconciliationBreak.subject.in_(invoices),
            ),
        )
    return select(ReconciliationBreak).where(about).order_by(ReconciliationBreak.id.desc()).limit(MAX_BREAKS)
