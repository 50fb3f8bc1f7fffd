"""Storing one delivery's verified events: all of them at once, each beside its audit entry.

A processor such as Adyen batches notifications in one POST. One write for the whole delivery (on
PostgreSQL one statement of fixed shape, on SQLite one transaction) instead of one per item is what
keeps the web side of a notification cheap. A duplicate (the same connection and event id, stored by
an earlier delivery or earlier in this one) is skipped by the unique constraint: acknowledged again,
applied once.
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
from refundwatch.refunds.cas import NewWebhook
from refundwatch.runtime import Runtime


@dataclass(frozen=True, slots=True)
class NewRow:
    """One event of the delivery, with the row id and audit entry it is stored under."""

    event: WebhookEvent
    row: NewWebhook


def new_rows(
    connection_id: UUID,
    connection_name: str,
    events: Sequence[tuple[bytes, WebhookEvent]],
    actor: Actor,
    now: dt.datetime,
) -> list[NewRow]:
    """The delivery's events as rows to store; the same event twice in one delivery is stored once."""
    rows: dict[str, NewRow] = {}
    for payload, event in events:
        if event.event_id in rows:
            continue
        accepted = NewEntry.of(
            actor,
            actions.WEBHOOK_ACCEPTED,
            target_type="webhook_event",
            target_id=event.event_id,
            details={"type": event.event_type, "connection": connection_name},
            at=now,
        ).columns()
        rows[event.event_id] = NewRow(
            event,
            NewWebhook(
                id=uuid7(),
                connection_id=connection_id,
                event_id=event.event_id,
                event_type=event.event_type,
                payload=payload.decode("utf-8", "replace"),
                accepted=accepted,
            ),
        )
    return list(rows.values())


@functools.cache
def _sqlite_insert_events() -> Any:
    return (
        sqlite.insert(WEBHOOK_EVENTS)
        .on_conflict_do_nothing(index_elements=["connection_id", "event_id"])
        .returning(WEBHOOK_EVENTS.c.id)
    )


def store_in(conn: Connection, rows: Sequence[NewRow], now: dt.datetime) -> set[UUID]:
    """SQLite: store ``rows`` inside the caller's write transaction; returns the ids newly stored."""
    values = [
        {
            "id": r.row.id,
            "connection_id": r.row.connection_id,
            "event_id": r.row.event_id,
            "event_type": r.row.event_type,
            "payload": r.row.payload,
            "received_at": now,
            "processed_at": None,
            "outcome": None,
        }
        for r in rows
    ]
    stored = {row.id for row in conn.execute(_sqlite_insert_events(), values)} if values else set()
    if stored:
        conn.execute(insert(AUDIT), [r.row.accepted for r in rows if r.row.id in stored])
    return stored


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


async def store_pg(rt: Runtime, rows: Sequence[NewRow], now: dt.datetime) -> set[UUID]:
    """PostgreSQL: store ``rows`` in one statement (atomic on its own); returns the ids newly stored."""
    if not rows:
        return set()
    first = rows[0].row.accepted
    params = {
        "ids": [r.row.id for r in rows],
        "event_ids": [r.row.event_id for r in rows],
        "event_types": [r.row.event_type for r in rows],
        "payloads": [r.row.payload for r in rows],
        "details": [r.row.accepted["details"] for r in rows],
        "hashes": [r.row.accepted["entry_hash"] for r in rows],
        "connection_id": rows[0].row.connection_id,
        "now": now,
        "actor_type": first["actor_type"],
        "actor_id": first["actor_id"],
        "action": first["action"],
        "ip": first["ip"],
        "user_agent": first["user_agent"],
    }
    async with rt.db.autocommit_connection() as conn:
        return {row.id for row in await conn.execute(_PG_STORE, params)}


_PG_STORED = text("SELECT id FROM webhook_events WHERE id = ANY(CAST(:ids AS uuid[]))")


async def stored_among(rt: Runtime, ids: Sequence[UUID]) -> set[UUID]:
    """PostgreSQL: which of these webhook event rows exist."""
    if not ids:
        return set()
    return {row.id for row in await rt.db.fetch_all(_PG_STORED, {"ids": list(ids)})}
