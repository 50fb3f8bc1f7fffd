"""Refunds at processors that cannot be asked (Capabilities.reads_refunds is False, e.g. Adyen).

Such a processor only acknowledges a refund ("received") and tells the outcome later in a
notification; there is no endpoint to read it back. So a sync cannot settle it: a ``processing``
refund with no notification for the processor's notification timeout goes to ``manual_review`` with
that reason (never to success), and a forced sync answers that the processor cannot be asked.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from refundwatch.audit.actions import WORKER
from refundwatch.config import Settings
from refundwatch.lib.exceptions import Conflict
from refundwatch.refunds.outcome_log import log_refund
from refundwatch.refunds.services import apply, lock_refund, utcnow
from refundwatch.refunds.states import Source, Status, Trigger
from refundwatch.runtime import Runtime


class CannotAsk(Conflict):
    code = "processor_cannot_be_asked"


def timeout_hours(settings: Settings, processor: str) -> float:
    """The processor's own setting (REFUNDWATCH_<PROCESSOR>_NOTIFICATION_TIMEOUT_HOURS) if it has one,
    otherwise REFUNDWATCH_NOTIFICATION_TIMEOUT_HOURS."""
    own = getattr(settings, f"{processor}_notification_timeout_hours", None)
    return float(own if own is not None else settings.notification_timeout_hours)


async def settle_overdue(rt: Runtime, refund_id: UUID, processor: str, connection: str) -> str:
    """Manual review for a processing refund whose notification is overdue; otherwise nothing."""
    hours = timeout_hours(rt.settings, processor)
    async with rt.db.session() as session:
        refund = await lock_refund(session, refund_id)
        since = refund.accepted_at or refund.submitted_at or refund.created_at
        if refund.status != Status.PROCESSING or utcnow() - since < dt.timedelta(hours=hours):
            return f"waiting for {processor}'s notification"
        await apply(
            session,
            refund,
            Trigger.NEEDS_REVIEW,
            source=Source.SYNC,
            actor=WORKER,
            detail=f"no notification from {processor} ({connection}) {hours:g} h after it accepted the "
            "refund, and it has no endpoint to read the refund: a person must check its records",
        )
        await session.commit()
    await log_refund(rt, refund)
    return "manual_review: notification overdue"


def cannot_ask(processor: str) -> CannotAsk:
    return CannotAsk(
        f"{processor} has no endpoint to read a refund: its outcome arrives in a notification. "
        f"Without one, the refund goes to manual review after the notification timeout"
    )
