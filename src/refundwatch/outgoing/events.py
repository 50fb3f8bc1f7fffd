"""The event types endpoints subscribe to, and which change of a refund is which event (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.refunds.states import Status, Transition

# Append only: an endpoint stores its choice as a bit mask, bit i for EVENT_TYPES[i].
EVENT_TYPES: tuple[str, ...] = (
    "refund.created",
    "refund.pending_approval",
    "refund.approved",
    "refund.rejected",
    "refund.processing",
    "refund.succeeded",
    "refund.failed",
    "refund.reversed",
    "refund.canceled",
    "refund.manual_review",
    "gateway.down",
    "gateway.up",
    "reconciliation.break_opened",
)
CREATED, PENDING_APPROVAL = "refund.created", "refund.pending_approval"
GATEWAY_DOWN, GATEWAY_UP = "gateway.down", "gateway.up"
BREAK_OPENED = "reconciliation.break_opened"

_BY_STATUS = {
    Status.REJECTED: "refund.rejected",
    Status.PROCESSING: "refund.processing",
    Status.SUCCEEDED: "refund.succeeded",
    Status.FAILED: "refund.failed",
    Status.REVERSED: "refund.reversed",
    Status.CANCELED: "refund.canceled",
    Status.MANUAL_REVIEW: "refund.manual_review",
}


class UnknownEventType(ValidationFailed):
    code = "unknown_event_type"


def bit(event_type: str) -> int:
    return 1 << EVENT_TYPES.index(event_type)


def mask_of(event_types: Iterable[str]) -> int:
    """The bit mask of a list of event types; :class:`UnknownEventType` names any unknown one."""
    wanted = list(event_types)
    unknown = sorted({e for e in wanted if e not in EVENT_TYPES})
    if unknown:
        raise UnknownEventType(
            f"unknown event type {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
            extra={"event_types": list(EVENT_TYPES)},
        )
    if not wanted:
        raise UnknownEventType("name at least one event type")
    mask = 0
    for event_type in wanted:
        mask |= bit(event_type)
    return mask


def types_of(mask: int) -> list[str]:
    return [event_type for i, event_type in enumerate(EVENT_TYPES) if mask & (1 << i)]


def refund_event_type(move: Transition) -> str | None:
    """The event a refund's transition is, or ``None`` for steps nobody subscribes to (submitting,
    back to queued for a retry)."""
    if not move.changed:
        return None
    if move.before is Status.PENDING_APPROVAL and move.after is Status.QUEUED:
        return "refund.approved"
    return _BY_STATUS.get(move.after)
