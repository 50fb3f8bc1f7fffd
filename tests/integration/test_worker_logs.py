"""The worker's JSON log tells each refund's outcome in one structured line, and when a processor's
circuit opens and closes: what an operator reads after an outage, without secrets or card data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from processors import STRIPE_KEY, STRIPE_SECRET
from stack import Stack, wait_until

pytestmark = pytest.mark.slow


def _records(stack: Stack, logger: str) -> list[dict[str, Any]]:
    text = (stack.workdir / "worker.log").read_text(errors="replace")
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("logger") == logger]


def _outcome(stack: Stack, refund_id: str, status: str) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in _records(stack, "refundwatch.outcomes")
            if r.get("refund_id") == refund_id and r["status"] == status
        ),
        None,
    )


def test_each_outcome_is_one_structured_line(stack: Stack) -> None:
    ok = stack.refund(stack.payment(10_000), 1_200, metadata={"note": "kept out of logs"}).json()["id"]
    # The processor knows only 1,000 of this payment: it refuses a refund of 5,000.
    refused = stack.refund(stack.payment(10_000, simulator_amount=1_000), 5_000).json()["id"]
    stack.wait_status(ok, "succeeded")
    stack.wait_status(refused, "failed")
    line = wait_until(lambda: _outcome(stack, ok, "succeeded"), timeout=20, what="the success logged")
    assert line["level"] == "info"
    assert {k: line[k] for k in ("connection", "amount", "currency", "attempts", "error_code")} == {
        "connection": "stripe-test",
        "amount": 1_200,
        "currency": "EUR",
        "attempts": 1,
        "error_code": None,
    }
    assert f"refund_id={ok}" in line["message"]
    line = wait_until(lambda: _outcome(stack, refused, "failed"), timeout=20, what="the refusal logged")
    assert line["level"] == "warning"
    assert line["error_code"] == stack.get(refused)["error_code"]
    assert line["error_code"]
    assert [r["status"] for r in _records(stack, "refundwatch.outcomes") if r["refund_id"] == ok] == [
        "succeeded"
    ]
    text = json.dumps(_records(stack, "refundwatch.outcomes"))
    for secret in (stack.api_key, STRIPE_KEY, STRIPE_SECRET, "kept out of logs"):
        assert secret not in text


def test_the_circuit_opening_and_closing_is_logged(stack: Stack) -> None:
    # Created while no worker runs, so their first attempts fail together: one refund alone spends its
    # four attempts (the stack's limit) before five failures in a row open the circuit, and on a loaded
    # machine refunds created one by one arrive alone.
    stack.stop_worker()
    stack.faults(outage=True)
    try:
        ids = [stack.refund(stack.payment(3_000), 500).json()["id"] for _ in range(6)]
        stack.start_worker()
        opened = wait_until(
            lambda: [r for r in _records(stack, "refundwatch.breaker") if r.get("event") == "circuit_opened"],
            timeout=30,
            what="the circuit opened",
        )
    finally:
        stack.faults()
        if not stack.procs["worker"].alive:
            stack.start_worker()
    for refund_id in ids:
        stack.wait_status(refund_id, "succeeded", timeout=60)
    closed = wait_until(
        lambda: [r for r in _records(stack, "refundwatch.breaker") if r.get("event") == "circuit_closed"],
        timeout=30,
        what="the circuit closed",
    )
    assert opened[0]["level"] == "warning"
    assert opened[0]["connection"] == "stripe-test"
    assert opened[0]["failures"] >= 5
    assert closed[0]["connection"] == "stripe-test"
    assert "connection=stripe-test" in closed[0]["message"]
    # One line each per opening and closing, not one per refund held back.
    assert len(opened) == len(closed)
    for refund_id in ids:
        wait_until(lambda rid=refund_id: _outcome(stack, rid, "succeeded"), timeout=20, what="outcome logged")
