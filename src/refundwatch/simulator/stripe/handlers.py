"""The Stripe endpoints under ``/stripe``: refunds (create, retrieve, list) and the balance.

Implemented from Stripe's API reference and stripe-python 16.1's request and error handling;
nothing here comes from refundwatch's own Stripe adapter (STYLE rule 12).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request, Router, get, post
from litestar.types import ASGIApp

from ..asgi import (
    BodyTooLargeError,
    Reply,
    back_faults,
    front_faults,
    json_reply,
    maybe_mangled,
    random_id,
    read_body,
)
from ..connections import Connections
from ..faults import Faults, plan_refund
from ..state import Payment, Refund, SavedResponse, Store
from ..webhooks import WebhookSender
from .wire import (
    DEFAULT_API_VERSION,
    FAILURE_REASONS,
    CreateParams,
    StripeError,
    api_key_from_header,
    balance_object,
    charge_id_for,
    error_body,
    event_object,
    format_amount,
    idempotency_mismatch,
    list_object,
    mask_key,
    parse_create,
    parse_list,
    refund_object,
    signature_header,
    unrecognized_url,
)

__all__ = ["PROCESSOR", "StripeSimulator", "unrecognized_url"]

PROCESSOR = "stripe"
_CREATE_ENDPOINT = "POST /v1/refunds"
_WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
_NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, using "
    "Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/."
)
_encode = msgspec.json.Encoder().encode
_Headers = list[tuple[bytes, bytes]]
_Pairs = list[tuple[str, str]]
_ReadAction = Callable[[str, _Pairs], dict[str, Any]]


@dataclass(slots=True)
class _Incoming:
    """The request headers Stripe looks at, read once from the raw ASGI headers."""

    authorization: str | None = None
    idempotency_key: str | None = None
    stripe_version: str | None = None
    request_id: str = ""

    @classmethod
    def from_request(cls, request: Request[Any, Any, Any]) -> _Incoming:
        incoming = cls(request_id=random_id("req_", 14))
        for raw_name, value in request.scope["headers"]:
            name = raw_name.lower()
            if name == b"authorization":
                incoming.authorization = value.decode("latin-1")
            elif name == b"idempotency-key":
                incoming.idempotency_key = value.decode("latin-1") or None
            elif name == b"stripe-version":
                incoming.stripe_version = value.decode("latin-1") or None
        return incoming

    @property
    def version(self) -> str:
        return self.stripe_version or DEFAULT_API_VERSION

    def headers(self) -> _Headers:
        """Every Stripe answer carries its request id and the API version."""
        return [
            (b"request-id", self.request_id.encode()),
            (b"stripe-version", self.version.encode("latin-1")),
        ]


def _is_charge_id(reference: str) -> bool:
    return reference.startswith(("ch_", "py_"))


def _charge_of(payment: Payment) -> str:
    reference = payment.reference
    return reference if _is_charge_id(reference) else charge_id_for(reference)


def _aliases(reference: str) -> list[str]:
    """A registered payment intent is also reachable through its charge."""
    return [] if _is_charge_id(reference) else [charge_id_for(reference)]


def _checked_key(incoming: _Incoming) -> str | None:
    key = incoming.idempotency_key
    if key is not None and len(key) > 255:
        raise StripeError(
            400,
            f"Invalid Idempotency-Key: must be at most 255 characters long (got {len(key)}).",
            param="Idempotency-Key",
            saved=False,
        )
    return key


async def _read_form(request: Request[Any, Any, Any]) -> bytes:
    try:
        return await read_body(request.receive)
    except BodyTooLargeError as exc:
        raise StripeError(413, f"Request entity too large: {exc}.", saved=False) from exc


def _only_expand(pairs: _Pairs) -> None:
    for name, _ in pairs:
        if not name.startswith("expand"):
            message = f"Received unknown parameter: {name}"
            raise StripeError(400, message, code="parameter_unknown", param=name, saved=False)


def _error_reply(exc: StripeError, incoming: _Incoming) -> Reply:
    if exc.status == 401:
        # Stripe's authentication errors carry only a message and a type.
        headers = [*incoming.headers(), (b"www-authenticate", b'Bearer realm="Stripe"')]
        return json_reply(401, {"error": {"message": exc.message, "type": exc.type}}, headers)
    return json_reply(exc.status, exc.body(incoming.request_id), incoming.headers())


def _front_answers(incoming: _Incoming) -> tuple[Callable[[int], ASGIApp], Callable[[], ASGIApp]]:
    """The answers of the faults in front of Stripe: a 5xx, or the outage 503."""

    def server_error(status: int) -> ASGIApp:
        body = error_body("api_error", "An unknown error occurred", incoming.request_id)
        return json_reply(status, body, incoming.headers())

    def outage() -> ASGIApp:
        message = "Stripe is temporarily unavailable (simulated outage)."
        return json_reply(503, error_body("api_error", message, incoming.request_id), incoming.headers())

    return server_error, outage


class StripeSimulator:
    """Stripe's refund API over the shared store, faults and webhook sender."""

    def __init__(
        self, store: Store, faults: Faults, webhooks: WebhookSender, connections: Connections
    ) -> None:
        self.store = store
        self.faults = faults
        self.webhooks = webhooks
        self.connections = connections
        self._keys = frozenset(
            key for c in connections.for_processor(PROCESSOR) if (key := c.get("api_key")) is not None
        )
        store.register_alias_maker(PROCESSOR, _aliases)
        store.on_status_change(PROCESSOR, self._status_changed)

    def router(self) -> Router:
        sim = self

        @post("/v1/refunds", status_code=200)
        async def create_refund(request: Request[Any, Any, Any]) -> ASGIApp:
            return await sim.create_refund(request)

        @get("/v1/refunds/{refund_id:str}")
        async def retrieve_refund(request: Request[Any, Any, Any], refund_id: str) -> ASGIApp:
            return await sim.read(request, lambda key, pairs: sim.retrieve_refund(key, refund_id, pairs))

        @get("/v1/refunds")
        async def list_refunds(request: Request[Any, Any, Any]) -> ASGIApp:
            return await sim.read(request, sim.list_refunds)

        @get("/v1/balance")
        async def balance(request: Request[Any, Any, Any]) -> ASGIApp:
            return await sim.read(request, sim.balance)

        return Router(path="/stripe", route_handlers=[create_refund, retrieve_refund, list_refunds, balance])

    def _authenticate(self, incoming: _Incoming) -> str:
        key = api_key_from_header(incoming.authorization)
        if key is None:
            raise StripeError(401, _NO_KEY, saved=False)
        valid = key in self._keys if self.connections.from_file else key.startswith(("sk_test_", "sk_live_"))
        if not valid:
            raise StripeError(401, f"Invalid API Key provided: {mask_key(key)}", saved=False)
        return key

    async def read(
        self, request: Request[Any, Any, Any], action: _ReadAction, *, mangle: bool = False
    ) -> ASGIApp:
        """A read-only call: faults, authentication, then ``action(api_key, query_pairs)``.
        ``mangle``: ``malformed_rate`` applies to its 2xx answers too (the settlement reads)."""
        incoming = _Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        outcome, early = await front_faults(config, *_front_answers(incoming))
        if early is not None:
            return early
        try:
            api_key = self._authenticate(incoming)
            query = request.scope["query_string"].decode("latin-1")
            payload = action(api_key, parse_qsl(query, keep_blank_values=True))
            answer: ASGIApp = json_reply(200, payload, incoming.headers())
        except StripeError as exc:
            answer = _error_reply(exc, incoming)
        if mangle:
            answer = maybe_mangled(config, answer)
        return await back_faults(config, outcome, answer)

    # -- POST /v1/refunds -------------------------------------------------------------------------
    async def create_refund(self, request: Request[Any, Any, Any]) -> ASGIApp:
        incoming = _Incoming.from_request(request)
        config = self.faults.get(PROCESSOR)
        outcome, early = await front_faults(config, *_front_answers(incoming))
        if early is not None:
            return early
        try:
            api_key = self._authenticate(incoming)
            key = _checked_key(incoming)
            body = await _read_form(request)
        except StripeError as exc:
            return await back_faults(config, outcome, _error_reply(exc, incoming))
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        if key is None:
            status, payload, _ = self._execute_create(pairs, api_key, incoming)
            return await back_faults(
                config, outcome, maybe_mangled(config, Reply(status, payload, incoming.headers()))
            )
        store_key = (PROCESSOR, api_key, key)
        fingerprint = tuple(sorted(pairs))
        # One request per key at a time: a concurrent twin waits here, then replays the saved answer.
        async with self.store.key_lock(store_key):
            # Past the retention Stripe has forgotten the key: the same key executes a new refund.
            saved = self.store.saved_response(store_key, max_age=config.idempotency_retention_seconds)
            if saved is None:
                status, payload, keep = self._execute_create(pairs, api_key, incoming)
                if keep:
                    saved = SavedResponse(fingerprint, _CREATE_ENDPOINT, status, payload, incoming.request_id)
                    self.store.save_response(store_key, saved)
                answer: ASGIApp = Reply(status, payload, incoming.headers())
            elif saved.endpoint == _CREATE_ENDPOINT and saved.fingerprint == fingerprint:
                replayed = [
                    (b"idempotent-replayed", b"true"),
                    (b"original-request", saved.request_id.encode()),
                ]
                answer = Reply(saved.status, saved.body, [*incoming.headers(), *replayed])
            else:
                message = idempotency_mismatch(key, saved.endpoint, _CREATE_ENDPOINT)
                body_json = error_body("idempotency_error", message, incoming.request_id)
                answer = json_reply(400, body_json, incoming.headers())
        return await back_faults(config, outcome, maybe_mangled(config, answer))

    def _execute_create(self, pairs: _Pairs, api_key: str, incoming: _Incoming) -> tuple[int, bytes, bool]:
        """Run the refund; returns (status, body, whether an idempotent request keeps this answer)."""
        try:
            params = parse_create(pairs)
            payment, amount = self._check_refundable(params)
        except StripeError as exc:
            return exc.status, _encode(exc.body(incoming.request_id)), exc.saved
        refund = self._new_refund(payment, amount, params, api_key, incoming)
        self.store.add_refund(refund)
        self._emit(refund, "refund.created")
        return 200, _encode(refund_object(refund)), True

    def _check_refundable(self, params: CreateParams) -> tuple[Payment, int]:
        """The payment to refund and the amount, or the StripeError Stripe would answer."""
        payment = self._resolve_payment(params.charge, params.payment_intent)
        if params.currency is not None and params.currency.upper() != payment.currency:
            raise StripeError(
                400,
                f"The currency '{params.currency.lower()}' does not match the currency of the charge "
                f"('{payment.currency.lower()}').",
                param="currency",
            )
        refundable = payment.refundable()
        if refundable <= 0:
            message = f"Charge {_charge_of(payment)} has already been refunded."
            raise StripeError(400, message, code="charge_already_refunded")
        amount = refundable if params.amount is None else params.amount
        if amount > refundable:
            raise StripeError(
                400,
                f"Refund amount ({format_amount(amount, payment.currency)}) is greater than unrefunded "
                f"amount on charge ({format_amount(refundable, payment.currency)})",
                code="amount_too_large",
                param="amount",
            )
        return payment, amount

    def _resolve_payment(self, charge: str | None, payment_intent: str | None) -> Payment:
        if charge is not None:
            payment = self.store.find_payment(PROCESSOR, charge)
            if payment is None or not _is_charge_id(charge):
                raise StripeError(404, f"No such charge: '{charge}'", code="resource_missing", param="charge")
            return payment
        payment = self.store.payments.get((PROCESSOR, payment_intent or ""))
        if payment is None or _is_charge_id(payment.reference):
            message = f"No such payment_intent: '{payment_intent}'"
            raise StripeError(404, message, code="resource_missing", param="payment_intent")
        return payment

    def _new_refund(
        self, payment: Payment, amount: int, params: CreateParams, api_key: str, incoming: _Incoming
    ) -> Refund:
        plan = plan_refund(self.faults.get(PROCESSOR))
        refund = Refund(
            id=random_id("re_"),
            processor=PROCESSOR,
            payment=payment,
            amount=amount,
            currency=payment.currency,
            status=plan.initial,
            created=int(time.time()),
            credential=api_key,
            idempotency_key=incoming.idempotency_key,
            reason=params.reason,
            metadata=params.metadata,
            request_id=incoming.request_id,
            extra={
                "charge": _charge_of(payment),
                "payment_intent": None if _is_charge_id(payment.reference) else payment.reference,
                "balance_transaction": random_id("txn_"),
                "arn": str(random.randrange(10**22, 10**23)),
                "api_version": incoming.version,
            },
        )
        final = plan.final
        if final is not None:
            self.store.call_later(plan.delay, lambda: self._settle(refund, final))
        return refund

    def _settle(self, refund: Refund, status: str) -> None:
        if status == "failed":
            refund.extra["failure_balance_transaction"] = random_id("txn_")
            self.store.set_status(refund, "failed", random.choice(FAILURE_REASONS))
        else:
            self.store.set_status(refund, status)

    # -- reads ------------------------------------------------------------------------------------
    def retrieve_refund(self, api_key: str, refund_id: str, pairs: _Pairs) -> dict[str, Any]:
        _only_expand(pairs)
        refund = self.store.get_refund(PROCESSOR, refund_id)
        if refund is None or refund.credential != api_key:  # refunds belong to the key's account
            raise StripeError(404, f"No such refund: '{refund_id}'", code="resource_missing", param="id")
        return refund_object(refund)

    def list_refunds(self, api_key: str, pairs: _Pairs) -> dict[str, Any]:
        params = parse_list(pairs)
        if params.charge is not None or params.payment_intent is not None:
            candidates = self._resolve_payment(params.charge, params.payment_intent).refunds
        else:
            candidates = self.store.ledger
        refunds = [r for r in reversed(candidates) if r.processor == PROCESSOR and r.credential == api_key]
        return list_object(refunds, params)

    def balance(self, api_key: str, pairs: _Pairs) -> dict[str, Any]:
        _only_expand(pairs)
        return balance_object(livemode=api_key.startswith("sk_live_"))

    # -- webhooks ---------------------------------------------------------------------------------
    def _status_changed(self, refund: Refund, old: str) -> None:
        self._emit(refund, "refund.updated", previous={"status": old})
        if refund.status == "failed":
            self._emit(refund, "refund.failed", previous={"status": old})

    def _emit(self, refund: Refund, event_type: str, *, previous: dict[str, Any] | None = None) -> None:
        """Send ``event_type`` for ``refund`` to the connection whose API key created it."""
        if not self.webhooks.enabled:
            return
        connection = self.connections.find(PROCESSOR, "api_key", refund.credential)
        secret = connection.get("webhook_secret") if connection is not None else None
        if connection is None or not secret:
            return
        caused_by_request = previous is None  # status changes happen later, on Stripe's side
        event = event_object(
            event_id=random_id("evt_"),
            event_type=event_type,
            data_object=refund_object(refund),
            api_version=refund.extra.get("api_version", DEFAULT_API_VERSION),
            livemode=refund.credential.startswith("sk_live_"),
            request_id=refund.request_id if caused_by_request else None,
            idempotency_key=refund.idempotency_key if caused_by_request else None,
            previous_attributes=previous,
        )

        def signer(payload: bytes) -> dict[str, str]:
            signature = signature_header(secret, payload, int(time.time()))
            return {"Stripe-Signature": signature, "User-Agent": _WEBHOOK_USER_AGENT}

        config = self.faults.get(PROCESSOR)
        if config.drops_webhook():
            return  # lost: never delivered
        duplicate = config.duplicates_webhook()
        self.webhooks.send(connection, event["id"], event_type, _encode(event), signer, duplicate=duplicate)
