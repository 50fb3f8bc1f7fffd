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

from sqlalchemy import Connection, bindparam, insert, text
from sqlalchemy.dialects import sqlite
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


@functools.cache
def _sqlite_insert_events() -> Any:
    return (
        sqlite.insert(WEBHOOK_EVENTS)
        .on_conflict_do_nothing(index_elements=["connection_id", "event_id"])
        .returning(WEBHOOK_EVENTS.c.id)
    )


# PostgreSQL: the delivery as arrays, one statement of fixed shape (prepared once per connection, not
# rebuilt per delivery size): the events that are new, and an audit entry for each of them alone.
_PG_STORE = text(
    """
WITH input AS (
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:event_ids AS varchar[]), CAST(:event_types AS varchar[]),
        CAST(:payloads AS text[]), CAST(:details AS text[]), CAST(:hashes AS varchar[])
    ) AS i(id, event_id, event_type, payload, details, entry_hash)
), stored AS (
    INSERT INTO webhook_events (id, connection_id, event_id, event_type, payload, received_at)
    SELECT id, :connection_id, event_id, event_type, payload, :now FROM input
    ON CONFLICT (connection_id, event_id) DO NOTHING
    RETURNING id
), audit AS (
    INSERT INTO audit_log
        (at, actor_type, actor_id, action, target_type, target_id, details, ip, user_agent, entry_hash)
    SELECT :now, :actor_type, :actor_id, :action, 'webhook_event', input.event_id, input.details,
        :ip, :user_agent, input.entry_hash
    FROM input JOIN stored ON stored.id = input.id
)
SELECT id FROM stored
"""
).bindparams(
    bindparam("connection_id", type_=WEBHOOK_EVENTS.c.connection_id.type),
    bindparam("now", type_=WEBHOOK_EVENTS.c.received_at.type),
)


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

    entries = [
        NewEntry.of(
            actor,
            actions.WEBHOOK_ACCEPTED,
            target_type="webhook_event",
            target_id=by_id[row["id"]].event_id,
            details={"type": by_id[row["id"]].event_type, "connection": connection_name},
            at=now,
        ).columns()
        for row in rows
    ]
    if rt.db.is_sqlite:
        insert_events = _sqlite_insert_events()

        def write(conn: Connection) -> set[UUID]:
            stored_ids = {row.id for row in conn.execute(insert_events, rows)}
            if stored_ids:
                conn.execute(
                    insert(AUDIT),
                    [entry for row, entry in zip(rows, entries, strict=True) if row["id"] in stored_ids],
                )
            return stored_ids

        stored_ids = await rt.db.run_sqlite_write(write)
    else:
        params = {
            "ids": [row["id"] for row in rows],
            "event_ids": [row["event_id"] for row in rows],
            "event_types": [row["event_type"] for row in rows],
            "payloads": [row["payload"] for row in rows],
            "details": [entry["details"] for entry in entries],
            "hashes": [entry["entry_hash"] for entry in entries],
            "connection_id": connection_id,
            "now": now,
            "actor_type": actor.type,
            "actor_id": actor.id,
            "action": actions.WEBHOOK_ACCEPTED,
            "ip": entries[0]["ip"],
            "user_agent": entries[0]["user_agent"],
        }
        async with rt.db.autocommit_connection() as conn:  # one statement: atomic on its own
            stored_ids = {row.id for row in await conn.execute(_PG_STORE, params)}
    stored = [StoredEvent(row["id"], by_id[row["id"]]) for row in rows if row["id"] in stored_ids]
    return Delivery(stored, len(events) - len(stored))
