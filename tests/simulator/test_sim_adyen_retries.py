"""Adyen's retry schedule for unacknowledged notifications, compressed with ``webhook_retry_scale``: every
attempt shows in ``/_control/webhooks``, retries go on until ``[accepted]`` or the schedule's end."""

from __future__ import annotations

from typing import Any

import pytest

from refundwatch.simulator.adyen.notifications import RETRY_DELAYS, RETRY_WINDOW_SECONDS

from .adyen_receiver import AdyenReceiver
from .conftest import Simulator, adyen_payment, wait_for
from .test_sim_adyen_notifications import refund

HOUR = 3600.0
# docs.adyen.com/development-resources/webhooks/troubleshoot: retries at 9, 18 and 27 seconds, then
# from the retry queue after 2, 5, 10, 15, 30 minutes, 1, 2, 4, 8 hours, for up to 30 days.
DOCUMENTED = (9.0, 9.0, 9.0, 120.0, 300.0, 600.0, 900.0, 1800.0, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR)


def test_the_schedule_is_adyens() -> None:
    assert RETRY_DELAYS[: len(DOCUMENTED)] == DOCUMENTED
    assert set(RETRY_DELAYS[len(DOCUMENTED) :]) == {8 * HOUR}  # the last interval, until 30 days
    assert RETRY_WINDOW_SECONDS == 30 * 24 * HOUR
    assert sum(RETRY_DELAYS) <= RETRY_WINDOW_SECONDS < sum(RETRY_DELAYS) + 8 * HOUR


def test_scale_is_a_fault_setting(asim: Simulator) -> None:
    assert asim.control("GET", "/faults").json()["adyen"]["webhook_retry_scale"] == 1.0  # Adyen's own pace
    for bad in (-0.1, 1.5, "fast", True):
        response = asim.control("POST", "/faults", {"processor": "adyen", "webhook_retry_scale": bad})
        assert response.status_code == 400, bad
    assert asim.faults(processor="adyen", webhook_retry_scale=0.001)["adyen"]["webhook_retry_scale"] == 0.001


def deliveries_of(sim: Simulator, psp: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = sim.control("GET", "/webhooks?processor=adyen").json()
    return [row for row in rows if psp in row["event_id"]]


def settled(sim: Simulator, psp: str) -> dict[str, Any]:
    """The delivery of ``psp``'s notification once it is acknowledged or given up."""

    def done() -> dict[str, Any] | None:
        rows = deliveries_of(sim, psp)
        return rows[0] if rows and rows[0]["state"] != "pending" else None

    row: dict[str, Any] = wait_for(done, timeout=30)
    return row


@pytest.mark.parametrize("refusal", ["500", "unaccepted"])
def test_refused_n_times_then_accepted_arrives_once(
    asim: Simulator, adyen_receiver: AdyenReceiver, refusal: str
) -> None:
    asim.faults(processor="adyen", settle_ms=50, webhook_retry_scale=0.001)
    adyen_receiver.fail_with = refusal
    adyen_receiver.fail_next = 5
    psp = refund(asim, adyen_payment(asim), 700)
    row = settled(asim, psp)
    assert row["state"] == "delivered"
    assert row["attempts"] == 6
    log = row["attempt_log"]
    assert [a["attempt"] for a in log] == [1, 2, 3, 4, 5, 6]
    assert [a["acknowledged"] for a in log] == [False] * 5 + [True]
    assert [a["status_code"] for a in log] == [500 if refusal == "500" else 200] * 5 + [200]
    assert row["next_attempt_at"] is None
    # The same notification each time, accepted once: one item reached the endpoint's books.
    (accepted,) = adyen_receiver.notifications()
    assert [note.body for note in adyen_receiver.refused] == [accepted.body] * 5
    assert [item["pspReference"] for item in adyen_receiver.items(psp)] == [psp]
    assert len(deliveries_of(asim, psp)) == 1


def test_attempts_follow_the_scaled_schedule_in_order(asim: Simulator, adyen_receiver: AdyenReceiver) -> None:
    scale = 0.001
    asim.faults(processor="adyen", settle_ms=50, webhook_retry_scale=scale)
    adyen_receiver.fail_next = 7
    psp = refund(asim, adyen_payment(asim), 300)
    log = settled(asim, psp)["attempt_log"]
    assert len(log) == 8
    waited = [a["waited"] for a in log]
    assert waited == pytest.approx([0.0, *(d * scale for d in RETRY_DELAYS[:7])])
    assert waited[1:4] == pytest.approx([0.009] * 3)  # 9 s, scaled
    assert waited[4:] == pytest.approx([0.12, 0.3, 0.6, 0.9])  # 2, 5, 10, 15 minutes, scaled
    times = [a["at"] for a in log]
    assert times == sorted(times)


def test_unacknowledged_until_the_schedule_ends(asim: Simulator, adyen_receiver: AdyenReceiver) -> None:
    asim.faults(processor="adyen", settle_ms=20, webhook_retry_scale=0.0)
    adyen_receiver.fail_next = 10_000
    psp = refund(asim, adyen_payment(asim), 100)
    row = settled(asim, psp)
    assert row["state"] == "failed"
    assert row["attempts"] == len(row["attempt_log"]) == 1 + len(RETRY_DELAYS)
    assert not any(a["acknowledged"] for a in row["attempt_log"])
    assert row["error"] == "HTTP 500"
    assert adyen_receiver.notifications() == []
