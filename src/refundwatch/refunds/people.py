"""People by name: staff by the name from their ID token, clients by their key's (or client's) name.

The audit log's actor id is a stable machine id and stays one: ``"<e-mail> (<subject>)"`` for staff,
``"<key name> (<key id>)"`` for API keys; filters and exports keep using it. What pages show instead is
its person's name. For staff that is the name recorded with their latest sign-in (the ID token's
``name``, else ``preferred_username``, else the e-mail); for clients it is the first part of the id.

``created_by`` on a refund holds a stable key too (``user:<subject>``, ``api_key:<id>``). The refund's
creation is audited in the same transaction, so who asked is read from that entry (found by the
indexed target id).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.db.models import AuditEntry
from refundwatch.runtime import Runtime

SIGN_IN = "user:auth:sign_in"


async def display_names(db: AsyncSession, actors: Iterable[tuple[str, str]]) -> dict[str, str]:
    """For each ``(actor type, actor id)``: the name a person reads, keyed by the actor id.

    Two indexed queries whatever the number of staff: the latest sign-in of each (by the
    ``(actor_id, id)`` index), then those entries' details.
    """
    pairs = set(actors)
    staff = sorted({actor_id for kind, actor_id in pairs if kind == "user"})
    signed_in: dict[str, str] = {}
    if staff:
        latest = (
            select(func.max(AuditEntry.id))
            .where(AuditEntry.action == SIGN_IN, AuditEntry.actor_id.in_(staff))
            .group_by(AuditEntry.actor_id)
        )
        rows = await db.execute(
            select(AuditEntry.actor_id, AuditEntry.details).where(AuditEntry.id.in_(latest))
        )
        for actor_id, details in rows:
            if name := _signed_in_name(details):
                signed_in[actor_id] = name
    return {actor_id: signed_in.get(actor_id) or _first_part(actor_id) for _, actor_id in pairs}


async def staff_named(db: AsyncSession, text: str) -> list[str]:
    """The actor ids of the staff whose name, as pages show it (their latest sign-in's), contains
    ``text``, ignoring case. Reads each person's latest sign-in (one row per person): the names are
    compared here, not in SQL, as the details are stored as JSON with its escapes."""
    needle = text.casefold()
    latest = select(func.max(AuditEntry.id)).where(AuditEntry.action == SIGN_IN).group_by(AuditEntry.actor_id)
    rows = await db.execute(select(AuditEntry.actor_id, AuditEntry.details).where(AuditEntry.id.in_(latest)))
    return sorted(
        actor_id for actor_id, details in rows if needle in (_signed_in_name(details) or "").casefold()
    )


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
        names = await display_names(db, ((kind, actor_id) for _, kind, actor_id in rows))
    return {ids[target]: (names[actor_id], kind) for target, kind, actor_id in rows if target in ids}


def _signed_in_name(details: str | None) -> str | None:
    try:
        name = json.loads(details or "{}").get("name")
    except (ValueError, AttributeError):
        return None
    return name.strip() if isinstance(name, str) and name.strip() else None


def _first_part(actor_id: str) -> str:
    """ "amy@example.test (c0ffee…)" -> "amy@example.test"; an actor id without a bracket stays as it is."""
    name, bracket, _ = actor_id.rpartition(" (")
    return name if bracket and name else actor_id
