"""The Checkout.com endpoints under ``/checkout``, over the shared store, faults and webhook sender.

- ``POST /payments/{id}/refunds``: ``202 {action_id, reference, _links}``, accepted only. The refundable
  balance is enforced: nothing left → 403 (empty body, "Refund not allowed"); more than is left → 422
  ``refund_amount_exceeds_balance``; unknown payment → 404. No ``amount``: the whole rest.
- ``Cko-Idempotency-Key``: a 202 is remembered for ``idempotency_retention_seconds`` (default 24 h)
  per secret key, and the same key again answers the same status and body and executes nothing. Only
  a 202 that reached the client is remembered, as Checkout.com keeps keys only for 2xx answers: a 4xx
  is not, and neither is a request whose answer was lost (``timeout_rate``, ``reset_rate`` after
  executing, and ``executed_error_share`` of the ``error_rate`` 5xx answers, which come after the
  refund executed): the same key again executes again, a second refund. While a request with a key is
  being processed, the same key answers 409 (empty body).
- ``GET /payments/{id}`` (status, balances), ``GET /payments/{id}/actions`` (``resources``).
- ``GET /event-types`` (the previous platform's, and the lightest authenticated call: health checks) and
  ``GET /workflows/event-types`` (the current platform's).

Authentication: ``Authorization: Bearer sk_…`` (current platform) or the bare key (previous platform),
either form for a known key: with a connections file, a connection's ``secret_key``; without one, any
key starting ``sk_``. Otherwise 401 with an empty body.

Life of a refund (the shared plan, ``faults.plan_refund``): after ``settle_ms`` it is approved
(``payment_refunded``) or, ``fail_later_rate`` of the refunds planned pending, declined
(``payment_refund_declined``); ``pending_rate`` of refunds announce ``payment_refund_pending`` first.
``fail_later_rate`` of the others are approved and, ``settle_ms`` later, declined after all
(``payment_refund_declined``; ledger ``failed``, or ``reversed`` for ``reversal_rate`` of them: Checkout.com
names both the same). Webhooks: ``notifications``.

Implemented from ``specs/checkout`` (Checkout.com's API reference), its documentation and checkout-sdk
4.8.1; nothing here comes from refundwatch's Checkout.com adapter (STYLE rule 12).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Request, Router, get, post
from litestar.types import ASGIApp

from ..asgi import (
    BodyTooLargeError,
    Reply,
    back_faults,
    decode_json,
    front_faults,
    json_reply,
    maybe_mangled,
    read_body,
)
from ..connections import Connections
from ..faults import Faults, Outcome, plan_refund
from ..state import Payment, Refund, SavedResponse, Store
from ..webhooks import WebhookSender
from .notifications import PROCESSOR, Notifier
from .resources import actions, event_body, payment_resource, refund_accepted
from .wire import (
    DECLINES,
    EVENT_TYPES,
    IN_PROGRESS,
    NOT_ALLOWED,
    NOT_FOUND,
    UNAUTHORIZED,
    CheckoutError,
    RefundAsk,
    invalid,
    new_id,
    parse_refund_request,
    request_id,
)

__all__ = ["PROCESSOR", "CheckoutSimulator"]

_CREATE_ENDPOINT = "POST /payments/{id}/refunds"
_BODY_LIMIT = 1 << 20
# Status changes of a refund, and the event each one sends.
_EVENTS: dict[tuple[str, str], str] = {
    ("pending", "succeeded"): "payment_refunded",
    ("pending", "failed"): "payment_refund_declined",
    ("succeeded", "failed"): "payment_refund_declined",
    ("succeeded", "reversed"): "payment_refund_declined",
}
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _Incoming:
    """The request headers Checkout.com looks at, and this request's ``Cko-Request-Id``."""

    authorization: str | None = None
    idempotency_key: str | None = None
    request: str = field(default_factory=request_id)

    @classmethod
    def from_request(cls, request: Request[Any, Any, Any]) -> _Incoming:
        incoming = cls()
        for raw_name, value in request.scope["headers"]:
            name = raw_name.lower()
            if name == b"authorization":
                incoming.authorization = value.decode("latin-1")
            elif name == b"cko-idempotency-key":
                incoming.idempotency_key = value.decode("latin-1") or None
        return incoming

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"cko-request-id", self.request.encode())]

    def reply(self, status: int, payload: Any) -> Reply:
        if payload is None:
            return Reply(status, b"", self.headers())
        return json_reply(status, payload, self.headers())

    def error(self, exc: CheckoutError) -> Reply:
        return self.reply(exc.status, exc.body(self.request))

    def answers(self) -> tuple[Callable[[int], ASGIApp], Callable[[], ASGIApp]]:
        return (lambda status: self.reply(status, None)), (lambda: self.reply(503, None))


