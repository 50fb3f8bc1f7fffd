"""POST /webhooks/{connection} for an Adyen connection, real processes: items signed by the official
SDK's helper (Adyen.util.generate_notification_sig) are stored and answered ``[accepted]``; a tampered
item in the same delivery is refused on its own; an all-unsigned delivery and a wrong Basic password
are refused whole."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import httpx2
import pytest
from Adyen.util import generate_notification_sig

from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
BASIC = {"Authorization": "Basic " + base64.b64encode(b"adyen:s3cret").decode()}


@pytest.fixture(scope="module")
def connection(stack: Stack) -> str:
    name = f"adyen-{uuid.uuid4().hex[:8]}"
    path = stack.workdir / f"{name}.toml"
    path.write_text(
        f"""
[[connection]]
name = "{name}"
processor = "adyen"
base_url = "{stack.sim_url}/adyen"
api_key = "AQEtestkeyAbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
merchant_account = "RefundwatchECOM"
hmac_key = "{HMAC_KEY}"
webhook_username = "adyen"
webhook_password = "s3cret"
health_check_interval_seconds = 3600
"""
    )
    stack.cli("connections", "import", str(path))
    return name


def item(psp: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "amount": {"currency": "EUR", "value": 2500},
        "eventCode": "REFUND",
        "eventDate": "2026-12-06T10:00:00+01:00",
        "merchantAccountCode": "RefundwatchECOM",
        "merchantReference": str(uuid.uuid4()),
        "originalReference": "993617894903480A",
        "pspReference": psp,
        "reason": "",
        "success": "true",
    } | changes
    return values


def signed(values: dict[str, Any], key: str = HMAC_KEY) -> dict[str, Any]:
    out = copy.deepcopy(values)
    out["additionalData"] = {"hmacSignature": generate_notification_sig(values, key).decode()}
    return out


def deliver(
    stack: Stack, connection: str, *items: dict[str, Any], headers: dict[str, str] = BASIC
) -> httpx2.Response:
    body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]})
    return httpx2.post(
        f"{stack.web_url}/webhooks/{connection}",
        content=body.encode(),
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


def stored(stack: Stack, event_id: str) -> int:
    return len(db_rows(stack, "SELECT id FROM webhook_events WHERE event_id = ?", event_id))


def psp() -> str:
    return uuid.uuid4().hex[:16].upper()


def test_signed_items_are_accepted_and_a_tampered_one_refused(stack: Stack, connection: str) -> None:
    good, bad = psp(), psp()
    tampered = signed(item(bad))
    tampered["amount"] = {"currency": "EUR", "value": 999999}
    response = deliver(stack, connection, signed(item(good)), tampered)
    assert response.status_code == 200, response.text
    assert response.text == "[accepted]"
    assert stored(stack, f"{good}:REFUND:true") == 1
    assert stored(stack, f"{bad}:REFUND:true") == 0
    # The worker applies it: no refund carries that reference, and it says so.
    wait_until(
        lambda: db_rows(
            stack,
            "SELECT outcome FROM webhook_events WHERE event_id = ? AND processed_at IS NOT NULL",
            f"{good}:REFUND:true",
        ),
        timeout=20,
        what="the event to be processed",
    )
    # A redelivery is acknowledged again and stored once.
    again = deliver(stack, connection, signed(item(good)))
    assert (again.status_code, again.text) == (200, "[accepted]")
    assert stored(stack, f"{good}:REFUND:true") == 1


@pytest.mark.parametrize("case", ["unsigned", "wrong-key", "wrong-password", "no-auth"])
def test_refused_deliveries(stack: Stack, connection: str, case: str) -> None:
    reference = psp()
    values = item(reference)
    headers = BASIC
    if case == "wrong-key":
        values = signed(values, "A" * 64)
    elif case != "unsigned":
        values = signed(values)
    if case == "wrong-password":
        headers = {"Authorization": "Basic " + base64.b64encode(b"adyen:nope").decode()}
    elif case == "no-auth":
        headers = {}
    response = deliver(stack, connection, values, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_signature"
    assert stored(stack, f"{reference}:REFUND:true") == 0
