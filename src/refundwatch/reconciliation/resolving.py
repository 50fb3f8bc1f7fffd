"""A person resolves a break (issue 14 §3): accepted, linked by hand to a refund, or written off.

Approvers and admins only (the page's guard), always with a reason, audited in the same transaction.
Only the break changes: the imported line behind it never does. Two people resolving the same break at
once: the status is compare-and-set (``WHERE status = 'open'``), so exactly one wins and the other is
told it is resolved already.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import select, update

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.db.models import ReconciliationBreak, Refund
from refundwatch.lib.exceptions import Conflict, NotFound, ValidationFailed
from refundwatch.runtime import Runtime

RESOLUTIONS = ("accepted", "linked", "written_off")
MAX_REASON = 1000


async def get_break(rt: Runtime, break_id: UUID) -> ReconciliationBreak:
    async with rt.db.read_session() as session:
        found = await session.get(ReconciliationBreak, break_id)
    if found is None:
        raise NotFound(f"no break {break_id}", code="break_not_found")
    return found


def checked_form(resolution: str, reason: str, refund_text: str) -> tuple[str, UUID | None]:
    """The reason, and the refund id to link (``linked`` only), or the first thing wrong with them."""
    if resolution not in RESOLUTIONS:
        raise ValidationFailed(
            f"resolution must be one of {', '.join(RESOLUTIONS)}", code="invalid_resolution"
        )
    if not reason:
        raise ValidationFailed("a reason is required", code="reason_required")
    if len(reason) > MAX_REASON:
        raise ValidationFailed(f"the reason is longer than {MAX_REASON} characters", code="reason_too_long")
    if resolution != "linked":
        return reason, None
    if not refund_text:
        raise ValidationFailed("linking needs the refund's id", code="refund_required")
    try:
        return reason, UUID(refund_text)
    except ValueError:
        raise ValidationFailed(f"{refund_text[:64]!r} is not a refund id", code="invalid_refund_id") from None


async def resolve(
    rt: Runtime,
    break_id: UUID,
    *,
    resolution: str,
    reason: str,
    refund_id: str = "",
    actor: Actor,
) -> ReconciliationBreak:
    """Resolve an open break; ``refund_id`` (for ``linked``) must be a refund of the break's connection."""
    reason, linked = checked_form(resolution, reason.strip(), refund_id.strip())
    found = await get_break(rt, break_id)
    if found.status != "open":
        raise Conflict("this break is resolved already", code="break_resolved")
    now = dt.datetime.now(dt.UTC)
    async with rt.db.session() as session:
        values: dict[str, object] = {
            "status": "resolved",
            "resolution": resolution,
            "reason": reason,
            "resolved_by": actor.id[:255],
            "resolved_at": now,
        }
        if linked is not None:
            refund = await session.scalar(select(Refund.connection_id).where(Refund.id == linked))
            if refund is None:
                raise ValidationFailed(f"no refund {linked}", code="refund_not_found")
            # The break's connection, or one reaching the same processor account (the matcher links
            # such a line to such a refund by itself).
            if found.connection_id is not None and refund not in await rt.connections.siblings(
                found.connection_id
            ):
                raise ValidationFailed(
                    f"refund {linked} is not on this break's connection", code="refund_other_connection"
                )
            values["refund_id"] = linked
        changed = await session.execute(
            update(ReconciliationBreak)
            .where(ReconciliationBreak.id == break_id, ReconciliationBreak.status == "open")
            .values(**values)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            await session.rollback()
            raise Conflict("this break is resolved already", code="break_resolved")
        details: dict[str, object] = {
            "kind": found.kind,
            "resolution": resolution,
            "reason": reason,
            "subject": found.subject,
        }
        if found.line_id is not None:
            details["line_id"] = found.line_id
        if linked is not None:
            details["linked_refund_id"] = str(linked)
            if found.refund_id is not None and found.refund_id != linked:
                details["previous_refund_id"] = str(found.refund_id)
        if found.currency is not None and found.actual is not None:
            details |= {"amount": found.actual, "currency": found.currency}
        record(
            session,
            actor,
            actions.RECONCILIATION_RESOLVE,
            target_type="reconciliation_break",
            target_id=str(break_id),
            details=details,
        )
        await session.commit()
    return await get_break(rt, break_id)