class CheckoutSimulator:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        webhooks: WebhookSender,
        connections: Connections,
        public_url: str,
    ) -> None:
        self.store = store
        self.faults = faults
        self.webhooks = webhooks
        self.connections = connections
        self.base = public_url.rstrip("/") + "/checkout"
        self.notifier = Notifier(webhooks, faults)
        self._in_flight: set[tuple[str, str]] = set()  # (secret key, Cko-Idempotency-Key) being processed
        store.on_status_change(PROCESSOR, self._status_changed)

    def router(self) -> Router:
        sim = self

        @post("/payments/{payment_id:str}/refunds", status_code=202)
        async def refund(request: Request[Any, Any, Any], payment_id: str) -> ASGIApp:
            return await sim.create_refund(request, payment_id)

        @get("/payments/{payment_id:str}")
        async def read_payment(request: Request[Any, Any, Any], payment_id: str) -> ASGIApp:
            return await sim.read(request, lambda: payment_resource(sim.base, sim._payment(payment_id)))

        @get("/payments/{payment_id:str}/actions")
        async def read_actions(request: Request[Any, Any, Any], payment_id: str) -> ASGIApp:
            return await sim.read(request, lambda: actions(sim._payment(payment_id)))

        @get("/event-types")
        async def event_types(request: Request[Any, Any, Any], version: str | None = None) -> ASGIApp:
            return await sim.read(request, lambda: _event_types(version))

        @get("/workflows/event-types")
        async def workflow_event_types(request: Request[Any, Any, Any]) -> ASGIApp:
            return await sim.read(request, _workflow_event_types)

        return Router(
            path="/checkout",
            route_handlers=[refund, read_payment, read_actions, event_types, workflow_event_types],
        )

    # -- authentication ---------------------------------------------------------------------------
    def _secret_key(self, incoming: _Incoming) -> str:
        """The secret key of a known account, sent as ``Bearer sk_…`` or bare; else 401."""
        value = (incoming.authorization or "").strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        if not value:
            raise UNAUTHORIZED
        if self.connections.from_file:
            if self.connections.find(PROCESSOR, "secret_key", value) is None:
                raise UNAUTHORIZED
        elif not value.startswith("sk_"):
            raise UNAUTHORIZED
        return value

    def _payment(self, payment_id: str) -> Payment:
        payment = self.store.find_payment(PROCESSOR, payment_id)
        if payment is None:
            raise NOT_FOUND
        return payment

    # -- reads ------------------------------------------------------------------------------------
    async def read(self, request: Request[Any, Any, Any], render: Callable[[], Any]) -> ASGIApp:
        incoming = _Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        outcome, early = await front_faults(config, *incoming.answers())
        if early is not None:
            return early
        try:
            self._secret_key(incoming)
            answer = incoming.reply(200, render())
        except CheckoutError as exc:
            answer = incoming.error(exc)
        return await back_faults(config, outcome, answer)

    # -- POST /payments/{id}/refunds --------------------------------------------------------------
    async def create_refund(self, request: Request[Any, Any, Any], payment_id: str) -> ASGIApp:
        incoming = _Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        try:
            secret: str | None = self._secret_key(incoming)
        except CheckoutError:
            secret = None
        key = incoming.idempotency_key
        marker = (secret, key) if secret is not None and key is not None else None
        if marker is not None:
            if marker in self._in_flight:
                return incoming.error(IN_PROGRESS)
            self._in_flight.add(marker)
        try:
            outcome, early = await front_faults(config, *incoming.answers())
            if early is not None:
                if outcome is Outcome.ERROR and not config.outage and config.error_executes():
                    await self._attempt(request, incoming, secret, payment_id, remember=False)
                return early
            # Only an answer that reaches the client is remembered for its key.
            answer = await self._attempt(
                request, incoming, secret, payment_id, remember=outcome is Outcome.NORMAL
            )
        finally:
            if marker is not None:
                self._in_flight.discard(marker)
        return await back_faults(config, outcome, maybe_mangled(config, answer))

    async def _attempt(
        self,
        request: Request[Any, Any, Any],
        incoming: _Incoming,
        secret: str | None,
        payment_id: str,
        *,
        remember: bool,
    ) -> Reply:
        if secret is None:
            return incoming.error(UNAUTHORIZED)
        try:
            raw = await read_body(request.receive, _BODY_LIMIT)
            ask = parse_refund_request(decode_json(raw) if raw.strip() else None)
        except (msgspec.DecodeError, BodyTooLargeError):
            return incoming.error(invalid("request_body_malformed"))
        except CheckoutError as exc:
            return incoming.error(exc)
        key = incoming.idempotency_key
        store_key = (PROCESSOR, secret, key) if key is not None else None
        if store_key is not None:
            retention = self.faults.get(PROCESSOR).idempotency_retention_seconds
            saved = self.store.saved_response(store_key, max_age=retention)
            if saved is not None:
                return Reply(saved.status, saved.body, incoming.headers())
        try:
            refund = self._new_refund(payment_id, ask, secret, key)
        except CheckoutError as exc:
            return incoming.error(exc)  # 4xx: never remembered, the same key may try again
        body = _encode(refund_accepted(self.base, refund))
        if store_key is not None and remember:
            self.store.save_response(store_key, SavedResponse(None, _CREATE_ENDPOINT, 202, body, refund.id))
        return Reply(202, body, incoming.headers())

    def _new_refund(self, payment_id: str, ask: RefundAsk, secret: str, key: str | None) -> Refund:
        payment = self._payment(payment_id)
        available = payment.refundable()
        if available <= 0:
            raise NOT_ALLOWED
        amount = ask.amount if ask.amount is not None else available
        if amount > available:
            raise invalid("refund_amount_exceeds_balance")
        now = time.time()
        refund = Refund(
            id=new_id("act_"),
            processor=PROCESSOR,
            payment=payment,
            amount=amount,
            currency=payment.currency,
            status="pending",  # accepted only: the outcome comes later
            created=int(now),
            credential=secret,
            idempotency_key=key,
            extra={"reference": ask.reference, "metadata": dict(ask.metadata), "decline": None},
        )
        refund.request_id = refund.id
        self.store.add_refund(refund)
        self._schedule(refund)
        return refund

    # -- the asynchronous life --------------------------------------------------------------------
    def _schedule(self, refund: Refund) -> None:
        config = self.faults.get(PROCESSOR)
        plan = plan_refund(config)
        delay = config.settle_ms / 1000.0
        if plan.initial == "pending":
            self._announce(refund, "payment_refund_pending")
            if plan.final == "failed":
                self.store.call_later(delay, lambda: self._decline(refund, "failed"))
                return
        self.store.call_later(delay, lambda: self._approve(refund))
        if plan.initial == "succeeded" and plan.final == "failed":
            later = "reversed" if config.reverses() else "failed"
            self.store.call_later(2 * delay, lambda: self._decline(refund, later))

    def _approve(self, refund: Refund) -> None:
        if refund.status != "pending":
            return
        refund.extra["processed_on"] = time.time()
        self.store.set_status(refund, "succeeded")

    def _decline(self, refund: Refund, status: str) -> None:
        refund.extra["decline"] = random.choice(DECLINES)
        refund.extra["processed_on"] = time.time()
        self.store.set_status(refund, status, refund.extra["decline"][1])

    def _status_changed(self, refund: Refund, old: str) -> None:
        event_type = _EVENTS.get((old, refund.status))
        if event_type is not None:
            self._announce(refund, event_type)

    def _announce(self, refund: Refund, event_type: str) -> None:
        if not self.webhooks.enabled:
            return
        connection = self.connections.find(PROCESSOR, "secret_key", refund.credential)
        if connection is None:
            return
        event = event_body(self.base, new_id("evt_"), event_type, refund, time.time())
        self.notifier.notify(connection, event)


def _event_types(version: str | None) -> list[dict[str, Any]]:
    versions = [v for v in ("1.0", "2.0") if version is None or v == version]
    return [{"version": v, "event_types": list(EVENT_TYPES)} for v in versions]


def _workflow_event_types() -> list[dict[str, Any]]:
    return [
        {
            "id": "gateway",
            "display_name": "Gateway",
            "description": "Events triggered by payment activity",
            "events": [
                {"id": name, "display_name": name.replace("_", " ").capitalize()} for name in EVENT_TYPES
            ],
        }
    ]
