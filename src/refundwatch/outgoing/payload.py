"""What a delivery sends: ``{type, timestamp, data}``.

For a refund's event ``data`` is the refund as ``GET /api/v1/refunds/{id}`` shows it, as of the change:
its timeline ends with the change's entry, and ``status``, ``updated_at``, ``accepted_at`` and
``finalized_at`` are the ones that entry left (fields the worker changes without a transition, such as
``attempts``, are as they were when the delivery was first sent, normally the same moment). Plus
``sequence``: larger for every later change of the same refund, so a receiver drops what is older
than what it has. A reconciliation break is shown as ``GET /api/v1/reconciliation/breaks`` lists it;
a gateway's change carries what was written with it.

The body is rendered once, before the first attempt (a batch of first sends reads its refunds
together), and kept: every retry and re-send sends the same bytes (signed afresh each time).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import select

from refundwatch.db.models import ReconciliationBreak, Refund, RefundEvent
from refundwatch.outgoing.events import BREAK_OPENED
from refundwatch.reconciliation.breaks import break_out
from refundwatch.refunds.states import FINAL, Status
from refundwatch.refunds.views import refund_out
from refundwatch.runtime import Runtime


def body(event_type: str, occurred_at: dt.datetime, data: Any) -> bytes:
    return msgspec.json.encode({"type": event_type, "timestamp": occurred_at, "data": data})


async def refunds_as_of(
    rt: Runtime, changes: Collection[tuple[UUID, int]]
) -> dict[tuple[UUID, int], dict[str, Any]]:
    """Each ``(refund id, timeline entry id)`` shown as the API showed the refund right after that entry
    (module docstring), read in one go: the refunds in one query and their timelines in another, so a
    batch of first sends costs two reads, not two per delivery. Refunds not found are left out."""
    if not changes:
        return {}
    refund_ids = {refund_id for refund_id, _ in changes}
    async with rt.db.read_session() as session:
        refunds = {r.id: r for r in await session.scalars(select(Refund).where(Refund.id.in_(refund_ids)))}
        timelines: dict[UUID, list[RefundEvent]] = defaultdict(list)
        # By refund id alone, each timeline cut in Python: with an ``id <=`` bound as well, PostgreSQL
        # may read every timeline entry up to it (a bitmap scan of the primary key) instead of the
        # few refunds' ones.
        found = await session.scalars(
            select(RefundEvent)
            .where(RefundEvent.refund_id.in_(refund_ids))
            .order_by(RefundEvent.refund_id, RefundEvent.id)
        )
        for event in found:
            timelines[event.refund_id].append(event)
    shown: dict[tuple[UUID, int], dict[str, Any]] = {}
    for refund_id, event_id in changes:
        refund = refunds.get(refund_id)
        events = [e for e in timelines[refund_id] if e.id <= event_id]
        if refund is not None and events:
            name = await rt.connections.name_of(refund.connection_id) or "?"
            shown[refund_id, event_id] = _as_of(refund, events, name)
    return shown


def _as_of(refund: Refund, events: list[RefundEvent], connection: str) -> dict[str, Any]:
    out = refund_out(refund, events, connection)
    last = events[-1]
    final = Status(last.status) in FINAL
    finalized = refund.finalized_at
    out = msgspec.structs.replace(
        out,
        status=last.status,
        updated_at=last.at,
        accepted_at=refund.accepted_at if refund.accepted_at and refund.accepted_at <= last.at else None,
        finalized_at=finalized if finalized and finalized <= last.at else (last.at if final else None),
    )
    data: dict[str, Any] = msgspec.to_builtins(out)
    return data


@dataclass(frozen=True, slots=True)
class Change:
    """What a delivery reports, as its row holds it."""

    delivery_id: int
    event_type: str
    occurred_at: dt.datetime
    refund_id: UUID | None
    event_id: int | None
    data: str | None


async def render_many(rt: Runtime, changes: Sequence[Change]) -> dict[int, bytes]:
    """The bodies of several deliveries by id; their refunds are read together (:func:`refunds_as_of`)."""
    refunds = await refunds_as_of(
        rt, {(c.refund_id, c.event_id) for c in changes if c.refund_id is not None and c.event_id is not None}
    )
    bodies: dict[int, bytes] = {}
    for change in changes:
        if change.refund_id is not None and change.event_id is not None:
            content = dict(refunds.get((change.refund_id, change.event_id)) or {"id": str(change.refund_id)})
            content["sequence"] = change.delivery_id
            bodies[change.delivery_id] = body(change.event_type, change.occurred_at, content)
        else:
            bodies[change.delivery_id] = await render(rt, change)
    return bodies


async def render(rt: Runtime, change: Change) -> bytes:
    """The body of a delivery that is not a refund's change (module docstring)."""
    content: Any = json.loads(change.data) if change.data else {}
    if change.event_type == BREAK_OPENED and "id" in content:
        async with rt.db.read_session() as session:
            found = await session.get(ReconciliationBreak, UUID(content["id"]))
        if found is not None:
            content = msgspec.to_builtins(await break_out(rt, found))
    return body(change.event_type, change.occurred_at, content)
