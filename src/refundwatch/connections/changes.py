"""Changing a connection from the admin screens.

Non-secret settings (timeouts, health-check interval, rate limit, plain processor options such as
Adyen's merchant account) change at once, audited with their old and new values. A credential (any
secret field) is different: it decides where money moves, so a new value waits, encrypted, until a
second admin approves it, like a large refund. Only field names of secrets are ever shown or audited.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import select

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.connections.spec import (
    PROCESSOR_FIELDS,
    PROCESSOR_OPTIONAL_FIELDS,
    _call_timeout,
    _check_fields,
)
from refundwatch.db.engine import Database
from refundwatch.db.models import Connection, ConnectionChange
from refundwatch.lib.crypto import FieldCipher
from refundwatch.lib.exceptions import BadInput, Conflict, NotFound, PermissionDenied, ValidationFailed
from refundwatch.lib.identifiers import whole_number

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
MAX_SECRET = 4096


def secret_fields(processor: str) -> tuple[str, ...]:
    required, _ = PROCESSOR_FIELDS.get(processor, ((), ()))
    optional, _ = PROCESSOR_OPTIONAL_FIELDS.get(processor, ((), ()))
    return (*required, *optional)


def plain_fields(processor: str) -> tuple[str, ...]:
    _, required = PROCESSOR_FIELDS.get(processor, ((), ()))
    _, optional = PROCESSOR_OPTIONAL_FIELDS.get(processor, ((), ()))
    return (*required, *optional)


@dataclass(frozen=True, slots=True)
class Editable:
    """What the edit page shows: the settings, the plain options, and the secret field names."""

    connection: Connection
    options: dict[str, str]
    secrets: tuple[str, ...]
    plain: tuple[str, ...]
    pending: list[ConnectionChange]


async def editable(db: Database, cipher: FieldCipher, name: str) -> Editable:
    async with db.read_session() as session:
        row = await _connection(session, name)
        pending = list(
            await session.scalars(
                select(ConnectionChange)
                .where(ConnectionChange.connection_id == row.id, ConnectionChange.status == PENDING)
                .order_by(ConnectionChange.requested_at)
            )
        )
    blob = json.loads(cipher.decrypt(row.credentials_encrypted))
    return Editable(
        row, dict(blob["options"]), secret_fields(row.processor), plain_fields(row.processor), pending
    )


async def _connection(session: Any, name: str, *, lock: bool = False) -> Connection:
    query = select(Connection).where(Connection.name == name)
    row: Connection | None = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound(f"no connection {name!r}", code="unknown_connection")
    return row


def _whole(field: str, raw: str, maximum: int, *, blank_ok: bool = False) -> int | None:
    raw = raw.strip()
    if not raw and blank_ok:
        return None
    value = whole_number(raw, maximum)
    if value is None or value < 1:
        raise ValidationFailed(f"{field} must be a whole number from 1 to {maximum}", code="invalid_setting")
    return value


async def update_settings(
    db: Database, cipher: FieldCipher, name: str, form: dict[str, str], actor: Actor
) -> list[str]:
    """Apply the non-secret settings in ``form``; returns the names of the fields that changed."""
    async with db.session() as session:
        row = await _connection(session, name, lock=True)
        blob = json.loads(cipher.decrypt(row.credentials_encrypted))
        changes: dict[str, list[Any]] = {}
        wanted: dict[str, Any] = {}
        if "timeout_seconds" in form:
            seconds = _whole("timeout_seconds", form["timeout_seconds"], 300)
            try:  # the connections file's rule: below the worker's job timeout
                wanted["timeout_seconds"] = _call_timeout(name, seconds)
            except BadInput as exc:
                raise ValidationFailed(exc.message, code="invalid_setting") from None
        if "health_check_interval_seconds" in form:
            wanted["health_check_interval_seconds"] = _whole(
                "health_check_interval_seconds", form["health_check_interval_seconds"], 86_400
            )
        if "rate_limit_per_second" in form:
            wanted["rate_limit_per_second"] = _whole(
                "rate_limit_per_second", form["rate_limit_per_second"], 100_000, blank_ok=True
            )
        for field, value in wanted.items():
            if getattr(row, field) != value:
                changes[field] = [getattr(row, field), value]
                setattr(row, field, value)
        required = PROCESSOR_FIELDS[row.processor][1]
        for field in plain_fields(row.processor):
            key = f"option:{field}"
            if key not in form:
                continue
            value = form[key].strip()
            if not value and field in required:
                raise ValidationFailed(f"{field} cannot be empty", code="invalid_setting")
            if len(value) > 255:
                raise ValidationFailed(f"{field} is longer than 255 characters", code="invalid_setting")
            old = blob["options"].get(field)
            if (old or "") != value:
                changes[field] = [old, value or None]
                if value:
                    blob["options"][field] = value
                else:
                    blob["options"].pop(field, None)
        if not changes:
            return []
        if set(changes) & set(plain_fields(row.processor)):
            try:  # the adapter's own field checks, as for the connections file (e.g. PayPal's
                # webhook_verification must be certificate or api)
                _check_fields(name, row.processor, {**blob["secrets"], **blob["options"]})
            except BadInput as exc:
                raise ValidationFailed(exc.message, code="invalid_setting") from None
        row.credentials_encrypted = cipher.encrypt(json.dumps(blob, sort_keys=True))
        record(
            session,
            actor,
            actions.ADMIN_CONNECTION_UPDATE,
            target_type="connection",
            target_id=name,
            details={"changes": changes},
        )
        await session.commit()
    return sorted(changes)


async def request_credentials(
    db: Database,
    cipher: FieldCipher,
    name: str,
    values: dict[str, str],
    *,
    by: str,
    by_name: str,
    actor: Actor,
) -> ConnectionChange:
    """Keep new secret values as a pending change; nothing is applied yet."""
    given = {field: value.strip() for field, value in values.items() if value.strip()}
    async with db.session() as session:
        row = await _connection(session, name)
        unknown = sorted(set(given) - set(secret_fields(row.processor)))
        if unknown:
            raise ValidationFailed(
                f"not a secret of {row.processor}: {', '.join(unknown)}", code="invalid_setting"
            )
        if not given:
            raise ValidationFailed("enter at least one new secret value", code="invalid_setting")
        if any(len(value) > MAX_SECRET for value in given.values()):
            raise ValidationFailed(f"a secret is longer than {MAX_SECRET} characters", code="invalid_setting")
        blob = json.loads(cipher.decrypt(row.credentials_encrypted))
        try:  # the adapter's own field checks, as for the connections file (a key that cannot go into
            # a header, an Adyen hmac_key that is not hex): refused now, not found by every refund later
            _check_fields(name, row.processor, {**blob["options"], **blob["secrets"], **given})
        except BadInput as exc:
            raise ValidationFailed(exc.message, code="invalid_setting") from None
        change = ConnectionChange(
            connection_id=row.id,
            fields=",".join(sorted(given)),
            values_encrypted=cipher.encrypt(json.dumps(given, sort_keys=True)),
            status=PENDING,
            requested_by=by,
            requested_by_name=by_name,
            requested_at=dt.datetime.now(dt.UTC),
        )
        session.add(change)
        await session.flush()
        record(
            session,
            actor,
            actions.ADMIN_CONNECTION_CREDENTIALS_REQUESTED,
            target_type="connection",
            target_id=name,
            details={"change": str(change.id), "fields": sorted(given)},
        )
        await session.commit()
    return change


async def decide(
    db: Database,
    cipher: FieldCipher,
    change_id: UUID,
    *,
    approve: bool,
    by: str,
    by_name: str,
    reason: str | None,
    actor: Actor,
) -> ConnectionChange:
    """A second admin approves (the secrets are applied) or rejects a pending credential change."""
    async with db.session() as session:
        change = await session.scalar(
            select(ConnectionChange).where(ConnectionChange.id == change_id).with_for_update()
        )
        if change is None:
            raise NotFound("no such credential change", code="unknown_change")
        if change.status != PENDING:
            raise Conflict(f"this change was already {change.status}", code="change_decided")
        if change.requested_by == by:
            raise PermissionDenied(
                "another admin must decide on a credential change you asked for", code="same_person"
            )
        if not approve and not (reason or "").strip():
            raise ValidationFailed("give a reason to reject", code="reason_required")
        row = await session.scalar(
            select(Connection).where(Connection.id == change.connection_id).with_for_update()
        )
        assert row is not None  # foreign key
        if approve:
            blob = json.loads(cipher.decrypt(row.credentials_encrypted))
            blob["secrets"].update(json.loads(cipher.decrypt(change.values_encrypted)))
            row.credentials_encrypted = cipher.encrypt(json.dumps(blob, sort_keys=True))
        change.status = APPROVED if approve else REJECTED
        change.decided_by_name = by_name
        change.decided_at = dt.datetime.now(dt.UTC)
        change.reason = (reason or "").strip()[:500] or None
        change.values_encrypted = cipher.encrypt("{}")  # decided: the values are not kept twice
        record(
            session,
            actor,
            actions.ADMIN_CONNECTION_CREDENTIALS_APPROVED
            if approve
            else actions.ADMIN_CONNECTION_CREDENTIALS_REJECTED,
            target_type="connection",
            target_id=row.name,
            details={"change": str(change.id), "fields": change.fields.split(","), "reason": change.reason},
        )
        await session.commit()
    return change
