"""Processor webhooks: verify, store raw (unique per connection and event), commit, then apply.

A delivery's events are stored in one transaction (webhooks.storing). The common confirming event is
then applied at once (webhooks.fastpath); every other one is enqueued and applied by the worker, in
the same transaction that marks the stored event processed. Either way a duplicate delivery or a
re-run job changes nothing twice. An event that announces settlement data (``settlement_ref``) queues
its pull (``reconciliation.pulling``) after the commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor, processor_actor
from refundwatch.audit.services import record
from refundwatch.db.models import Refund
from refundwatch.db.models import WebhookEvent as StoredEvent
from refundwatch.gateways.base import (
    Credentials,
    Gateway,
    RemoteVerifier,
    WebhookEvent,
    WebhookItem,
    WebhookVerificationError,
    WebhookVerificationUnavailable,
)
from refundwatch.gateways.registry import get_gateway
from refundwatch.jobs import enqueue
from refundwatch.lib.exceptions import AuthenticationFailed, NotFound, Unavailable, ValidationFailed
from refundwatch.reconciliation.pulling import enqueue_pull
from refundwatch.refunds import attempts
from refundwatch.refunds.outcome_log import log_refund
from refundwatch.refunds.outcomes import TRIGGER_FOR
from refundwatch.refunds.services import apply
from refundwatch.refunds.states import Source, Status, Transition, Trigger
from refundwatch.runtime import Runtime
from refundwatch.webhooks import fastpath, rejections, replays
from refundwatch.webhooks.storing import new_rows

log = logging.getLogger(__name__)
PROCESS_JOB = "process_webhook_event"


@dataclass(frozen=True, slots=True)
class Receipt:
    stored: int
    duplicates: int
    refused: int = 0
    ack: str | None = None  # the exact answer body the processor expects (Capabilities.webhook_ack)


async def _reject(rt: Runtime, connection: str, reason: str, actor: Actor) -> None:
    """Count a rejected delivery in Redis, audited per minute by the worker (webhooks.rejections);
    only when Redis cannot take it, audit it here. Never let this bookkeeping hide the rejection."""
    if not await rejections.note_rejection(rt, connection, reason, actor.ip):
        await _audit_refusal(rt, actions.WEBHOOK_REJECTED, connection, reason, actor)


async def _audit_refusal(rt: Runtime, action: str, connection: str, reason: str, actor: Actor) -> None:
    try:
        async with rt.db.session() as session:
            record(
                session,
                actor,
                action,
                target_type="connection",
                target_id=connection,
                details={"reason": reason},
            )
            await session.commit()
    except Exception:
        log.warning("could not record a refused webhook for %s", connection, exc_info=True)


# The refund columns a report writes its words into, sized as the columns are (a currency is compared,
# never stored from the report: 16 is ample for any code and for the message naming a wrong one).
_TEXT_LIMITS = {
    "raw_status": Refund.gateway_status.type.length,
    "processor_code": Refund.processor_code.type.length,
    "failure_message": Refund.error_message.type.length,
    "currency": 16,
}
# The ids a report is looked up by (refund_id only ever as a UUID, so any text will do).
_IDS = ("gateway_refund_id", "idempotency_key")


def _readable(value: str) -> bool:
    """Text every database can store: valid UTF-8 (no lone surrogates) without NUL characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _clean(value: str, limit: int) -> str:
    """A processor's words made storable: NUL and lone surrogates replaced, cut to the column."""
    text = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text[:limit]


def storable(event: WebhookEvent) -> WebhookEvent:
    """A signed event is still outside input. Its ids must fit our columns and be text the database
    can store (ValueError otherwise: the event is malformed); its descriptive words (status, failure
    reason, processor code) are made storable rather than refused, so a report that money moved is
    never lost to the way it is worded. Both paths, the web process's and the worker's, apply this."""
    for name, value, limit in (("id", event.event_id, 255), ("type", event.event_type, 128)):
        if not value or len(value) > limit:
            raise ValueError(f"event {name} must be 1 to {limit} characters")
        if not _readable(value):
            raise ValueError(f"event {name} is not valid text")
    for name in _IDS:
        value = getattr(event, name)
        if value is not None and (len(value) > 255 or not _readable(value)):
            raise ValueError(f"{name} is not an id of at most 255 characters of valid text")
    if event.settlement_ref is not None and not _readable(event.settlement_ref):  # a URL: no column
        raise ValueError("settlement_ref is not valid text")
    changes: dict[str, Any] = {}
    for name, limit in _TEXT_LIMITS.items():
        value = getattr(event, name)
        if isinstance(value, str) and (cleaned := _clean(value, limit)) != value:
            changes[name] = cleaned
    return dataclasses.replace(event, **changes) if changes else event


