"""The shared faults in front of the Checkout.com simulator: outage, resets, mangled answers, latency."""

from __future__ import annotations

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


def test_outage_answers_503_everywhere_and_executes_nothing(csim: Simulator) -> None:
    payment_id = payment(csim)
    csim.faults(processor="checkout", outage=True, executed_error_share=1.0)
    assert refund(csim, payment_id, {"amount": 100}, key="k-out").status_code == 503
    assert read(csim, f"/payments/{payment_id}").status_code == 503
    assert read(csim, "/event-types").status_code == 503
    assert ledger(csim) == []
    csim.faults(processor="checkout", outage=False)
    assert refund(csim, payment_id, {"amount": 100}, key="k-out").status_code == 202


def test_a_reset_after_executing_is_not_kept_for_its_key(csim: Simulator) -> None:
    """Half of the resets come after the refund executed: the same key may then execute again."""
    payment_id = payment(csim, 100_000)
    csim.faults(processor="checkout", reset_rate=1.0)
    executed = 0
    for _ in range(20):
        before = len(ledger(csim))
        with pytest.raises(httpx2.TransportError):
            refund(csim, payment_id, {"amount": 10}, key="k-reset")
        executed += len(ledger(csim)) - before
        if executed >= 2:
            break
    assert executed >= 2, "the resets all came before executing"  # 20 tries: ~2e-5 to miss
    assert {r["idempotency_key"] for r in ledger(csim)} == {"k-reset"}


def test_a_mangled_202_is_kept_and_replayed_intact(csim: Simulator) -> None:
    payment_id = payment(csim)
    csim.faults(processor="checkout", malformed_rate=1.0)
    try:  # the answer reached the client, its body did not survive (cut short, or "gzip")
        mangled = refund(csim, payment_id, {"amount": 250, "reference": "rf-m"}, key="k-mangled")
        assert mangled.status_code == 202
    except httpx2.DecodingError:
        pass
    csim.faults(processor="checkout", malformed_rate=0.0)
    replay = refund(csim, payment_id, {"amount": 250, "reference": "rf-m"}, key="k-mangled")
    assert replay.status_code == 202
    assert replay.json()["action_id"] == ledger(csim)[0]["gateway_refund_id"]
    assert len(ledger(csim)) == 1


def test_latency_applies_to_reads(csim: Simulator) -> None:
    payment_id = payment(csim)
    csim.faults(processor="checkout", latency_ms=300)
    started = time.monotonic()
    assert read(csim, f"/payments/{payment_id}/actions").status_code == 200
    assert time.monotonic() - started >= 0.3
