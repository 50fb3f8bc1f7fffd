"""Reconciliation against refundwatch's own records, and refunds the processor never reported.

Run by the worker on a schedule and by ``refundwatch reconcile check``:
- a payment whose succeeded refunds exceed its capture (``over_refunded``);
- an invoice whose succeeded refunds exceed its payments, per currency (``invoice_over_refunded``);
- a succeeded refund absent from its connection's settlement data longer than the processor's
  settlement delay (``missing_settlement``; only for connections whose reports are imported at all,
  so an installation that does not reconcile is not flooded). Such a break closes by itself when a
  later report has the refund.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any
from uuid import UUID

from sqlalchemy import Exists, and_, exists, func, select, update

from refundwatch.config import get_settings
from refundwatch.db.models import Payment, ReconciliationBreak, Refund, SettlementEntry, SettlementFile
from refundwatch.reconciliation.matching import MATCHED, Summary, match_lines, new_break, open_break
from refundwatch.refunds.states import Status
from refundwatch.runtime import Runtime

# The worker's schedule leaves a file imported this recently to its importer (the CLI, an upload, a
# pull), which matches it right after: two matchers would split the lines, and the importer's summary
# would miss the other's share. A crashed importer's file is matched by the next scheduled run.
IMPORTER_GRACE = dt.timedelta(minutes=1)


async def check(rt: Runtime, now: dt.datetime | None = None, *, scheduled: bool = False) -> Summary:
    """Match what is unmatched, then the internal checks and missing settlements. ``scheduled``: the
    worker's run, which leaves files imported within :data:`IMPORTER_GRACE` to their importers."""
    now = now or dt.datetime.now(dt.UTC)
    summary = await match_lines(rt, settled_before=now - IMPORTER_GRACE if scheduled else None)
    opened: Counter[str] = summary.breaks
    async with rt.db.session() as session:
        over = await session.execute(select(Payment).where(Payment.refunded_amount > Payment.amount))
        for payment in over.scalars():
            found = new_break(
                "over_refunded",
                payment.connection_id,
                f"payment:{payment.id}",
                f"payment {payment.payment_reference}: refunded {payment.refunded_amount} of "
                f"{payment.amount} captured (minor units of {payment.currency})",
                expected=payment.amount,
                actual=payment.refunded_amount,
                currency=payment.currency,
            )
            if await open_break(session, found):
                opened[found.kind] += 1
        paid = (
            select(Payment.invoice_id, Payment.currency, func.sum(Payment.amount).label("paid"))
            .where(Payment.invoice_id.is_not(None))
            .group_by(Payment.invoice_id, Payment.currency)
            .subquery()
        )
        refunded = (
            select(Refund.invoice_id, Refund.currency, func.sum(Refund.amount).label("refunded"))
            .where(Refund.invoice_id.is_not(None), Refund.status == Status.SUCCEEDED.value)
            .group_by(Refund.invoice_id, Refund.currency)
            .subquery()
        )
        invoices = await session.execute(
            select(refunded.c.invoice_id, refunded.c.currency, refunded.c.refunded, paid.c.paid)
            .join(
                paid,
                and_(paid.c.invoice_id == refunded.c.invoice_id, paid.c.currency == refunded.c.currency),
                isouter=True,
            )
            .where(refunded.c.refunded > func.coalesce(paid.c.paid, 0))
        )
        for invoice_id, currency, total, payments in invoices:
            found = new_break(
                "invoice_over_refunded",
                None,
                f"invoice:{invoice_id}:{currency}",
                f"invoice {invoice_id}: refunded {total} of {payments or 0} paid (minor units of {currency})",
                expected=payments or 0,
                actual=total,
                currency=currency,
            )
            if await open_break(session, found):
                opened[found.kind] += 1
        await session.commit()
    await _missing_settlements(rt, now, opened)
    return summary


# A refund line linked to the refund is its settlement, whatever its verdict: one reported with another
# amount or currency is in the report (that is its own break), not missing from it.
REPORTED = (MATCHED, "amount_mismatch", "currency_mismatch")


def _reported(refund_id: Any) -> Exists:
    return exists().where(
        and_(
            SettlementEntry.refund_id == refund_id,
            SettlementEntry.kind == "refund",
            SettlementEntry.match.in_(REPORTED),
        )
    )


def _settled() -> Exists:
    return _reported(Refund.id)


async def _missing_settlements(rt: Runtime, now: dt.datetime, opened: Counter[str]) -> None:
    settings = get_settings()
    async with rt.db.session() as session:
        reconciled = await session.scalars(
            select(SettlementFile.connection_id).where(SettlementFile.status == "imported").distinct()
        )
        # A report imported for one connection covers the connections reaching the same account.
        covered: dict[UUID, None] = {}
        for reconciled_id in list(reconciled):
            covered.update(dict.fromkeys(await rt.connections.siblings(reconciled_id)))
        for connection_id in covered:
            conn = await rt.connections.by_id(connection_id)
            if conn is None:
                continue
            cutoff = now - dt.timedelta(hours=settings.reconcile_expected_for(conn.processor))
            missing = await session.scalars(
                select(Refund).where(
                    Refund.connection_id == connection_id,
                    Refund.status == Status.SUCCEEDED.value,
                    Refund.finalized_at < cutoff,
                    ~_settled(),
                )
            )
            for refund in missing:
                found = new_break(
                    "missing_settlement",
                    connection_id,
                    f"refund:{refund.id}",
                    f"succeeded here, absent from {conn.processor}'s settlement data after "
                    f"{settings.reconcile_expected_for(conn.processor):g} h",
                    refund=refund,
                    expected=refund.amount,
                    currency=refund.currency,
                )
                if await open_break(session, found):
                    opened[found.kind] += 1
        # Found after all: a later report has the refund.
        await session.execute(
            update(ReconciliationBreak)
            .where(
                ReconciliationBreak.kind == "missing_settlement",
                ReconciliationBreak.status == "open",
                _reported(ReconciliationBreak.refund_id),
            )
            .values(
                status="resolved",
                resolution="matched",
                reason="a later settlement report has it",
                resolved_by="system:reconciliation",
                resolved_at=now,
            )
        )
        await session.commit()
