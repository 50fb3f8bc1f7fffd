"""How long finished outgoing deliveries are kept: ``REFUNDWATCH_WEBHOOK_RETENTION_DAYS``.

A delivery that succeeded or was given up, older than that, is deleted with its attempts by the
worker's hourly prune, oldest first and a batch per transaction, so a large backlog never holds a
long write lock. Pending deliveries are never pruned, however old: they are still owed. Operators
can look at and re-send what is kept; a receiver that needs older events asks the API.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select

from refundwatch.db.models._outgoing import PENDING
from refundwatch.db.tables import DELIVERIES, DELIVERY_ATTEMPTS
from refundwatch.runtime import Runtime

BATCH = 2_000


async def prune(rt: Runtime, now: dt.datetime | None = None) -> int:
    """Delete finished deliveries older than the retention, with their attempts; returns how many."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=rt.settings.webhook_retention_days)
    oldest = (
        select(DELIVERIES.c.id)
        .where(DELIVERIES.c.status != PENDING, DELIVERIES.c.occurred_at < cutoff)
        .order_by(DELIVERIES.c.id)  # the primary key: old rows come first, the scan stops early
        .limit(BATCH)
    )
    pruned = 0
    while True:
        async with rt.db.session() as session:
            ids = list(await session.scalars(oldest))
            if not ids:
                return pruned
            # Attempts first: SQLite enforces no ON DELETE CASCADE unless foreign keys are switched on.
            await session.execute(delete(DELIVERY_ATTEMPTS).where(DELIVERY_ATTEMPTS.c.delivery_id.in_(ids)))
            await session.execute(delete(DELIVERIES).where(DELIVERIES.c.id.in_(ids)))
            await session.commit()
        pruned += len(ids)
