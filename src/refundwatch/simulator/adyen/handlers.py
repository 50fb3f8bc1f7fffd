"""The Adyen endpoints under ``/adyen/v72``: refund a captured payment, and ``/paymentMethods``.

Implemented from Adyen's CheckoutService v72 and Webhooks v1 specs and the Adyen Python SDK 16.0.0;
nothing here comes from refundwatch's own Adyen adapter (STYLE rule 12).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Router, post
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
from ..connections import Connection, Connections
from ..faults import Faults, plan_refund
from ..state import Refund, SavedResponse, Store
from ..webhooks import WebhookSender
from .notifications import PROCESSOR, Notifier
from .wire import (
    AMOUNT_INVALID,
    CURRENCY_UNSUPPORTED,
    MAX_IDEMPOTENCY_KEY,
    AdyenError,
    RefundRequest,
    error_body,
    notification_item,
    parse_refund_request,
    psp_reference,
    refund_response,
)

__all__ = ["PROCESSOR", "AdyenSimulator", "not_found"]

_CREATE_ENDPOINT = "POST /payments/{paymentPspReference}/refunds"
_UNAUTHORIZED = AdyenError(401, "000", "HTTP Status Response - Unauthorized", "security")
# Why a refund is refused (REFUND success=false): documented refund error messages (Adyen's
# RefundWithData result file) that name no particular cause; the ones that do (not enough left, another
# currency, unknown payment) are decided synchronously here. Why a refund fails after succeeding
# (REFUND_FAILED): the Webhooks-v1 example's "Refund Failed". Adyen documents no reason text for
# REFUNDED_REVERSED (its one example carries "test_AUTHORISATION_1"): sent empty.
_REFUSAL_REASONS = ("Transaction is expired", "Operation not allowed", "Operation failed")
_LATE_FAILURE_REASON = "Refund Failed"
# Adyen's error-code list: 903 "Internal error" (the HTTP status of each simulated fault is ours).
_INTERNAL_ERROR = ("903", "Internal error", "internal")
_BODY_LIMIT = 1 << 20
# Status changes after the 201 "received", and the notification each one sends: (eventCode, success).
_EVENTS: dict[tuple[str, str], tuple[str, bool]] = {
    ("pending", "succeeded"): ("REFUND", True),
    ("pending", "failed"): ("REFUND", False),
    ("succeeded", "failed"): ("REFUND_FAILED", True),
    ("succeeded", "reversed"): ("REFUNDED_REVERSED", True),
}
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class _Incoming:
    """The request headers Adyen looks at."""

    api_key: str | None = None
    idempotency_key: str | None = None

    @classmethod
    def from_request(cls, request: Request[Any, Any, Any]) -> _Incoming:
        incoming = cls()
        for raw_name, value in request.scope["headers"]:
            name = raw_name.lower()
            if name == b"x-api-key":
                incoming.api_key = value.decode("latin-1") or None
            elif name == b"idempotency-key":
                incoming.idempotency_key = value.decode("latin-1") or None
        return incoming

    def headers(self, psp: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"pspreference", psp.encode())]
        if self.idempotency_key is not None:
            headers.append((b"idempotency-key", self.idempotency_key.encode("latin-1")))
        return headers


def _error_reply(exc: AdyenError, incoming: _Incoming) -> Reply:
    psp = psp_reference()
    headers = incoming.headers(psp)
    if exc.transient is not None:
        headers.append((b"transient-error", b"true" if exc.transient else b"false"))
    return json_reply(exc.status, exc.body(None if exc.status == 401 else psp), headers)


def _checked_key(key: str | None) -> str | None:
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        # Adyen documents the limit, not its answer past it: 702 (unreadable request) is our choice.
        message = f"Idempotency-Key must be at most {MAX_IDEMPOTENCY_KEY} characters (got {len(key)})."
        raise AdyenError(400, "702", message)
    return key


async def _read(request: Request[Any, Any, Any]) -> bytes:
    try:
        return await read_body(request.receive, _BODY_LIMIT)
    except BodyTooLargeError as exc:
        # Adyen's 29_100 (error-code list); the 413 status is unconfirmed.
        message = f"The request is larger than the allowed maximum of {_BODY_LIMIT} bytes"
        raise AdyenError(413, "29_100", message) from exc


def _front_answers(incoming: _Incoming) -> tuple[Callable[[int], ASGIApp], Callable[[], ASGIApp]]:
    def server_error(status: int) -> ASGIApp:
        return _error_reply(AdyenError(status, *_INTERNAL_ERROR), incoming)

    def outage() -> ASGIApp:
        return _error_reply(AdyenError(503, *_INTERNAL_ERROR), incoming)

    return server_error, outage


def not_found(path: str) -> dict[str, Any]:
    """Adyen's answer to a path it does not know: 000 with "Not Found" among its documented messages;
    the wording after generic-401's "HTTP Status Response - Unauthorized" is unconfirmed."""
    return error_body(404, "000", f"HTTP Status Response - Not Found: {path}", "validation")


