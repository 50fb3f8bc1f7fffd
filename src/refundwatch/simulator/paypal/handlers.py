"""The PayPal endpoints under ``/paypal``, over the shared store, faults and webhook sender.

- ``POST /v1/oauth2/token`` (``tokens``); every other call needs a live bearer token.
- ``POST /v2/payments/captures/{capture_id}/refund``: ``PayPal-Request-Id`` idempotency (the same id
  again, within ``idempotency_retention_seconds``, answers the latest state of the first result and
  executes nothing; while the first is still being processed: 409 ``PREVIOUS_REQUEST_IN_PROGRESS``),
  ``Prefer: return=representation`` (else the minimal ``id``/``status``/``links``), the refundable
  balance (``CAPTURE_FULLY_REFUNDED``, ``REFUND_AMOUNT_EXCEEDED``), decimal amounts
  (``DECIMALS_NOT_SUPPORTED`` for HUF/JPY/TWD, ``DECIMAL_PRECISION``), a capture's currency
  (``REFUND_CAPTURE_CURRENCY_MISMATCH``), an ``invoice_id`` used before by the same client
  (``DUPLICATE_INVOICE_ID``), and any issue of ``captures.refund-422`` set on a capture with
  ``POST /_control/paypal/captures/{capture_id}/issue``. No body: the whole rest of the capture.
- ``GET /v2/payments/refunds/{id}``, ``GET /v2/payments/captures/{id}`` (naming its order in
  ``supplementary_data.related_ids.order_id``), ``GET /v2/checkout/orders/{id}`` (the order, with the
  capture's refunds: how a refund whose answer was lost is found by its ``invoice_id``).
- ``GET /v1/notifications/webhooks/{webhook_id}`` (the health check), ``POST
  /v1/notifications/verify-webhook-signature`` (``notifications``), ``GET
  /v1/notifications/certs/{name}`` (``certs``; no faults).

Life of a refund (the shared plan, ``faults.plan_refund``): ``pending_rate`` of refunds answer
``PENDING`` (``status_details.reason`` ``ECHECK``, event PAYMENT.REFUND.PENDING) and settle after
``settle_ms`` to ``COMPLETED`` (PAYMENT.CAPTURE.REFUNDED) or, ``fail_later_rate`` of them, ``FAILED``
(PAYMENT.REFUND.FAILED); the others answer ``COMPLETED`` (PAYMENT.CAPTURE.REFUNDED) and, ``fail_later_rate``
of them, fail ``settle_ms`` later (PAYMENT.REFUND.FAILED, the refund reads ``FAILED``) or,
``reversal_rate`` of those, are reversed (PAYMENT.CAPTURE.REVERSED; the refund still reads
``COMPLETED``, ledger ``reversed``).

Implemented from PayPal's Payments v2 and Webhooks v1 OpenAPI documents and paypal-server-sdk 2.4.0;
nothing here comes from refundwatch's PayPal adapter (STYLE rule 12).
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
from ..faults import Faults, plan_refund
from ..state import Payment, Refund, SavedResponse, Store
from ..webhooks import WebhookSender
from .certs import Certificates
from .incoming import Incoming, unknown_path
from .notifications import Notifier
from .resources import (
    capture_resource,
    event_body,
    minimal_refund,
    order_id_for,
    order_resource,
    refund_resource,
    touch,
    webhook_resource,
)
from .tokens import PROCESSOR, OAuthError, TokenIssuer
from .wire import (
    PAYPAL_CURRENCIES,
    PayPalError,
    authentication_failure,
    in_progress,
    invalid_request,
    new_id,
    not_found,
    parse_refund_request,
    parse_value,
    parse_verify_request,
    unprocessable,
)

__all__ = ["PROCESSOR", "PayPalSimulator", "unknown_path"]

_CREATE_ENDPOINT = "POST /v2/payments/captures/{capture_id}/refund"
_BODY_LIMIT = 1 << 20
_VERIFY_FIELDS = (
    "auth_algo",
    "cert_url",
    "transmission_id",
    "transmission_sig",
    "transmission_time",
    "webhook_id",
)
# Status changes after the first answer, and the event each one sends.
_EVENTS: dict[tuple[str, str], str] = {
    ("pending", "succeeded"): "PAYMENT.CAPTURE.REFUNDED",
    ("pending", "failed"): "PAYMENT.REFUND.FAILED",
    ("succeeded", "failed"): "PAYMENT.REFUND.FAILED",
    ("succeeded", "reversed"): "PAYMENT.CAPTURE.REVERSED",
}
_encode = msgspec.json.Encoder().encode


class PayPalSimulator:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        webhooks: WebhookSender,
        connections: Connections,
        certificates: Certificates,
        public_url: str,
    ) -> None:
        self.store = store
        self.faults = faults
        self.webhooks = webhooks
        self.connections = connections
        self.certificates = certificates
        self.base = public_url.rstrip("/") + "/paypal"
        self.tokens = TokenIssuer(connections)
        self.notifier = Notifier(webhooks, faults, certificates, public_url.rstrip("/"))
        self.issues: dict[str, str] = {}  # capture id -> the 422 issue its refunds get
        self._invoices: set[tuple[str, str]] = set()  # (client id, invoice_id) of refunds made
        self._in_flight: set[tuple[str, str]] = set()  # (client id, PayPal-Request-Id) being processed
        store.on_status_change(PROCESSOR, self._status_changed)
        store.register_alias_maker(PROCESSOR, lambda capture_id: [order_id_for(capture_id)])
        webhooks.on_reset(self._forget)

    def _forget(self) -> None:
        self.issues.clear()
        self._invoices.clear()

    def router(self) -> Router:
        sim = self

        @post("/v1/oauth2/token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> ASGIApp:
            return await sim.token(request)

        @post("/v2/payments/captures/{capture_id:str}/refund", status_code=201)
        async def refund(request: Request[Any, Any, Any], capture_id: str) -> ASGIApp:
            return await sim.create_refund(request, capture_id)

        @get("/v2/payments/refunds/{refund_id:str}")
        async def read_refund(request: Request[Any, Any, Any], refund_id: str) -> ASGIApp:
            return await sim.read(request, lambda client: sim._refund_body(refund_id))

        @get("/v2/payments/captures/{capture_id:str}")
        async def read_capture(request: Request[Any, Any, Any], capture_id: str) -> ASGIApp:
            return await sim.read(request, lambda client: sim._capture_body(capture_id))

        @get("/v2/checkout/orders/{order_id:str}")
        async def read_order(request: Request[Any, Any, Any], order_id: str) -> ASGIApp:
            return await sim.read(request, lambda client: sim._order_body(order_id))

        @get("/v1/notifications/webhooks/{webhook_id:str}")
        async def read_webhook(request: Request[Any, Any, Any], webhook_id: str) -> ASGIApp:
            return await sim.read(request, lambda client: sim._webhook_body(client, webhook_id))

        @post("/v1/notifications/verify-webhook-signature", status_code=200)
        async def verify(request: Request[Any, Any, Any]) -> ASGIApp:
            return await sim.verify(request)

        @get("/v1/notifications/certs/{name:str}")
        async def certificate(name: str) -> ASGIApp:
            if "/v1/notifications/certs/" + name != sim.certificates.cert_path:
                return json_reply(404, unknown_path())
            return Reply(200, sim.certificates.chain_pem, content_type=b"application/x-pem-file")

        return Router(
            path="/paypal",
            route_handlers=[
                token,
                refund,
                read_refund,
                read_capture,
                read_order,
                read_webhook,
                verify,
                certificate,
            ],
        )

    # -- authentication ---------------------------------------------------------------------------
    def _client(self, incoming: Incoming) -> str:
        authorization = incoming.authorization
        if not authorization or authorization[:7].lower() != "bearer ":
            raise authentication_failure()
        return self.tokens.client_for(authorization)

    async def token(self, request: Request[Any, Any, Any]) -> ASGIApp:
        incoming = Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        outcome, early = await front_faults(config, *incoming.answers())
        if early is not None:
            return early
        try:
            body = await read_body(request.receive, _BODY_LIMIT)
            answer = json_reply(
                200,
                self.tokens.issue(incoming.authorization, body, config.token_ttl_seconds),
                incoming.headers(),
            )
        except OAuthError as exc:
            answer = incoming.error(exc)
        except BodyTooLargeError:
            answer = incoming.error(OAuthError(400, "invalid_request", "Request body too large"))
        return await back_faults(config, outcome, answer)

    # -- reads ------------------------------------------------------------------------------------
    async def read(self, request: Request[Any, Any, Any], render: Callable[[str], dict[str, Any]]) -> ASGIApp:
        incoming = Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        outcome, early = await front_faults(config, *incoming.answers())
        if early is not None:
            return early
        try:
            client = self._client(incoming)
            body = render(client)
            answer = json_reply(200, body, incoming.headers())
        except (PayPalError, OAuthError) as exc:
            answer = incoming.error(exc)
        return await back_faults(config, outcome, answer)

    def _refund_body(self, refund_id: str) -> dict[str, Any]:
        refund = self.store.get_refund(PROCESSOR, refund_id)
        if refund is None:
            raise not_found()
        return refund_resource(self.base, refund)

    def _capture(self, capture_id: str) -> Payment:
        payment = self.store.find_payment(PROCESSOR, capture_id)
        if payment is None or payment.reference != capture_id:  # not by its order's id
            raise not_found()
        return payment

    def _capture_body(self, capture_id: str) -> dict[str, Any]:
        return capture_resource(self.base, self._capture(capture_id))

    def _order_body(self, order_id: str) -> dict[str, Any]:
        payment = self.store.find_payment(PROCESSOR, order_id)
        if payment is None or order_id_for(payment.reference) != order_id:
            raise not_found()
        return order_resource(self.base, payment)

    def _webhook_body(self, client: str, webhook_id: str) -> dict[str, Any]:
        url = None
        if self.connections.from_file:
            mine = [c for c in self.connections.for_processor(PROCESSOR) if c.get("client_id") == client]
            found = next((c for c in mine if c.get("webhook_id") == webhook_id), None)
            if found is None:
                raise PayPalError(404, "INVALID_RESOURCE_ID", "Resource id is invalid.")
            url = self.webhooks.url_for(found)
        return webhook_resource(self.base, webhook_id, url or "https://webhooks.invalid/unset")

    # -- verify-webhook-signature -----------------------------------------------------------------
    async def verify(self, request: Request[Any, Any, Any]) -> ASGIApp:
        incoming = Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        outcome, early = await front_faults(config, *incoming.answers())
        if early is not None:
            return early
        try:
            self._client(incoming)
            data = parse_verify_request(await read_body(request.receive, _BODY_LIMIT))
            status = "SUCCESS" if self.notifier.verify(data) else "FAILURE"
            answer = json_reply(200, {"verification_status": status}, incoming.headers())
        except (PayPalError, OAuthError) as exc:
            answer = incoming.error(exc)
        except BodyTooLargeError:
            answer = incoming.error(
                invalid_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.")
            )
        return await back_faults(config, outcome, answer)

    # -- POST /v2/payments/captures/{capture_id}/refund -------------------------------------------
    async def create_refund(self, request: Request[Any, Any, Any], capture_id: str) -> ASGIApp:
        incoming = Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        try:
            client: str | None = self._client(incoming)
            auth_error: PayPalError | OAuthError | None = None
        except (PayPalError, OAuthError) as exc:
            client, auth_error = None, exc
        marker = (client, incoming.request_id) if client is not None and incoming.request_id else None
        if marker is not None:
            if marker in self._in_flight:
                return incoming.error(in_progress())
            self._in_flight.add(marker)
        try:
            outcome, early = await front_faults(config, *incoming.answers())
            if early is not None:
                return early
            if auth_error is not None or client is None:
                return await back_faults(
                    config, outcome, incoming.error(auth_error or authentication_failure())
                )
            answer = await self._create(request, incoming, client, capture_id)
        finally:
            if marker is not None:
                self._in_flight.discard(marker)
        return await back_faults(config, outcome, maybe_mangled(config, answer))

    async def _create(
        self, request: Request[Any, Any, Any], incoming: Incoming, client: str, capture_id: str
    ) -> Reply:
        try:
            raw = await read_body(request.receive, _BODY_LIMIT)
            data = decode_json(raw) if raw.strip() else None
            ask = parse_refund_request(data)
        except (msgspec.DecodeError, BodyTooLargeError):
            return incoming.error(
                invalid_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.")
            )
        except PayPalError as exc:
            return incoming.error(exc)
        key = incoming.request_id
        if key is None:
            status, body, _ = self._execute(capture_id, ask, client, None, incoming)
            return Reply(status, body, incoming.headers())
        store_key = (PROCESSOR, client, key)
        retention = self.faults.get(PROCESSOR).idempotency_retention_seconds
        saved = self.store.saved_response(store_key, max_age=retention)
        if saved is None:
            status, body, refund_id = self._execute(capture_id, ask, client, key, incoming)
            if status in {201, 422}:  # answers of requests that reached the capture
                self.store.save_response(
                    store_key,
                    SavedResponse(None, _CREATE_ENDPOINT, status, body if status != 201 else b"", refund_id),
                )
            return Reply(status, body, incoming.headers())
        # PayPal "returns the latest status of the previous request that used that same header".
        refund = self.store.get_refund(PROCESSOR, saved.request_id) if saved.status == 201 else None
        if refund is None:
            return Reply(saved.status, saved.body, incoming.headers())
        return json_reply(201, self._render(refund, incoming), incoming.headers())

    def _render(self, refund: Refund, incoming: Incoming) -> dict[str, Any]:
        return (
            refund_resource(self.base, refund)
            if incoming.representation
            else minimal_refund(self.base, refund)
        )

    def _execute(
        self, capture_id: str, ask: Any, client: str, key: str | None, incoming: Incoming
    ) -> tuple[int, bytes, str]:
        """Check the refund against the capture and record it; (status, body, refund id or debug id)."""
        try:
            refund = self._new_refund(capture_id, ask, client, key)
        except PayPalError as exc:
            return exc.status, _encode(exc.body(incoming.debug)), incoming.debug
        return 201, _encode(self._render(refund, incoming)), refund.id

    def _new_refund(self, capture_id: str, ask: Any, client: str, key: str | None) -> Refund:
        payment = self._capture(capture_id)
        if payment.currency not in PAYPAL_CURRENCIES:
            raise unprocessable(
                "INVALID_CURRENCY_CODE", field="/amount/currency_code", value=payment.currency
            )
        issue = self.issues.get(capture_id)
        if issue is not None:
            raise unprocessable(issue)
        if ask.currency is not None and ask.currency != payment.currency:
            raise unprocessable(
                "REFUND_CAPTURE_CURRENCY_MISMATCH", field="/amount/currency_code", value=ask.currency
            )
        amount = parse_value(payment.currency, ask.value) if ask.value is not None else payment.refundable()
        if payment.refundable() <= 0:
            raise unprocessable("CAPTURE_FULLY_REFUNDED")
        if amount > payment.refundable():
            raise unprocessable("REFUND_AMOUNT_EXCEEDED")
        if ask.invoice_id is not None and (client, ask.invoice_id) in self._invoices:
            raise unprocessable("DUPLICATE_INVOICE_ID", field="/invoice_id", value=ask.invoice_id)
        config = self.faults.get(PROCESSOR)
        plan = plan_refund(config)
        now = time.time()
        refund = Refund(
            id=new_id(),
            processor=PROCESSOR,
            payment=payment,
            amount=amount,
            currency=payment.currency,
            status=plan.initial,
            created=int(now),
            credential=client,
            idempotency_key=key,
            reason=ask.note_to_payer,
            extra={
                "invoice_id": ask.invoice_id,
                "custom_id": ask.custom_id,
                "note_to_payer": ask.note_to_payer,
                "reason": "ECHECK" if plan.initial == "pending" else None,
                "updated": now,
            },
        )
        refund.request_id = refund.id
        self.store.add_refund(refund)
        if ask.invoice_id is not None:
            self._invoices.add((client, ask.invoice_id))
        self._announce(
            refund, "PAYMENT.REFUND.PENDING" if plan.initial == "pending" else "PAYMENT.CAPTURE.REFUNDED"
        )
        if plan.final is not None:
            final = plan.final
            if plan.initial == "succeeded" and config.reverses():
                final = "reversed"
            self.store.call_later(plan.delay, lambda: self.store.set_status(refund, final))
        return refund

    # -- the asynchronous life --------------------------------------------------------------------
    def _status_changed(self, refund: Refund, old: str) -> None:
        touch(refund)
        event_type = _EVENTS.get((old, refund.status))
        if event_type is not None:
            self._announce(refund, event_type)

    def _announce(self, refund: Refund, event_type: str) -> None:
        if not self.webhooks.enabled:
            return
        connection = self.connections.find(PROCESSOR, "client_id", refund.credential)
        if connection is None:
            return
        self.notifier.notify(connection, event_body(self.base, event_type, refund))
