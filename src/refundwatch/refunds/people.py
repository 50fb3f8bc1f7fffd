"""Who asked for a refund, by name: staff by the name they signed in with, clients by their key's name.

``created_by`` holds a stable key (``user:<subject>``, ``api_key:<id>``), never a display name. The
refund's creation is audited in the same transaction with the actor as "<name> (<id>)", so the name is
read from that entry (found by the indexed target id), as it was when the refund was asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from sqlalchemy import select

from refundwatch.db.models import AuditEntry
from refundwatch.runtime import Runtime

_KINDS = {"api_key": "API key", "client": "API client"}


async def requesters(rt: Runtime, refund_ids: Iterable[UUID]) -> dict[UUID, tuple[str, str]]:
    """For each refund: (the name, what kind of actor), e.g. ("Amy Approver", "user")."""
    ids = {str(i): i for i in refund_ids}
    if not ids:
        return {}
    async with rt.db.read_session() as db:
        rows = await db.execute(
            select(AuditEntry.target_id, AuditEntry.actor_type, AuditEntry.actor_id).where(
                AuditEntry.target_id.in_(ids), AuditEntry.action.like("%:refund:create")
            )
        )
        return {ids[target]: (_name(actor_id), kind) for target, kind, actor_id in rows if target in ids}


def _name(actor_id: str) -> str:
    """ "Amy Approver (c0ffee…)" -> "Amy Approver"; an actor id without a bracket stays as it is."""
    name, bracket, _ = actor_id.rpartition(" (")
    return name if bracket and name else actor_id


def kind_label(kind: str) -> str:
    return _KINDS.get(kind, "")