async def _verify(
    rt: Runtime, gateway: Gateway, creds: Credentials, headers: Mapping[str, str], body: bytes
) -> list[WebhookItem]:
    """The gateway's verification: in place, or, where it needs requests (a certificate to fetch, the
    processor's verification API), on the shared client under a deadline, so a slow host cannot hold
    the delivery open. Running out of time is no verdict (``WebhookVerificationUnavailable``): the
    delivery is refused, and the processor re-sends it."""
    if not gateway.capabilities.verifies_remotely:
        return gateway.verify_items(creds, headers, body)
    limit = rt.settings.webhook_verify_timeout_seconds
    try:
        async with asyncio.timeout(limit):
            # The capability is the gateway's word that it is a RemoteVerifier.
            remote = cast(RemoteVerifier, gateway)
            return await remote.verify_items_remote(rt.require_http(), creds, headers, body)
    except TimeoutError:
        raise WebhookVerificationUnavailable(f"verification did not finish within {limit:g} s") from None


async def receive(
    rt: Runtime,
    connection_name: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    ip: str | None,
    user_agent: str | None,
) -> Receipt:
    actor = Actor("processor", connection_name, ip, user_agent)
    conn = await rt.connections.by_name(connection_name)
    if conn is None:
        await rejections.note_unknown(rt, ip)
        raise NotFound(f"no connection {connection_name!r}", code="unknown_connection")
    try:
        gateway = get_gateway(conn.processor)
    except LookupError:  # a connection the file may name (square, braintree) before its adapter exists
        unsupported = f"{conn.processor} webhooks cannot be verified: the processor is not supported yet"
        await _reject(rt, connection_name, unsupported, actor)
        message = f"webhook signature rejected: {unsupported}"
        raise AuthenticationFailed(message, code="invalid_signature") from None
    try:
        items = await _verify(rt, gateway, conn.credentials, headers, body)
    except WebhookVerificationUnavailable as exc:
        # Not the sender's fault: audited, not counted towards its rejections (a certificate host's
        # outage would otherwise get the processor itself refused for a while once it recovers).
        await _audit_refusal(rt, actions.WEBHOOK_UNVERIFIED, connection_name, str(exc), actor)
        raise Unavailable(
            f"the webhook signature could not be checked now: {exc}", code="verification_unavailable"
        ) from None
    except WebhookVerificationError as exc:
        await _reject(rt, connection_name, str(exc), actor)
        raise AuthenticationFailed(f"webhook signature rejected: {exc}", code="invalid_signature") from None
    except ValueError as exc:
        await _reject(rt, connection_name, f"malformed: {exc}", actor)
        raise ValidationFailed(f"malformed webhook body: {exc}", code="malformed_webhook") from None
    items = await replays.refuse_reused(rt, connection_name, items)
    # Items are verified one by one where the processor signs them one by one (Adyen): a bad item is
    # refused and audited, and the others are still applied.
    refused = [item for item in items if item.error is not None]
    for item in refused:
        await _reject(rt, connection_name, str(item.error), actor)
    if refused and len(refused) == len(items):
        reason = refused[0].error
        raise AuthenticationFailed(f"webhook signature rejected: {reason}", code="invalid_signature")
    events: list[tuple[bytes, WebhookEvent]] = []
    malformed: list[str] = []
    for item in items:
        if item.error is not None:
            continue
        try:  # one item that cannot be read is refused alone, like one with a bad signature
            parsed = [storable(event) for event in gateway.parse_webhook(item.payload)]
        except ValueError as exc:
            malformed.append(str(exc))
            await _reject(rt, connection_name, f"malformed: {exc}", actor)
            continue
        events.extend((item.payload, event) for event in parsed)
    if malformed and not events:
        raise ValidationFailed(f"malformed webhook body: {malformed[0]}", code="malformed_webhook")
    now = dt.datetime.now(dt.UTC)
    rows = new_rows(conn.id, conn.name, events, actor, now)
    # The common case is applied at once; every other stored event goes to the worker's general path.
    stored, applied = await fastpath.store_and_apply(rt, conn.id, conn.name, rows, now)
    for new in rows:
        if new.row.id in stored and new.row.id not in applied:
            await enqueue_processing(rt, new.row.id)
    return Receipt(len(stored), len(events) - len(stored), len(refused), gateway.capabilities.webhook_ack)


async def enqueue_processing(rt: Runtime, event_id: UUID) -> None:
    if rt.redis is None:
        return
    try:
        await enqueue(rt.redis, PROCESS_JOB, str(event_id), job_id=f"webhook:{event_id}")
    except Exception:
        log.warning("could not enqueue webhook event %s", event_id, exc_info=True)