class AdyenSimulator:
    """Adyen's refund API over the shared store, faults and webhook sender."""

    def __init__(
        self, store: Store, faults: Faults, webhooks: WebhookSender, connections: Connections
    ) -> None:
        self.store = store
        self.faults = faults
        self.connections = connections
        self.notifier = Notifier(webhooks, faults)
        store.on_status_change(PROCESSOR, self._status_changed)

    def router(self) -> Router:
        sim = self

        @post("/payments/{psp:str}/refunds", status_code=201)
        async def refund(request: Request[Any, Any, Any], psp: str) -> ASGIApp:
            return await sim.create_refund(request, psp)

        @post("/paymentMethods", status_code=200)
        async def payment_methods(request: Request[Any, Any, Any]) -> ASGIApp:
            return await sim.payment_methods(request)

        return Router(path="/adyen/v72", route_handlers=[refund, payment_methods])

    def _authenticate(self, incoming: _Incoming) -> tuple[str, Connection | None]:
        """The API key and its connection; without a connections file any key is taken."""
        key = incoming.api_key
        if key is None:
            raise _UNAUTHORIZED
        if not self.connections.from_file:
            return key, None
        connection = self.connections.find(PROCESSOR, "api_key", key)
        if connection is None:
            raise _UNAUTHORIZED
        return key, connection

    @staticmethod
    def _check_merchant(connection: Connection | None, merchant_account: str | None) -> None:
        expected = connection.get("merchant_account") if connection is not None else None
        if expected is not None and merchant_account is not None and merchant_account != expected:
            raise AdyenError(403, "901", "Invalid Merchant Account", "security")

    # -- POST /paymentMethods (what health checks call) -------------------------------------------
    async def payment_methods(self, request: Request[Any, Any, Any]) -> ASGIApp:
        incoming = _Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        outcome, early = await front_faults(config, *_front_answers(incoming))
        if early is not None:
            return early
        try:
            _, connection = self._authenticate(incoming)
            data = decode_json(await read_body(request.receive) or b"{}")
            merchant = data.get("merchantAccount") if isinstance(data, dict) else None
            self._check_merchant(connection, merchant if isinstance(merchant, str) else None)
            answer: ASGIApp = json_reply(200, {"paymentMethods": []}, incoming.headers(psp_reference()))
        except AdyenError as exc:
            answer = _error_reply(exc, incoming)
        except (msgspec.DecodeError, BodyTooLargeError) as exc:
            answer = _error_reply(AdyenError(400, "702", f"Unexpected input: {exc}"), incoming)
        return await back_faults(config, outcome, answer)

    # -- POST /payments/{paymentPspReference}/refunds ---------------------------------------------
    async def create_refund(self, request: Request[Any, Any, Any], payment_psp: str) -> ASGIApp:
        incoming = _Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        outcome, early = await front_faults(config, *_front_answers(incoming))
        if early is not None:
            return early
        try:
            api_key, connection = self._authenticate(incoming)
            key = _checked_key(incoming.idempotency_key)
            params = parse_refund_request(await _read(request))
            self._check_merchant(connection, params.merchant_account)
        except AdyenError as exc:
            return await back_faults(config, outcome, _error_reply(exc, incoming))
        if key is None:
            status, payload, psp = self._execute(payment_psp, params, api_key, None)
            answer: ASGIApp = Reply(status, payload, incoming.headers(psp))
            return await back_faults(config, outcome, maybe_mangled(config, answer))
        store_key = (PROCESSOR, api_key, key)
        fingerprint = (payment_psp, params.fingerprint)
        # One request per key at a time: a concurrent twin waits here, then gets the saved answer.
        async with self.store.key_lock(store_key):
            # Past the retention Adyen has forgotten the key: the same key executes a new refund.
            saved = self.store.saved_response(store_key, max_age=config.idempotency_retention_seconds)
            if saved is None:
                status, payload, psp = self._execute(payment_psp, params, api_key, key)
                if status in {201, 422}:  # answers of requests that reached the payment
                    saved = SavedResponse(fingerprint, _CREATE_ENDPOINT, status, payload, psp)
                    self.store.save_response(store_key, saved)
                answer = Reply(status, payload, incoming.headers(psp))
            elif saved.fingerprint == fingerprint:
                answer = Reply(saved.status, saved.body, incoming.headers(saved.request_id))
            else:
                # Adyen documents 704 for a duplicate of a request not yet completed and says a key seen
                # before returns the first answer; a reused key with another body is not described.
                # Refused here with 704 as for a request "already processed", never retried
                # (transient-error: false): our reading, unconfirmed.
                mismatch = AdyenError(422, "704", "request already processed or in progress", transient=False)
                answer = _error_reply(mismatch, incoming)
        return await back_faults(config, outcome, maybe_mangled(config, answer))

    def _execute(
        self, payment_psp: str, params: RefundRequest, api_key: str, key: str | None
    ) -> tuple[int, bytes, str]:
        """Check the refund against the payment and record it; (status, body, pspReference)."""
        psp = psp_reference()
        payment = self.store.find_payment(PROCESSOR, payment_psp)
        if payment is None:
            error = AdyenError(422, "167", "Original pspReference required for this operation")
            return 422, _encode(error.body(psp)), psp
        # Adyen documents these two as REFUND success=false reasons ("Modification in different currency
        # than authorisation", "Insufficient balance on payment"); whether Checkout v72 refuses them at
        # once is unconfirmed. Refused at once here, with the documented codes for a currency and an
        # amount it will not take (138, 137).
        if params.currency != payment.currency:
            return 422, _encode(AdyenError(422, "138", CURRENCY_UNSUPPORTED).body(psp)), psp
        if params.value > payment.refundable():  # refunds never exceed the capture
            return 422, _encode(AdyenError(422, "137", AMOUNT_INVALID).body(psp)), psp
        refund = Refund(
            id=psp,
            processor=PROCESSOR,
            payment=payment,
            amount=params.value,
            currency=payment.currency,
            status="pending",  # Adyen's "received": the outcome comes later, in a notification
            created=int(time.time()),
            credential=api_key,
            idempotency_key=key,
            reason=params.reason,
            request_id=psp,
            extra={"merchant_account": params.merchant_account, "merchant_reference": params.reference},
        )
        self.store.add_refund(refund)
        self._schedule(refund)
        body = refund_response(
            merchant_account=params.merchant_account,
            payment_psp=payment.reference,
            psp=psp,
            reference=params.reference,
            value=params.value,
            currency=payment.currency,
        )
        return 201, _encode(body), psp

    # -- the asynchronous life --------------------------------------------------------------------
    def _schedule(self, refund: Refund) -> None:
        """After ``settle_ms`` the REFUND notification; refunds that fail later fail one of two ways.

        The shared plan decides: a refund planned pending → failed is refused (REFUND
        ``success=false``); one planned succeeded → failed succeeds first (REFUND ``success=true``)
        and, ``settle_ms`` later, fails (REFUND_FAILED) or, ``reversal_rate`` of them, is reversed
        (REFUNDED_REVERSED). Every other refund succeeds.
        """
        config = self.faults.get(PROCESSOR)
        plan = plan_refund(config)
        delay = config.settle_ms / 1000.0
        if plan.initial == "pending" and plan.final == "failed":
            refusal = random.choice(_REFUSAL_REASONS)
            self.store.call_later(delay, lambda: self._move(refund, "failed", refusal))
            return
        self.store.call_later(delay, lambda: self._move(refund, "succeeded"))
        if plan.final == "failed":
            later = "reversed" if config.reverses() else "failed"
            reason = _LATE_FAILURE_REASON if later == "failed" else None
            self.store.call_later(2 * delay, lambda: self._move(refund, later, reason))

    def _move(self, refund: Refund, status: str, reason: str | None = None) -> None:
        self.store.set_status(refund, status, reason)

    def _status_changed(self, refund: Refund, old: str) -> None:
        event = _EVENTS.get((old, refund.status))
        connection = self.connections.find(PROCESSOR, "api_key", refund.credential)
        if event is None or connection is None:
            return
        event_code, success = event
        reason = (refund.failure_reason or "") if refund.status in {"failed", "reversed"} else ""
        item = notification_item(
            event_code=event_code,
            success=success,
            psp=refund.id,
            original_reference=refund.payment.reference,
            merchant_account=refund.extra.get("merchant_account") or connection.get("merchant_account") or "",
            merchant_reference=refund.extra.get("merchant_reference") or "",
            value=refund.amount,
            currency=refund.currency,
            reason=reason,
        )
        self.notifier.notify(connection, item)
