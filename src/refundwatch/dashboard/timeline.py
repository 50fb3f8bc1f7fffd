"""A refund's story for its page, rendered the same way on load and live: every status change with its
source, each processor exchange (method, path, status, latency, scrubbed excerpt), webhooks, approvals,
and the refund's audit entries with their place in the hash chain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from jinja2 import Environment
from sqlalchemy import select

from refundwatch.db.models import AuditEntry, Refund, RefundEvent
from refundwatch.lib.exceptions import NotFound
from refundwatch.refunds.people import display_names
from refundwatch.refunds.services import get_refund
from refundwatch.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Step:
    event: RefundEvent
    exchange: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Story:
    refund: Refund
    steps: list[Step]
    audit: list[AuditEntry]
    connection: str
    names: dict[str, str]  # audit actor id -> the name people read (refunds.people)


def _exchange(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def story(rt: Runtime, refund_id: UUID) -> Story:
    refund, events = await get_refund(rt, refund_id)
    async with rt.db.read_session() as session:
        audit = list(
            (
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.target_type == "refund", AuditEntry.target_id == str(refund_id))
                    .order_by(AuditEntry.id)
                )
            ).all()
        )
        names = await display_names(session, ((a.actor_type, a.actor_id) for a in audit))
    conn = await rt.connections.by_id(refund.connection_id)
    return Story(
        refund=refund,
        steps=[Step(e, _exchange(e.exchange)) for e in events],
        audit=audit,
        connection=conn.name if conn else "?",
        names=names,
    )


async def render_timeline(rt: Runtime, env: Environment, refund_id: UUID) -> str | None:
    try:
        found = await story(rt, refund_id)
    except NotFound:
        return None
    return env.get_template("partials/refunds/_timeline.html").render({"story": found})
