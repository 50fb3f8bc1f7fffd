"""Cko-Idempotency-Key as Checkout.com keeps it: 24 h, and only for 2xx answers.

A 202 that reached the client is replayed (same status and body, no second refund). A 4xx is not kept.
Neither is a request whose answer was lost (an injected 5xx after executing, a timeout, a reset): the
same key again really executes again, which is why a client must look for the refund before a re-send.
"""

from __future__ import annotations

import threading
import time

import httpx2
import pytest

from .checkout_kit import (
    checkout_receiver,
    checkout_simulator_process,
    csim,
    ledger,
    payment,
    read,
    refund,
)
from .conftest import Simulator

__all__ = ["checkout_receiver", "checkout_simulator_process", "csim"]


def test_a_202_is_replayed_for_the_same_key_with_one_ledger_row(csim: Simulator) -> None:
    payment_id = payment(csim, 10_000)
    body = {"amount": 1_000, "reference": "rf-1", "metadata": {"refund_id": "rf-1"}}
    first = refund(csim, payment_id, body, key="key-1")
    again = refund(csim, payment_id, body, key="key-1", bearer=False)  # either form of the same key
    assert first.status_code == again.status_code == 202
    assert again.content == first.content
    assert first.headers["cko-request-id"] != again.headers["cko-request-id"]
    rows = ledger(csim)
    assert [(r["gateway_refund_id"], r["idempotency_key"]) for r in rows] == [
        (first.json()["action_id"], "key-1")
    ]
    other = refund(csim, payment_id, body, key="key-2")  # another key: another refund
    assert other.status_code == 202
    assert other.json()["action_id"] != first.json()["action_id"]
    assert len(ledger(csim)) == 2


def test_a_4xx_is_not_kept_for_its_key(csim: Simulator) -> None:
    payment_id = payment(csim, 1_000)
    over = refund(csim, payment_id, {"amount": 5_000, "reference": "rf-2"}, key="key-4xx")
    assert over.status_code == 422
    assert over.json()["error_codes"] == ["refund_amount_exceeds_balance"]
    fixed = refund(csim, payment_id, {"amount": 500, "reference": "rf-2"}, key="key-4xx")
    assert fixed.status_code == 202
    assert [r["amount"] for r in ledger(csim)] == [500]


def test_a_5xx_after_executing_is_not_cached_so_the_same_key_executes_again(csim: Simulator) -> None:
    """The refund executed, the answer was a 5xx: Checkout.com kept nothing for the key."""
    payment_id = payment(csim, 10_000)
    body = {"amount": 1_500, "reference": "rf-3"}
    csim.faults(processor="checkout", error_rate=1.0, executed_error_share=1.0)
    lost = refund(csim, payment_id, body, key="key-5xx")
    assert lost.status_code in {500, 502, 503}
    assert lost.content == b""
    assert len(ledger(csim)) == 1  # it did execute
    csim.faults(processor="checkout", error_rate=0.0)
    found = [a for a in read(csim, f"/payments/{payment_id}/actions").json() if a["type"] == "Refund"]
    assert [a["reference"] for a in found] == ["rf-3"]  # how a client finds it before a re-send
    again = refund(csim, payment_id, body, key="key-5xx")
    assert again.status_code == 202
    rows = ledger(csim)
    assert len(rows) == 2  # a blind re-send refunds twice
    assert {r["idempotency_key"] for r in rows} == {"key-5xx"}
    assert again.json()["action_id"] == rows[1]["gateway_refund_id"] != rows[0]["gateway_refund_id"]


def test_a_5xx_before_executing_is_the_default(csim: Simulator) -> None:
    payment_id = payment(csim, 10_000)
    csim.faults(processor="checkout", error_rate=1.0)
    assert refund(csim, payment_id, {"amount": 100}, key="key-front").status_code in {500, 502, 503}
    assert ledger(csim) == []


def test_a_timeout_is_not_cached_so_the_same_key_executes_again(csim: Simulator) -> None:
    payment_id = payment(csim, 10_000)
    body = {"amount": 700, "reference": "rf-4"}
    csim.faults(processor="checkout", timeout_rate=1.0, timeout_ms=3_000)
    with pytest.raises(httpx2.TimeoutException):
        refund(csim, payment_id, body, key="key-timeout", timeout=0.5)
    csim.faults(processor="checkout", timeout_rate=0.0)
    assert len(ledger(csim)) == 1
    again = refund(csim, payment_id, body, key="key-timeout")
    assert again.status_code == 202
    assert len(ledger(csim)) == 2
    replay = refund(csim, payment_id, body, key="key-timeout")  # this 202 arrived: it is kept
    assert replay.content == again.content
    assert len(ledger(csim)) == 2


def test_a_key_past_its_retention_executes_again(csim: Simulator) -> None:
    payment_id = payment(csim, 10_000)
    assert csim.faults()["checkout"]["idempotency_retention_seconds"] == 86_400
    csim.faults(processor="checkout", idempotency_retention_seconds=0.3)
    first = refund(csim, payment_id, {"amount": 100}, key="key-old")
    time.sleep(0.5)
    second = refund(csim, payment_id, {"amount": 100}, key="key-old")
    assert first.status_code == second.status_code == 202
    assert first.json()["action_id"] != second.json()["action_id"]
    assert len(ledger(csim)) == 2


def test_the_same_key_in_flight_answers_409(csim: Simulator) -> None:
    payment_id = payment(csim, 10_000)
    csim.faults(processor="checkout", latency_ms=600)
    answers: list[int] = []

    def send() -> None:
        answers.append(refund(csim, payment_id, {"amount": 100}, key="key-busy").status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202, 409]
    assert len(ledger(csim)) == 1


def test_balance_holds_pending_refunds_and_403_when_nothing_is_left(csim: Simulator) -> None:
    payment_id = payment(csim, 1_000)
    assert refund(csim, payment_id, {"amount": 600}).status_code == 202
    over = refund(csim, payment_id, {"amount": 401})
    assert over.status_code == 422
    assert refund(csim, payment_id, {"amount": 400}).status_code == 202
    done = refund(csim, payment_id, {"amount": 1})
    assert done.status_code == 403
    assert done.content == b""
    balances = read(csim, f"/payments/{payment_id}").json()["balances"]
    assert balances["available_to_refund"] == 0
    assert refund(csim, "pay_" + "z" * 26, {"amount": 1}).status_code == 404
    assert refund(csim, payment_id, {"amount": 1}, secret="sk_sbox_unknown").status_code == 401


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": 0}, "amount_invalid"),
        ({"amount": "10"}, "amount_invalid"),
        ({"amount": 10, "reference": "r" * 51}, "reference_invalid"),
        ({"amount": 10, "metadata": {"nested": {"a": 1}}}, "metadata_invalid"),
        ({"amount": 10, "metadata": {"list": [1]}}, "metadata_invalid"),
    ],
)
def test_invalid_requests_answer_422(csim: Simulator, body: dict[str, object], code: str) -> None:
    answer = refund(csim, payment(csim), body)
    assert answer.status_code == 422
    assert answer.json()["error_type"] == "request_invalid"
    assert answer.json()["error_codes"] == [code]
    assert ledger(csim) == []
