"""The worker's outcome and circuit lines: one each, structured, as the JSON formatter writes them."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from refundwatch.logs import JsonFormatter
from refundwatch.refunds.breaker import Breaker
from refundwatch.refunds.outcome_log import FinalOutcome, log_outcome


def _json(record: logging.LogRecord) -> dict[str, object]:
    result: dict[str, object] = json.loads(JsonFormatter().format(record))
    return result


def test_an_outcome_is_one_line_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    refund_id = uuid.uuid4()
    outcome = FinalOutcome(refund_id, uuid.uuid4(), "failed", 2_500, "EUR", 3, "declined")
    with caplog.at_level(logging.INFO, logger="refundwatch.outcomes"):
        log_outcome(outcome, "stripe-eu")
    (record,) = caplog.records
    line = _json(record)
    assert line["level"] == "warning"
    assert {k: line[k] for k in ("refund_id", "connection", "status", "amount", "currency", "attempts")} == {
        "refund_id": str(refund_id),
        "connection": "stripe-eu",
        "status": "failed",
        "amount": 2_500,
        "currency": "EUR",
        "attempts": 3,
    }
    assert line["error_code"] == "declined"
    assert "error_code=declined" in str(line["message"])


def test_the_breaker_logs_opening_once_and_closing_once(caplog: pytest.LogCaptureFixture) -> None:
    breaker, conn = Breaker(threshold=3, open_seconds=30), uuid.uuid4()
    with caplog.at_level(logging.INFO, logger="refundwatch.breaker"):
        for _ in range(10):
            breaker.record(conn, ok=False, name="adyen-eu")
        breaker.record(conn, ok=True)
        breaker.record(conn, ok=True)
    events = [_json(r) for r in caplog.records]
    assert [e["event"] for e in events] == ["circuit_opened", "circuit_closed"]
    assert events[0]["failures"] == 3
    assert {e["connection"] for e in events} == {"adyen-eu"}
