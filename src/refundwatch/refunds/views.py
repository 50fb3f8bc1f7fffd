"""Refund rows -> API shapes (shared by the JSON API and the pages)."""

from __future__ import annotations

from refundwatch.db.models import Refund, RefundEvent
from refundwatch.refunds.schemas import EventOut, RefundOut


def refund_out(refund: Refund, events: list[RefundEvent], connection: str) -> RefundOut:
    return RefundOut(
        id=str(refund.id),
        status=refund.status,
        amount=refund.amount,
        currency=refund.currency,
        payment_reference=refund.payment_reference,
        connection=connection,
        reason=refund.reason,
        gateway_refund_id=refund.gateway_refund_id,
        attempts=refund.attempts,
        created_at=refund.created_at,
        updated_at=refund.updated_at,
        events=[
            EventOut(at=e.at, status=e.status, source=e.source, detail=e.detail, from_status=e.from_status)
            for e in events
        ],
        order_id=refund.order_id,
        invoice_id=refund.invoice_id,
        metadata=dict(refund.metadata_ or {}),
        error_code=refund.error_code,
        error_message=refund.error_message,
        gateway_status=refund.gateway_status,
        accepted_at=refund.accepted_at,
        finalized_at=refund.finalized_at,
    )
