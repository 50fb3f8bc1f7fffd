"""Registering outgoing webhook endpoints: the rules behind the API (CONTRACT §4) and the admin pages.

Every change is audited in its own transaction (``{source}:webhook_endpoint:{verb}``, source ``api``
or ``admin``). The signing secret is shown once, when made (creation, rotation), and kept encrypted
like connection credentials. A URL is checked (``lib.egress``) whenever it is set: https outside
demo and test, and no private, loopback or link-local address unless allow-listed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.db.models import WebhookDelivery, WebhookEndpoint
from refundwatch.db.models._outgoing import PENDING
from refundwatch.lib.egress import MAX_URL, AllowList, resolve_target
from refundwatch.lib.exceptions import NotFound, ValidationFailed
from refundwatch.outgoing.events import EVENT_TYPES, mask_of, types_of
from refundwatch.outgoing.signing import new_secret
from refundwatch.runtime import Runtime

Url = Annotated[str, Meta(min_length=1, max_length=MAX_URL, examples=["https://returns.example.com/hooks"])]
Events = Annotated[
    list[str], Meta(min_length=1, max_length=len(EVENT_TYPES), examples=[["refund.succeeded"]])
]
Description = Annotated[str, Meta(max_length=500)]
DEFAULT_OVERLAP_HOURS = 24.0


class EndpointCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Url
    events: Events
    connection: str | None = None
    description: Description | None = None


class EndpointUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Only the fields sent change; ``connection: null`` removes the filter; ``enabled: true`` turns a
    disabled endpoint back on (its pending deliveries then go out at once, in order)."""

    url: Url | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    connection: str | UnsetType | None = UNSET
    description: Description | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET


class SecretRotation(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How long the previous secret keeps signing next to the new one (0 ends it now)."""

    overlap_hours: Annotated[float, Meta(ge=0, le=24 * 30)] = DEFAULT_OVERLAP_HOURS


class EndpointOut(msgspec.Struct):
    id: UUID
    url: str
    events: list[str]
    connection: str | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: dt.datetime | None
    failing_since: dt.datetime | None
    previous_secret_expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class EndpointWithSecret(EndpointOut):
    """An endpoint just created or given a new secret: ``secret`` is shown this once."""

    secret: str


class EndpointList(msgspec.Struct):
    data: list[EndpointOut]


def audit_action(source: str, verb: str) -> str:
    return actions.WEBHOOK_ENDPOINT.format(source=source, verb=verb)


async def _checked_url(rt: Runtime, url: str) -> str:
    settings = rt.settings
    await resolve_target(url, AllowList.parse(settings.webhook_allowed_hosts), allow_http=settings.is_dev)
    return url


async def _connection_id(rt: Runtime, name: str | None) -> UUID | None:
    if name is None:
        return None
    info = await rt.connections.by_name(name)
    if info is None:
        raise ValidationFailed(f"unknown connection {name!r}", code="unknown_connection")
    return info.id


async def endpoint_out(rt: Runtime, row: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=row.id,
        url=row.url,
        events=types_of(row.event_mask),
        connection=await rt.connections.name_of(row.connection_id),
        description=row.description,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        disabled_at=row.disabled_at,
        failing_since=row.failing_since,
        previous_secret_expires_at=row.previous_secret_expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _with_secret(rt: Runtime, row: WebhookEndpoint, secret: str) -> EndpointWithSecret:
    out = await endpoint_out(rt, row)
    return EndpointWithSecret(**msgspec.structs.asdict(out), secret=secret)


async def create_endpoint(
    rt: Runtime, data: EndpointCreate, *, actor: Actor, source: str, created_by: str
) -> EndpointWithSecret:
    mask = mask_of(data.events)
    url = await _checked_url(rt, data.url)
    connection_id = await _connection_id(rt, data.connection)
    secret = new_secret()
    async with rt.db.session() as session:
        row = WebhookEndpoint(
            url=url,
            event_mask=mask,
            connection_id=connection_id,
            description=data.description,
            enabled=True,
            secret_encrypted=rt.cipher.encrypt(secret),
            created_by=created_by,
        )
        session.add(row)
        await session.flush()
        details = {"url": url, "events": types_of(mask), "connection": data.connection}
        _audit(session, actor, audit_action(source, "create"), row.id, details)
        await session.commit()
    return await _with_secret(rt, row, secret)


def _audit(
    session: AsyncSession, actor: Actor, action: str, endpoint_id: UUID, details: dict[str, Any]
) -> None:
    record(
        session, actor, action, target_type="webhook_endpoint", target_id=str(endpoint_id), details=details
    )


async def _locked(session: AsyncSession, endpoint_id: UUID) -> WebhookEndpoint:
    row = await session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).with_for_update()
    )
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", code="webhook_endpoint_not_found")
    return row


async def list_endpoints(rt: Runtime) -> list[EndpointOut]:
    async with rt.db.read_session() as session:
        rows = list(await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
    return [await endpoint_out(rt, row) for row in rows]


async def get_endpoint(rt: Runtime, endpoint_id: UUID) -> EndpointOut:
    async with rt.db.read_session() as session:
        row = await session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", code="webhook_endpoint_not_found")
    return await endpoint_out(rt, row)


async def update_endpoint(
    rt: Runtime, endpoint_id: UUID, changes: EndpointUpdate, *, actor: Actor, source: str
) -> EndpointOut:
    """Change what was sent; enabling or disabling is audited as such (``enable`` / ``disable``)."""
    values: dict[str, Any] = {}
    if not isinstance(changes.events, UnsetType):
        values["event_mask"] = mask_of(changes.events)
    if not isinstance(changes.url, UnsetType):
        values["url"] = await _checked_url(rt, changes.url)
    if not isinstance(changes.connection, UnsetType):
        values["connection_id"] = await _connection_id(rt, changes.connection)
    if not isinstance(changes.description, UnsetType):
        values["description"] = changes.description
    async with rt.db.session() as session:
        row = await _locked(session, endpoint_id)
        for name, value in values.items():
            setattr(row, name, value)
        if values:
            details = {k: v for k, v in msgspec.structs.asdict(changes).items() if k != "enabled"}
            details = {k: v for k, v in details.items() if not isinstance(v, UnsetType)}
            _audit(session, actor, audit_action(source, "update"), row.id, details)
        if not isinstance(changes.enabled, UnsetType) and changes.enabled != row.enabled:
            await _set_enabled(session, row, enabled=changes.enabled, actor=actor, source=source)
        row.updated_at = dt.datetime.now(dt.UTC)
        await session.commit()
    return await endpoint_out(rt, row)


async def _set_enabled(
    session: AsyncSession, row: WebhookEndpoint, *, enabled: bool, actor: Actor, source: str, reason: str = ""
) -> None:
    if enabled:
        await _resume(session, row.id)
    row.enabled = enabled
    row.failing_since = None  # a fresh start either way: failures before do not count towards disabling
    row.disabled_at = None if enabled else dt.datetime.now(dt.UTC)
    row.disabled_reason = None if enabled else (reason or f"disabled by {actor.id}")
    verb = "enable" if enabled else "disable"
    _audit(
        session, actor, audit_action(source, verb), row.id, {"url": row.url, "reason": row.disabled_reason}
    )


async def _resume(session: AsyncSession, endpoint_id: UUID) -> None:
    """An endpoint turned back on: its pending deliveries are due now. Those that were being retried
    kept their backoff, hours ahead for an endpoint disabled after failing for hours; nothing is wrong
    with them now that a person says the receiver is back. Per-refund order still holds: the claim
    takes a refund's delivery only when no earlier one is pending, and equal times go in id order."""
    now = dt.datetime.now(dt.UTC)
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
    )


