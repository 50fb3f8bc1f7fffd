"""Storing one delivery's verified events: all of them in one transaction, each beside its audit entry.

A processor such as Adyen batches up to a hundred notifications in one POST. One transaction for the
whole delivery (one multi-row insert, one multi-row audit insert, one commit) instead of one per item
is what keeps the web side of a notification cheap. A duplicate (the same connection and event id,
already stored by an earlier delivery or earlier in this one) is skipped by the unique constraint and
counted: acknowledged again, applied once.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, insert
from sqlalchemy.dialects import postgresql, sqlite
from uuid_utils.compat import uuid7

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import NewEntry
from refundwatch.db.tables import AUDIT, WEBHOOK_EVENTS
from refundwatch.gateways.base import WebhookEvent
from refundwatch.runtime import Runtime


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event now stored (committed) under ``id``, not yet applied."""

    id: UUID
    event: WebhookEvent


@dataclass(frozen=True, slots=True)
class Delivery:
    stored: list[StoredEvent]
    duplicates: int


def _insert_events(is_sqlite: bool) -> Any:
    dialect_insert = sqlite.insert if is_sqlite else postgresql.insert
    return (
        dialect_insert(WEBHOOK_EVENTS)
        .on_conflict_do_nothing(index_elements=["connection_id", "event_id"])
        .returning(WEBHOOK_EVENTS.c.id)
    )


@functools.cache
def _statements(is_sqlite: bool) -> tuple[Any, Any]:
    return _insert_events(is_sqlite), insert(AUDIT)


async def store_delivery(
    rt: Runtime,
    connection_id: UUID,
    connection_name: str,
    events: Sequence[tuple[bytes, WebhookEvent]],
    actor: Actor,
) -> Delivery:
    """Store every event of one delivery in one transaction; committed when this returns."""
    now = dt.datetime.now(dt.UTC)
    rows: list[dict[str, Any]] = []
    by_id: dict[UUID, WebhookEvent] = {}
    seen: set[str] = set()
    for payload, event in events:
        if event.event_id in seen:  # the same event twice in one delivery: stored once
            continue
        seen.add(event.event_id)
        row_id = uuid7()
        by_id[row_id] = event
        rows.append(
            {
                "id": row_id,
                "connection_id": connection_id,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "payload": payload.decode("utf-8", "replace"),
                "received_at": now,
                "processed_at": None,
                "outcome": None,
            }
        )
    if not rows:
        return Delivery([], len(events))

    def audit_rows(stored_ids: set[UUID]) -> list[dict[str, Any]]:
        return [
            NewEntry.of(
                actor,
                actions.WEBHOOK_ACCEPTED,
                target_type="webhook_event",
                target_id=by_id[row["id"]].event_id,
                details={"type": by_id[row["id"]].event_type, "connection": connection_name},
                at=now,
            ).columns()
            for row in rows
            if row["id"] in stored_ids
        ]

    insert_events, insert_audit = _statements(rt.db.is_sqlite)

    def write(conn: Connection) -> set[UUID]:
        stored_ids = {row.id for row in conn.execute(insert_events, rows)}
        if stored_ids:
            conn.execute(insert_audit, audit_rows(stored_ids))
        return stored_ids

    if rt.db.is_sqlite:
        stored_ids = await rt.db.run_sqlite_write(write)
    else:
        async with rt.db.write_connection() as conn:
            stored_ids = {row.id for row in await conn.execute(insert_events, rows)}
            if stored_ids:
                await conn.execute(insert_audit, audit_rows(stored_ids))
    stored = [StoredEvent(row["id"], by_id[row["id"]]) for row in rows if row["id"] in stored_ids]
    return Delivery(stored, len(events) - len(stored))
