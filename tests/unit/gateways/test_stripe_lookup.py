"""Unknown outcomes and looking a refund up (issue 11): StripeGateway against httpx2.MockTransport.

A 2xx that cannot be read is no refusal: the refund may exist, so the adapter says OUTCOME_UNKNOWN and
``find_refund`` settles it by listing the payment's refunds and matching this attempt's metadata. The
list request is checked against the official SDK (stripe 16.1.0): its parameters and its encoder.
"""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from stripe._encode import _api_encode
from stripe.params import RefundListParams

from refundwatch.gateways.base import (
    UNKNOWN_OUTCOME_CODES,
    Credentials,
    ErrorCode,
    GatewayError,
    GatewayStatus,
    RefundRequest,
    RefundResult,
)
from refundwatch.gateways.stripe import StripeGateway
from refundwatch.gateways.stripe import transformers as tx
from refundwatch.lib.crypto import Secret

FIXTURES = Path(__file__).parent / "fixtures"
BASE_URL = "http://127.0.0.1:8900/stripe"
PI = "pi_3PgafuB7WZ01zgkW0abcdEFG"
KEY = "rw-rf_0001-2"

gateway = StripeGateway()
Respond = Callable[[httpx2.Request], httpx2.Response]


def creds() -> Credentials:
    secrets = {"api_key": Secret("sk_test_51HxYzAbCdEf"), "webhook_secret": Secret("whsec_x")}
    return Credentials("stripe-test", "stripe", BASE_URL, secrets, timeout_seconds=3.0)


def request(**changes: Any) -> RefundRequest:
    values: dict[str, Any] = {
        "refund_id": "rf_0001",
        "payment_reference": PI,
        "amount": 1050,
        "currency": "EUR",
        "reason": "requested_by_customer",
        "idempotency_key": KEY,
    } | changes
    return RefundRequest(**values)


def refund(refund_id: str, *, key: str | None = KEY, refund_for: str = "rf_0001", **changes: Any) -> Any:
    body: dict[str, Any] = json.loads((FIXTURES / "stripe_refund.json").read_text())
    metadata = {"refundwatch_refund_id": refund_for, "order": "A-1001"}
    if key is not None:
        metadata["refundwatch_idempotency_key"] = key
    body.update(id=refund_id, metadata=metadata, **changes)
    return body


def page(*refunds: Any, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": list(refunds), "has_more": has_more, "url": "/v1/refunds"}


class Stripe:
    """Serves a payment's refunds (newest first) as Stripe's paginated list, recording each query."""

    def __init__(self, refunds: list[Any], *, page_size: int | None = None) -> None:
        self.refunds = refunds
        self.page_size = page_size
        self.queries: list[dict[str, str]] = []
        self.paths: list[str] = []

    def __call__(self, req: httpx2.Request) -> httpx2.Response:
        assert req.method == "GET"
        self.paths.append(urlsplit(str(req.url)).path)
        query = dict(parse_qsl(urlsplit(str(req.url)).query))
        self.queries.append(query)
        start = 0
        if "starting_after" in query:
            start = 1 + next(i for i, r in enumerate(self.refunds) if r["id"] == query["starting_after"])
        size = self.page_size or int(query["limit"])
        chunk = self.refunds[start : start + size]
        return httpx2.Response(
            200, json=page(*copy.deepcopy(chunk), has_more=start + size < len(self.refunds))
        )


async def call(respond: Respond, coro: Callable[[httpx2.AsyncClient], Any]) -> Any:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(respond)) as client:
        return await coro(client)


async def find(respond: Respond, req: RefundRequest | None = None) -> RefundResult | None:
    result: RefundResult | None = await call(
        respond, lambda c: gateway.find_refund(c, creds(), req or request())
    )
    return result


async def find_error(respond: Respond, req: RefundRequest | None = None) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await find(respond, req)
    return info.value


async def create_error(respond: Respond) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await call(respond, lambda c: gateway.create_refund(c, creds(), request()))
    return info.value