async def set_enabled(
    rt: Runtime, endpoint_id: UUID, enabled: bool, *, actor: Actor, source: str, reason: str = ""
) -> EndpointOut:
    """Turn an endpoint on (its pending deliveries go out) or off (nothing is sent or queued for it)."""
    async with rt.db.session() as session:
        row = await _locked(session, endpoint_id)
        if row.enabled != enabled:
            await _set_enabled(session, row, enabled=enabled, actor=actor, source=source, reason=reason)
            row.updated_at = dt.datetime.now(dt.UTC)
            await session.commit()
    return await endpoint_out(rt, row)


async def rotate_secret(
    rt: Runtime, endpoint_id: UUID, *, actor: Actor, source: str, overlap_hours: float = DEFAULT_OVERLAP_HOURS
) -> EndpointWithSecret:
    """A new signing secret, shown once; the current one keeps signing next to it for
    ``overlap_hours`` (deliveries carry both signatures), so the receiver can switch in its own time."""
    secret = new_secret()
    now = dt.datetime.now(dt.UTC)
    async with rt.db.session() as session:
        row = await _locked(session, endpoint_id)
        row.previous_secret_encrypted = row.secret_encrypted if overlap_hours > 0 else None
        row.previous_secret_expires_at = (
            now + dt.timedelta(hours=overlap_hours) if overlap_hours > 0 else None
        )
        row.secret_encrypted = rt.cipher.encrypt(secret)
        row.updated_at = now
        _audit(
            session, actor, audit_action(source, "rotate_secret"), row.id, {"overlap_hours": overlap_hours}
        )
        await session.commit()
    return await _with_secret(rt, row, secret)


async def delete_endpoint(rt: Runtime, endpoint_id: UUID, *, actor: Actor, source: str) -> None:
    """Remove the endpoint, its deliveries and their attempts (the audit entry stays)."""
    async with rt.db.session() as session:
        row = await _locked(session, endpoint_id)
        _audit(session, actor, audit_action(source, "delete"), row.id, {"url": row.url})
        await session.delete(row)
        await session.commit()
