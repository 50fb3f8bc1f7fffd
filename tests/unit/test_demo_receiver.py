"""The demo's webhook receiver: a signature that verifies is kept and answered 204, one that does not
is kept as such and answered 401 (so refundwatch retries it); a re-sent message shows as sent again."""

from __future__ import annotations

import datetime as dt

import msgspec
from litestar.testing import TestClient
from standardwebhooks import Webhook

from refundwatch.demo_receiver import PATH, create_app

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _signed(
    message_id: str, payload: dict[str, object], secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode(payload)
    now = dt.datetime.now(dt.UTC)
    signature = Webhook(secret).sign(message_id, now, body.decode())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    return body, {**headers, "content-type": "application/json"}


def test_receiver_verifies_keeps_and_shows_events() -> None:
    refund = {"id": "r1", "status": "succeeded", "amount": 500, "currency": "EUR", "sequence": 7}
    with TestClient(app=create_app(SECRET)) as client:
        body, headers = _signed("msg_7", {"type": "refund.succeeded", "timestamp": "x", "data": refund})
        assert client.post(PATH, content=body, headers=headers).status_code == 204
        assert client.post(PATH, content=body, headers=headers).status_code == 204  # a re-send
        forged, headers = _signed(
            "msg_8", {"type": "gateway.down", "data": {"connection": "c"}}, "whsec_" + "A" * 32
        )
        assert client.post(PATH, content=forged, headers=headers).status_code == 401
        shown = client.get("/events.json").json()
        page = client.get("/").text
    assert shown["total"] == 3
    newest, again, first = shown["events"]
    assert (newest["type"], newest["verified"], newest["subject"]) == ("gateway.down", False, "connection c")
    assert (again["again"], first["again"]) == (True, False)
    assert first["sequence"] == 7
    assert first["subject"] == "refund r1 · succeeded · 500 EUR"
    assert "✓ verified" in page
    assert "did not verify" in page