# --- the protocol's additions -------------------------------------------------------------------------


def test_retention_and_unknown_codes() -> None:
    assert gateway.idempotency_retention_seconds == 24 * 3600
    assert {
        ErrorCode.TIMEOUT,
        ErrorCode.CONNECTION_ERROR,
        ErrorCode.OUTCOME_UNKNOWN,
        ErrorCode.GATEWAY_UNAVAILABLE,
    } == UNKNOWN_OUTCOME_CODES
    assert not GatewayError(ErrorCode.OUTCOME_UNKNOWN, "x").retryable  # the core settles it by lookup
    assert not GatewayError(ErrorCode.DECLINED, "x").outcome_unknown


def test_the_key_travels_in_metadata() -> None:
    form = tx.build_refund_form(request())
    assert form["metadata[refundwatch_idempotency_key]"] == KEY


# --- defect 2: a 2xx that cannot be read ---------------------------------------------------------------


async def test_truncated_2xx_is_outcome_unknown_never_a_refusal() -> None:
    body = json.dumps(refund("re_1")).encode()
    error = await create_error(lambda r: httpx2.Response(200, content=body[: len(body) // 2]))
    assert error.code is ErrorCode.OUTCOME_UNKNOWN
    assert error.outcome_unknown
    assert error.status_code == 200
    assert "may exist" in error.message


async def test_gzip_declared_but_not_gzip_is_outcome_unknown() -> None:
    """A proxy that labels a plain body gzip: httpx2 cannot decode it, yet Stripe executed the refund."""
    body = json.dumps(refund("re_1")).encode()
    error = await create_error(
        lambda r: httpx2.Response(200, content=body, headers={"Content-Encoding": "gzip"})
    )
    assert error.code is ErrorCode.OUTCOME_UNKNOWN
    assert error.outcome_unknown
    assert error.exchange is not None
    assert error.exchange.path == "/v1/refunds"


async def test_real_gzip_is_read() -> None:
    body = gzip.compress(json.dumps(refund("re_1")).encode())
    result = await call(
        lambda r: httpx2.Response(200, content=body, headers={"Content-Encoding": "gzip"}),
        lambda c: gateway.create_refund(c, creds(), request()),
    )
    assert result.gateway_refund_id == "re_1"
    assert result.idempotency_key == KEY


async def test_connect_error_is_connection_error_nothing_sent() -> None:
    def refuse(req: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=req)

    error = await create_error(refuse)
    assert error.code is ErrorCode.CONNECTION_ERROR
    assert "nothing was sent" in error.message


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_after_sending_is_outcome_unknown(status: int) -> None:
    error = await create_error(lambda r: httpx2.Response(status, text="<html>bad gateway</html>"))
    assert error.code is ErrorCode.GATEWAY_UNAVAILABLE
    assert error.outcome_unknown


# --- find_refund ---------------------------------------------------------------------------------------


async def test_lookup_request_is_what_the_sdk_sends() -> None:
    stripe = Stripe([refund("re_2")])
    await find(stripe)
    (query,) = stripe.queries
    assert stripe.paths == ["/stripe/v1/refunds"]
    assert set(query) <= set(RefundListParams.__annotations__)
    assert query == {k: str(v) for k, v in _api_encode({"payment_intent": PI, "limit": 100})}


async def test_lookup_by_charge_for_a_charge_reference() -> None:
    stripe = Stripe([])
    assert await find(stripe, request(payment_reference="ch_1PgafuB7WZ01zgkWXYmPNZs8")) is None
    assert stripe.queries == [{"charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8", "limit": "100"}]


async def test_match_on_this_attempts_key_among_other_attempts() -> None:
    refunds = [
        refund("re_3", key="rw-rf_0002", refund_for="rf_0002"),  # another refund of the same payment
        refund("re_2", status="pending"),  # this attempt
        refund("re_1", key="rw-rf_0001-1", status="failed", failure_reason="declined"),  # earlier attempt
    ]
    result = await find(Stripe(refunds))
    assert result is not None
    assert (result.gateway_refund_id, result.status, result.idempotency_key) == (
        "re_2",
        GatewayStatus.PENDING,
        KEY,
    )
    assert (result.amount, result.currency) == (1050, "EUR")


async def test_other_attempts_refund_is_not_ours() -> None:
    refunds = [refund("re_1", key="rw-rf_0001-1", status="failed"), refund("re_9", refund_for="rf_0009")]
    assert await find(Stripe(refunds)) is None


async def test_none_when_the_payment_has_no_refunds() -> None:
    assert await find(Stripe([])) is None


async def test_pagination_follows_has_more() -> None:
    others = [refund(f"re_o{i}", key=f"k{i}", refund_for=f"rf_{i}") for i in range(7)]
    stripe = Stripe([*others, refund("re_mine")], page_size=3)
    result = await find(stripe)
    assert result is not None
    assert result.gateway_refund_id == "re_mine"
    assert [q.get("starting_after") for q in stripe.queries] == [None, "re_o2", "re_o5"]


async def test_too_many_pages_cannot_conclude_none() -> None:
    stripe = Stripe([refund(f"re_{i}", key=f"k{i}", refund_for=f"rf_{i}") for i in range(30)], page_size=1)
    error = await find_error(stripe)
    assert error.code is ErrorCode.OUTCOME_UNKNOWN
    assert len(stripe.queries) == 20


async def test_legacy_refund_without_key_matches_when_it_is_the_only_candidate() -> None:
    refunds = [refund("re_old", key=None), refund("re_x", key="k", refund_for="rf_other")]
    result = await find(Stripe(refunds))
    assert result is not None
    assert result.gateway_refund_id == "re_old"
    assert result.idempotency_key is None


async def test_legacy_refund_beside_other_attempts_is_for_a_person() -> None:
    refunds = [refund("re_new", key="rw-rf_0001-9"), refund("re_old", key=None)]
    error = await find_error(Stripe(refunds))
    assert error.code is ErrorCode.RESPONSE_MISMATCH
    assert "re_old" in error.message


async def test_two_refunds_with_this_key_were_paid_twice() -> None:
    """A blind re-send past Stripe's retention executed again: a person must look, never a third."""
    error = await find_error(Stripe([refund("re_b"), refund("re_a")]))
    assert error.code is ErrorCode.RESPONSE_MISMATCH
    assert "re_a" in error.message
    assert "re_b" in error.message


async def test_matched_refund_with_another_amount_is_a_mismatch() -> None:
    error = await find_error(Stripe([refund("re_2", amount=999)]))
    assert error.code is ErrorCode.RESPONSE_MISMATCH


@pytest.mark.parametrize(
    "respond",
    [
        lambda r: httpx2.Response(200, text="<html>ok</html>"),
        lambda r: httpx2.Response(200, json={"object": "list", "data": "nope", "has_more": False}),
        lambda r: httpx2.Response(200, json=page({"object": "refund", "id": "re_1"})),
        lambda r: httpx2.Response(200, json=page(has_more=True)),
    ],
)
async def test_unreadable_list_cannot_tell(respond: Respond) -> None:
    error = await find_error(respond)
    assert error.code is ErrorCode.OUTCOME_UNKNOWN


async def test_unreachable_stripe_cannot_tell() -> None:
    error = await find_error(lambda r: httpx2.Response(503, json={"error": {"type": "api_error"}}))
    assert error.code is ErrorCode.GATEWAY_UNAVAILABLE


# --- webhooks carry the attempt ------------------------------------------------------------------------


def test_event_carries_the_attempts_key() -> None:
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "refund.updated",
        "data": {"object": refund("re_2")},
    }
    parsed = tx.parse_event(json.dumps(event).encode())
    assert (parsed.gateway_refund_id, parsed.idempotency_key, parsed.refund_id) == ("re_2", KEY, "rf_0001")
    event["data"] = {"object": refund("re_1", key=None)}
    assert tx.parse_event(json.dumps(event).encode()).idempotency_key is None
