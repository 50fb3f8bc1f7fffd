"""Closing a refund in manual review as "not executed", only on the processor's word.

Manual review holds refunds whose outcome is unknown: the processor may have paid. Releasing the
amount on a person's guess could refund twice, so ``cancel`` does not apply there (it means "before
submission", CONTRACT §4). An approver may close such a refund, with a reason, and only after the
processor confirms that no refund exists for its current attempt. If the processor has the refund,
its status is recorded instead and nothing is closed.
"""

from __future__ import annotations

from uuid import UUID

from refundwatch.audit.actions import Actor
from refundwatch.db.models import Refund
from refundwatch.gateways.base import GatewayError, RefundRequest
from refundwatch.lib.exceptions import Conflict, InvalidTransition, NotFound, ValidationFailed
from refundwatch.refunds import lookup
from refundwatch.refunds.services import apply, lock_refund, refuse_own
from refundwatch.refunds.states import Source, Status, Trigger
from refundwatch.runtime import Runtime


async def close_unexecuted(
    rt: Runtime, refund_id: UUID, *, actor: Actor, by: str, reason: str | None
) -> Refund:
    from refundwatch.refunds.execution import Claim
    from refundwatch.refunds.outcomes import record_result

    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("give a reason for closing the refund", code="reason_required")
    if len(reason) > 500:
        raise ValidationFailed("the reason must be at most 500 characters")
    async with rt.db.read_session() as session:
        refund = await session.get(Refund, refund_id)
        if refund is None:
            raise NotFound(f"no refund {refund_id}", code="refund_not_found")
        if refund.status != Status.MANUAL_REVIEW:
            raise InvalidTransition(
                f"only a refund in manual review can be closed; this one is {refund.status}"
            )
        key, gateway_refund_id = refund.gateway_idempotency_key, refund.gateway_refund_id
        claim = Claim(
            connection_id=refund.connection_id,
            request=RefundRequest(
                refund_id=str(refund.id),
                payment_reference=refund.payment_reference,
                amount=refund.amount,
                currency=refund.currency,
                reason=refund.reason,
                idempotency_key=key,
                metadata={k: str(v) for k, v in (refund.metadata_ or {}).items()},
            ),
            attempt=refund.attempts,
            look_up=True,
            gateway_refund_id=gateway_refund_id,
            key_sent_at=refund.key_sent_at,
        )
    conn = await rt.connections.by_id(claim.connection_id)
    if conn is None:
        raise Conflict("the refund's connection is missing", code="connection_missing")
    if refund.submitted_at is not None:  # never sent: nothing to ask
        try:
            found = await lookup.ask(rt, conn, claim)
        except GatewayError as err:
            raise Conflict(
                f"the processor could not confirm that no refund exists ({err.code.value}: {err.message}); "
                "nothing was closed",
                code="processor_unconfirmed",
            ) from None
        if found is not None:
            await record_result(
                rt, refund_id, found, source=Source.SYNC, key=key, via=" (asked before closing)"
            )
            raise Conflict(
                f"the processor has this refund (status {found.raw_status}): its status was recorded, "
                "nothing was closed",
                code="refund_exists_at_processor",
            )
    async with rt.db.session() as session:
        refund = await lock_refund(session, refund_id)
        if refund.status != Status.MANUAL_REVIEW or refund.gateway_idempotency_key != key:
            raise InvalidTransition("the refund changed while the processor was asked; look again")
        if by == refund.created_by:
            await refuse_own(
                session,
                refund,
                Trigger.CLOSE,
                actor,
                "a second person must close a refund: you started this one",
            )
        confirmed = (
            f"the processor confirmed it has no refund under key {key}"
            if refund.submitted_at is not None
            else "it was never sent"
        )
        await apply(
            session,
            refund,
            Trigger.CLOSE,
            source=Source.USER,
            actor=actor,
            detail=f"closed as not executed by {actor.id}: {reason} ({confirmed})",
            lookup_before_send=False,
        )
        await session.commit()
    return refund
