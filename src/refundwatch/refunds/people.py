"""Who asked for a refund, by name: staff by the name from their ID token, clients by their key's name.

``created_by`` holds a stable key (``user:<subject>``, ``api_key:<id>``), never a display name. The
refund's creation is audited in the same transaction with the actor as "<who> (<id>)", so the name is
read from that entry (found by the indexed target id). For staff, "<who>" is their e-mail when they have
one; the name from their ID token is recorded with their latest sign-in, and preferred.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import select

from refundwatch.db.models import AuditEntry
from refundwatch.runtime import Runtime

SIGN_IN = "user:auth:sign_in"


async def requesters(rt: Runtime, refund_ids: Iterable[UUID]) -> dict[UUID, tuple[str, str]]:
    """For each refund: (the name, what kind of actor), e.g. ("Amy Approver", "user")."""
    ids = {str(i): i for i in refund_ids}
    if not ids:
        return {}
    async with rt.db.read_session() as db:
        rows = (
            await db.execute(
                select(AuditEntry.target_id, AuditEntry.actor_type, AuditEntry.actor_id).where(
                    AuditEntry.target_id.in_(ids), AuditEntry.action.like("%:refund:create")
                )
            )
        ).all()
        staff = {actor_id for _, kind, actor_id in rows if kind == "user"}
        names: dict[str, str] = {}
        for actor_id in staff:  # a handful per page; sign-ins are found through the action's index
            details = await db.scalar(
                select(AuditEntry.details)
                .where(AuditEntry.action == SIGN_IN, AuditEntry.actor_id == actor_id)
                .order_by(AuditEntry.id.desc())
                .limit(1)
            )
            if name := _signed_in_name(details):
                names[actor_id] = name
    return {
        ids[target]: (names.get(actor_id) or _name(actor_id), kind)
        for target, kind, actor_id in rows
        if target in ids
    }


def _signed_in_name(details: str | None) -> str | None:
    try:
        name = json.loads(details or "{}").get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name.strip() else None


def _name(actor_id: str) -> str:
    """ "amy@example.test (c0ffee…)" -> "amy@example.test"; an actor id without a bracket stays as it is."""
    name, bracket, _ = actor_id.rpartition(" (")
    return name if bracket and name else actor_id
