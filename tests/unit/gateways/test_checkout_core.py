"""The core's handling of a processor whose idempotency caches only successful answers and that reports
its own refundable balance (Checkout.com), decided from Capabilities, never from the processor's name.

- refunds.lookup: an attempt whose outcome is unknown is looked up in the payment's actions before any
  re-send; a failed look-up never lets the key go out again, however recent the key (for Stripe, whose
  key replays any answer, a recent key may); a 409 "same key in flight" is an unknown outcome.
- refunds.processor_balance: the processor's available_to_refund is checked before a key's first send.

The processor is httpx2.MockTransport; the database side of the core (outcomes.failed_attempt and
record_result) is replaced by recorders, so these tests see exactly what the core decides to do.
End to end (the lead's pipeline tests): a refund whose 202 was lost to a timeout is found through the
actions and not sent twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from typing import Any, cast

import httpx2
import pytest
from checkout_adapter_helpers import (
    ACTION_ID,
    PAYMENT_ID,
    CheckoutMock,
    accepted_body,
    answer,
    capture_actions,
    make_creds,
    make_request,
    payment_body,
    refund_action,
)

from refundwatch.connections.services import ConnectionInfo
from refundwatch.gateways.base import (
    Credentials,
    ErrorCode,
    GatewayError,
    GatewayStatus,
    RefundRequest,
    RefundResult,
)
from refundwatch.gateways.checkout import CheckoutGateway
from refundwatch.lib.crypto import Secret
from refundwatch.refunds import lookup, outcomes, processor_balance
from refundwatch.refunds.execution import Claim
from refundwatch.runtime import Runtime

REFUND = uuid.uuid4()


class Recorder:
    """Stands in for outcomes.failed_attempt / record_result: what the core would write."""

    def __init__(self) -> None:
        self.failed: list[GatewayError] = []
        self.recorded: list[RefundResult] = []

    async def failed_attempt(self, rt: Any, refund_id: Any, attempt: int, err: GatewayError) -> str:
        self.failed.append(err)
        return f"failed_attempt: {err.code.value}"

    async def record_result(self, rt: Any, refund_id: Any, result: RefundResult, **kwargs: Any) -> str:
        self.recorded.append(result)
        return f"recorded: {result.status.value}"


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(outcomes, "failed_attempt", rec.failed_attempt)
    monkeypatch.setattr(outcomes, "record_result", rec.record_result)
    return rec


def runtime(client: httpx2.AsyncClient) -> Runtime:
    return cast(Runtime, SimpleNamespace(require_http=lambda: client))


def connection(processor: str = "checkout", creds: Credentials | None = None) -> ConnectionInfo:
    creds = creds or make_creds()
    return cast(ConnectionInfo, SimpleNamespace(processor=processor, credentials=creds, name="conn"))


def claim(
    *, sent_ago: dt.timedelta | None = dt.timedelta(minutes=1), gateway_refund_id: str | None = None
) -> Claim:
    sent_at = dt.datetime.now(dt.UTC) - sent_ago if sent_ago is not None else None
    return Claim(
        connection_id=uuid.uuid4(),
        request=make_request(),
        attempt=2,
        look_up=True,
        gateway_refund_id=gateway_refund_id,
        key_sent_at=sent_at,
    )


# --- looking up before any re-send ----------------------------------------------------------------------


async def test_a_lost_202_is_found_in_the_actions_and_not_sent_again(recorder: Recorder) -> None:
    mock = answer(200, [refund_action(approved=None), *capture_actions()])
    async with mock.client() as client:
        outcome = await lookup.before_resend(runtime(client), connection(), REFUND, claim())
    assert outcome == "recorded: pending"
    (found,) = recorder.recorded
    assert (found.gateway_refund_id, found.status) == (ACTION_ID, GatewayStatus.PENDING)
    assert [(r.method, r.url.path) for r in mock.requests] == [("GET", f"/payments/{PAYMENT_ID}/actions")]


async def test_no_such_refund_in_readable_actions_lets_the_same_key_go_out(recorder: Recorder) -> None:
    async with answer(200, capture_actions()).client() as client:
        outcome = await lookup.before_resend(runtime(client), connection(), REFUND, claim())
    assert outcome == lookup.NOT_FOUND
    assert recorder.failed == []
    assert recorder.recorded == []


@pytest.mark.parametrize("status", [500, 502, 503, 404, 401, 429])
@pytest.mark.parametrize("sent_ago", [dt.timedelta(seconds=5), dt.timedelta(hours=30), None])
async def test_a_failed_look_up_never_re_sends_for_checkout(
    recorder: Recorder, status: int, sent_ago: dt.timedelta | None
) -> None:
    """Only 2xx are cached: even a key sent seconds ago may have executed under a 5xx."""
    mock = CheckoutMock(lambda request: httpx2.Response(status))
    async with mock.client() as client:
        outcome = await lookup.before_resend(runtime(client), connection(), REFUND, claim(sent_ago=sent_ago))
    assert outcome == "failed_attempt: outcome_unknown"
    (err,) = recorder.failed
    assert err.outcome_unknown
    assert "nothing re-sent" in err.message
    assert all(r.method == "GET" for r in mock.requests)  # never a POST


async def test_a_failed_look_up_still_re_sends_a_recent_key_where_any_answer_replays(
    recorder: Recorder,
) -> None:
    """The Stripe rule is unchanged: its key replays every answer while it is remembered."""
    stripe = Credentials(
        "stripe-test",
        "stripe",
        "http://127.0.0.1:8900/stripe",
        {"api_key": Secret("sk_test_51HxYzAbCdEf"), "webhook_secret": Secret("whsec_x")},
        timeout_seconds=3.0,
    )
    mock = CheckoutMock(lambda request: httpx2.Response(503))
    async with mock.client() as client:
        outcome = await lookup.before_resend(runtime(client), connection("stripe", stripe), REFUND, claim())
    # Re-sent, and its timeline does not say the processor confirmed there is no refund: it could not
    # be asked (a probe saw "the processor has no refund under this key" after a look-up timed out).
    assert isinstance(outcome, lookup.Resend)
    assert outcome != lookup.NOT_FOUND
    assert "could not be asked" in outcome.why
    assert "remembers this key" in outcome.why
    assert recorder.failed == []


async def test_a_known_action_id_is_read_through_its_payment(recorder: Recorder) -> None:
    mock = answer(200, [refund_action(approved=True)])
    async with mock.client() as client:
        outcome = await lookup.before_resend(
            runtime(client), connection(), REFUND, claim(gateway_refund_id=ACTION_ID)
        )
    assert outcome == "recorded: succeeded"
    assert mock.requests[0].url.path == f"/payments/{PAYMENT_ID}/actions"


def test_a_409_is_an_unknown_outcome_where_idempotency_does_not_cover_failures() -> None:
    conflict = GatewayError(ErrorCode.IDEMPOTENCY_CONFLICT, "in progress", status_code=409, retry_after=3.0)
    unknown = lookup.in_flight_unknown("checkout", conflict)
    assert unknown.code is ErrorCode.OUTCOME_UNKNOWN
    assert unknown.outcome_unknown
    assert unknown.retry_after == 3.0
    assert unknown.status_code == 409
    assert "still in flight" in unknown.message
    assert lookup.in_flight_unknown("stripe", conflict) is conflict
    refused = GatewayError(ErrorCode.DECLINED, "no")
    assert lookup.in_flight_unknown("checkout", refused) is refused


async def test_a_409_from_checkout_becomes_unknown() -> None:
    async with answer(409).client() as client:
        with pytest.raises(GatewayError) as caught:
            await CheckoutGateway().create_refund(client, make_creds(), make_request())
    assert lookup.in_flight_unknown("checkout", caught.value).outcome_unknown


def test_retention_is_24_hours() -> None:
    now = dt.datetime.now(dt.UTC)
    assert lookup.key_remembered("checkout", now - dt.timedelta(hours=20), now)
    assert not lookup.key_remembered("checkout", now - dt.timedelta(hours=22), now)  # 90 % margin
    assert not lookup.key_remembered("checkout", None, now)


# --- the processor's refundable balance -----------------------------------------------------------------


async def refusal(
    body: Any, request: RefundRequest | None = None, status: int = 200
) -> tuple[Any, CheckoutMock]:
    mock = answer(status, body)
    async with mock.client() as client:
        result = await processor_balance.refusal(runtime(client), connection(), request or make_request())
    return result, mock


async def test_a_refund_above_the_processors_balance_is_refused_before_sending() -> None:
    err, mock = await refusal(payment_body(available=1049))
    assert isinstance(err, GatewayError)
    assert err.code is ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE
    assert not err.retryable
    assert not err.outcome_unknown
    assert "not sent" in err.message
    assert "10.49 EUR" in err.message
    assert "10.50 EUR" in err.message
    assert [(r.method, r.url.path) for r in mock.requests] == [("GET", f"/payments/{PAYMENT_ID}")]


@pytest.mark.parametrize("available", [1050, 5000])
async def test_a_refund_within_the_processors_balance_goes_out(available: int) -> None:
    err, _ = await refusal(payment_body(available=available))
    assert err is None


async def test_a_payment_in_another_currency_is_refused_before_sending() -> None:
    err, _ = await refusal(payment_body(currency="GBP"))
    assert isinstance(err, GatewayError)
    assert err.code is ErrorCode.CURRENCY_MISMATCH


@pytest.mark.parametrize(
    ("status", "body"), [(500, None), (404, None), (200, {"id": PAYMENT_ID}), (200, "x")]
)
async def test_a_balance_that_cannot_be_read_stops_nothing(status: int, body: Any) -> None:
    err, _ = await refusal(body, status=status)
    assert err is None


async def test_processors_that_report_no_balance_are_not_asked() -> None:
    mock = answer(200, accepted_body())
    async with mock.client() as client:
        err = await processor_balance.refusal(
            runtime(client), connection("paypal", make_creds()), make_request()
        )
    assert err is None
    assert mock.requests == []
