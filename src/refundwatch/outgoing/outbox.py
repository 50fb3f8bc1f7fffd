"""Writing the outbox: one delivery per endpoint that wants a change, in the change's own transaction.

Each statement here is ``INSERT INTO webhook_deliveries SELECT … FROM webhook_endpoints WHERE <wants
it>``: with no endpoint registered it reads an empty table and writes nothing, so the refund hot paths
(``refunds.cas``, ``refunds.intake``) carry it at almost no cost; with endpoints it is one insert of
one row per endpoint that wants the change. On PostgreSQL it rides in the change's single statement
as one more data-modifying CTE, fed by the timeline entry's ``RETURNING id`` (an empty table costs
the statement next to nothing); on SQLite it runs right after the timeline entry in the same
transaction, and only when :func:`any_endpoint` finds one (the insert's own cost through SQLAlchemy,
some 70 µs, would show in the pipeline); in the ORM path (``refunds.services.apply``) it runs after
the timeline entry. Nothing reads a table by id ranges afterwards, so ids committing out of order on
PostgreSQL lose nothing: the worker takes whatever is pending.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    FromClause,
    String,
    and_,
    bindparam,
    case,
    insert,
    literal,
    literal_column,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import Select

from refundwatch.db.tables import DELIVERIES, ENDPOINTS
from refundwatch.outgoing.events import BREAK_OPENED, bit

COLUMNS = ("endpoint_id", "event_type", "refund_id", "event_id", "data", "occurred_at", "next_attempt_at")


def wants(event_type: str, connection_id: Any) -> ColumnElement[bool]:
    """Endpoints that want ``event_type`` for a change on ``connection_id`` (an expression)."""
    return and_(
        ENDPOINTS.c.enabled,
        ENDPOINTS.c.event_mask.op("&")(bit(event_type)) != 0,
        _on(connection_id),
    )


def _on(connection_id: Any) -> ColumnElement[bool]:
    return or_(ENDPOINTS.c.connection_id.is_(None), ENDPOINTS.c.connection_id == connection_id)


def _values(event_type: Any, *, refund_id: Any, event_id: Any, at: Any, data: Any = None) -> dict[str, Any]:
    return {
        "endpoint_id": ENDPOINTS.c.id,
        "event_type": event_type,
        "refund_id": refund_id,
        "event_id": event_id,
        "data": data if data is not None else literal(None, DELIVERIES.c.data.type),
        "occurred_at": at,
        "next_attempt_at": at,
    }


def _select(values: dict[str, Any], condition: ColumnElement[bool], source: FromClause | None) -> Select[Any]:
    query = select(*[value.label(name) for name, value in values.items()])
    if source is None:
        return query.where(condition)
    return query.select_from(source.join(ENDPOINTS, condition))


def refund_changed(
    event_types: Sequence[tuple[str, ColumnElement[bool] | None]],
    *,
    refund_id: Any,
    event_id: Any,
    connection_id: Any,
    at: Any,
    source: FromClause | None = None,
) -> Insert:
    """Deliveries for a refund's change: one per endpoint and each ``(event type, condition or None)``,
    numbered in the order given (a created refund's ``refund.created`` before its
    ``refund.pending_approval``). ``source``: the CTE the other expressions come from, if any."""
    kwargs = {"refund_id": refund_id, "event_id": event_id, "at": at}
    if len(event_types) == 1:
        ((event_type, when),) = event_types
        condition = wants(event_type, connection_id)
        values = _values(literal(event_type, String(64)), **kwargs)
        return insert(DELIVERIES).from_select(
            COLUMNS, _select(values, condition if when is None else and_(condition, when), source)
        )
    # Several types: the endpoints crossed with a rank per type, sorted, so ids follow the ranks. The
    # ranks are SQL literals: parameters inside a UNION would be typed text on PostgreSQL.
    ranks = union_all(
        *[select(literal_column(str(rank)).label("rank")) for rank in range(len(event_types))]
    ).subquery("ranks")
    per_rank = [
        and_(
            ranks.c.rank == literal_column(str(rank)),
            ENDPOINTS.c.event_mask.op("&")(literal_column(str(bit(event_type)))) != 0,
            *([when] if when is not None else []),
        )
        for rank, (event_type, when) in enumerate(event_types)
    ]
    names = case(
        {rank: literal(t, String(64)) for rank, (t, _) in enumerate(event_types)}, value=ranks.c.rank
    )
    values = _values(names, **kwargs)
    condition = and_(ENDPOINTS.c.enabled, _on(connection_id), or_(*per_rank))
    base = ranks if source is None else source.join(ranks, true())
    rows = _select(values, condition, base).order_by(ranks.c.rank, ENDPOINTS.c.id)
    return insert(DELIVERIES).from_select(COLUMNS, rows)


def param(column: str, key: str) -> Any:
    return bindparam(key, type_=DELIVERIES.c[column].type)


_ANY_ENDPOINT = "SELECT 1 FROM webhook_endpoints WHERE enabled LIMIT 1"


def any_endpoint(conn: Connection) -> bool:
    """SQLite, inside the change's write transaction: whether any endpoint could want a delivery. Read
    through the driver (a few microseconds, against some 70 for the insert through SQLAlchemy), so a
    refundwatch with no endpoints pays next to nothing on the hot path; the transaction holds the
    database, so the answer stays true until its commit."""
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw.execute(_ANY_ENDPOINT).fetchone() is not None


@functools.cache
def after_event(event_type: str) -> Insert:
    """The deliveries of one refund transition, once its timeline entry is written (SQLite and the ORM
    path). Parameters: ``o_refund_id``, ``o_event_id``, ``o_connection_id``, ``o_at``."""
    return refund_changed(
        [(event_type, None)],
        refund_id=param("refund_id", "o_refund_id"),
        event_id=param("event_id", "o_event_id"),
        connection_id=bindparam("o_connection_id", type_=ENDPOINTS.c.connection_id.type),
        at=param("occurred_at", "o_at"),
    )


def after_event_params(
    refund_id: UUID, event_id: int | None, connection_id: UUID, at: dt.datetime
) -> dict[str, Any]:
    return {"o_refund_id": refund_id, "o_event_id": event_id, "o_connection_id": connection_id, "o_at": at}


@functools.cache
def _other(event_type: str) -> Insert:
    values = _values(
        literal(event_type, String(64)),
        refund_id=literal(None, DELIVERIES.c.refund_id.type),
        event_id=literal(None, DELIVERIES.c.event_id.type),
        at=param("occurred_at", "o_at"),
        data=param("data", "o_data"),
    )
    condition = wants(event_type, bindparam("o_connection_id", type_=ENDPOINTS.c.connection_id.type))
    return insert(DELIVERIES).from_select(COLUMNS, _select(values, condition, None))


async def other_changes(
    session: AsyncSession, event_type: str, changes: Sequence[tuple[UUID | None, dict[str, Any]]]
) -> None:
    """Deliveries for changes that are not a refund's (a gateway going down, a break opened), in the
    caller's transaction: each ``(connection id, data)``, ``data`` being the payload's ``data``."""
    if not changes:
        return
    at = dt.datetime.now(dt.UTC)
    params = [
        {"o_connection_id": connection_id, "o_at": at, "o_data": json.dumps(data, default=str)}
        for connection_id, data in changes
    ]
    await session.execute(_other(event_type), params)


async def breaks_opened(session: AsyncSession, opened: Sequence[tuple[UUID, UUID | None]]) -> None:
    """``reconciliation.break_opened`` for each ``(break id, connection id)`` just inserted (the
    payload shows the break as the API lists it, read when first sent)."""
    await other_changes(session, BREAK_OPENED, [(cid, {"id": str(bid)}) for bid, cid in opened])