async def _find_refund(
    session: AsyncSession, connections: Sequence[UUID], event: WebhookEvent
) -> Refund | None:
    """The refund an event is about, made through the receiving connection or one reaching the same
    processor account (``connections``: ``ConnectionCache.siblings``)."""
    if event.refund_id:
        try:
            refund_id = UUID(event.refund_id)
        except ValueError:
            refund_id = None
        if refund_id is not None:
            refund = await session.scalar(
                select(Refund)
                .where(Refund.id == refund_id, Refund.connection_id.in_(connections))
                .with_for_update()
            )
            if refund is not None:
                return refund
    if event.gateway_refund_id:
        found: Refund | None = await session.scalar(
            select(Refund)
            .where(Refund.connection_id.in_(connections), Refund.gateway_refund_id == event.gateway_refund_id)
            .with_for_update()
        )
        if found is None:  # an earlier attempt's processor refund: its report still belongs on the timeline
            found = await attempts.refund_of_attempt(session, connections, event.gateway_refund_id)
        return found
    return None


async def process_event(rt: Runtime, stored_id: UUID) -> str:
    async with rt.db.session() as session:
        row = await session.scalar(select(StoredEvent).where(StoredEvent.id == stored_id).with_for_update())
        if row is None:
            return "missing"
        if row.processed_at is not None:
            return f"already processed: {row.outcome}"
        conn = await rt.connections.by_id(row.connection_id)
        if conn is None:
            return "connection missing"
        outcomes: list[str] = []
        reviews: list[Refund] = []
        pulls: list[str] = []
        connections = await rt.connections.siblings(conn.id)
        for parsed in get_gateway(conn.processor).parse_webhook(row.payload.encode()):
            try:  # stored before its words were made storable on receipt: the same here
                event = storable(parsed)
            except ValueError as exc:
                outcomes.append(f"{parsed.event_type[:64]}: unreadable: {exc}")
                continue
            if event.settlement_ref:  # settlement data is ready: the worker pulls it, after commit
                pulls.append(event.settlement_ref)
                outcomes.append(f"{event.event_type}: settlement pull queued")
                continue
            outcomes.append(await _apply_event(session, connections, conn.name, event, reviews))
        row.processed_at = dt.datetime.now(dt.UTC)
        row.outcome = "; ".join(outcomes)[:255]
        await session.commit()
    for refund in reviews:  # a person must decide: one outcome line each (refunds.outcome_log)
        await log_refund(rt, refund)
    for ref in pulls:  # once per connection and ref, however often announced (reconciliation.pulling)
        await enqueue_pull(rt, conn.id, ref)
    return row.outcome or ""


async def _apply_event(
    session: AsyncSession,
    connections: Sequence[UUID],
    connection_name: str,
    event: WebhookEvent,
    reviews: list[Refund],
) -> str:
    if event.status is None:
        return f"{event.event_type}: not a refund status change"
    refund = await _find_refund(session, connections, event)
    if refund is None:
        return f"{event.event_type}: no matching refund"
    trigger = TRIGGER_FOR[event.status]
    detail = fastpath.report_detail(event)
    mismatch = (event.amount is not None and event.amount != refund.amount) or (
        event.currency is not None and event.currency.upper() != refund.currency
    )
    if mismatch:
        trigger = Trigger.NEEDS_REVIEW
        detail += f" — reported {event.amount} {event.currency}, expected {refund.amount} {refund.currency}"
    other = await attempts.earlier_attempt(
        session,
        refund,
        key=event.idempotency_key,
        gateway_refund_id=event.gateway_refund_id,
    )
    if other is not None:
        await attempts.record_stale(
            session, refund, trigger, source=Source.WEBHOOK, detail=f"{detail} — {other}"
        )
        return f"{event.event_type}: about another attempt ({refund.status})"
    fields = fastpath.report_fields(event, trigger)
    if event.gateway_refund_id and not refund.gateway_refund_id:
        fields["gateway_refund_id"] = event.gateway_refund_id
    decision = await apply(
        session,
        refund,
        trigger,
        source=Source.WEBHOOK,
        actor=processor_actor(connection_name),
        detail=detail,
        **fields,
    )
    if isinstance(decision, Transition) and decision.after is Status.MANUAL_REVIEW:
        reviews.append(refund)
    return f"{event.event_type}: {refund.status} ({getattr(decision, 'name', 'moved')})"


async def unprocessed(rt: Runtime, *, grace_seconds: int, limit: int = 1000) -> list[UUID]:
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=grace_seconds)
    async with rt.db.read_session() as session:
        rows = await session.scalars(
            select(StoredEvent.id)
            .where(StoredEvent.processed_at.is_(None), StoredEvent.received_at <= cutoff)
            .order_by(StoredEvent.received_at)
            .limit(limit)
        )
        return list(rows)
