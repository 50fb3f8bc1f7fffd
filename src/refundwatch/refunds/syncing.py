"""Which ``processing`` refunds to ask the processor about, and in what order.

A sync that learns nothing new does not touch the refund, so a due query ordered by ``updated_at``
handed out the same oldest batch every round and never reached the rest. Instead each round *claims*
its batch: one statement picks the refunds least recently synced (a never-synced one counts from its
``updated_at``, when it became ``processing``) and stamps ``last_synced_at = now`` on them, whatever
the sync then finds, even a failed read. The stamp sends them to the back of the line, so every
refund gets its turn. The claim is atomic, so workers running the same round at once take disjoint
batches (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer at a time), which spreads the
syncs across the fleet.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, bindparam, func, select, text, update
from sqlalchemy.sql.dml import ReturningUpdate

from refundwatch.db.tables import REFUNDS
from refundwatch.refunds.services import utcnow
from refundwatch.runtime import Runtime

# The same expression and predicate as the partial index ix_refunds_sync_due (migration 0010). The
# status is a literal, not a bind parameter, so both planners can match the partial index.
_TURN = func.coalesce(REFUNDS.c.last_synced_at, REFUNDS.c.updated_at)
_PROCESSING = text("refunds.status = 'processing'")
_WHEN = REFUNDS.c.updated_at.type


def _claim_statement(*, skip_locked: bool) -> ReturningUpdate[tuple[UUID]]:
    due = (
        select(REFUNDS.c.id)
        .where(_PROCESSING, _TURN < bindparam("cutoff", type_=_WHEN))  # noqa: SIM300 - _TURN is a column expression
        .order_by(_TURN)
        .limit(bindparam("batch"))
    )
    if skip_locked:  # rows another worker is claiming right now are its batch, not ours
        due = due.with_for_update(skip_locked=True)
    return (
        update(REFUNDS)
        .where(REFUNDS.c.id.in_(due.scalar_subquery()))
        # updated_at says when the refund last changed; being looked at is not a change.
        .values(last_synced_at=bindparam("now", type_=_WHEN), updated_at=REFUNDS.c.updated_at)
        .returning(REFUNDS.c.id)
    )


_CLAIM_POSTGRESQL = _claim_statement(skip_locked=True)
_CLAIM_SQLITE = _claim_statement(skip_locked=False)
_STAMP = (
    update(REFUNDS)
    .where(REFUNDS.c.id == bindparam("refund_id", type_=REFUNDS.c.id.type))
    .values(last_synced_at=bindparam("now", type_=_WHEN), updated_at=REFUNDS.c.updated_at)
)


async def claim_due_syncs(rt: Runtime, *, interval_seconds: int, batch: int) -> list[UUID]:
    """Take (and stamp) up to ``batch`` processing refunds not synced for ``interval_seconds``,
    least recently synced first. The caller enqueues a sync job for each."""
    now = utcnow()
    params: dict[str, Any] = {
        "cutoff": now - dt.timedelta(seconds=interval_seconds),
        "batch": batch,
        "now": now,
    }
    if rt.db.is_sqlite:

        def claim(conn: Connection) -> list[UUID]:
            return list(conn.execute(_CLAIM_SQLITE, params).scalars())

        return await rt.db.run_sqlite_write(claim)
    async with rt.db.autocommit_connection() as conn:  # one statement: atomic on its own
        return list((await conn.execute(_CLAIM_POSTGRESQL, params)).scalars())


async def stamp_synced(rt: Runtime, refund_id: UUID) -> None:
    """A sync forced by a person counts as this refund's turn too."""
    params = {"refund_id": refund_id, "now": utcnow()}
    if rt.db.is_sqlite:
        await rt.db.run_sqlite_write(lambda conn: conn.execute(_STAMP, params))
        return
    async with rt.db.autocommit_connection() as conn:
        await conn.execute(_STAMP, params)
