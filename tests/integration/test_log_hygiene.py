"""The logs of a full flow are structured JSON with request ids, and hold no secret, token, cookie or
card number: sign-in, API keys, machine tokens, refunds through the worker, signed webhooks, errors."""

from __future__ import annotations

import json
import re

import pytest

from processors import STRIPE_KEY, STRIPE_SECRET
from stack import Stack, wait_until

pytestmark = pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
CARD = "4111 1111 1111 1111"


def test_a_full_flow_leaves_no_secret_in_the_logs(stack: Stack) -> None:
    assert stack.idp is not None
    secrets: set[str] = {stack.api_key, STRIPE_KEY, STRIPE_SECRET, "4111111111111111", CARD}
    # Staff: sign in, look around, start a refund, sign out.
    client = stack.sign_in("ivan-initiator")
    secrets.update(v for k, v in client.cookies.items() if k in ("rw_session", "rw_csrf"))
    assert client.get("/refunds").status_code == 200
    assert client.get("/").status_code == 200
    # Machine clients: an API key and a client-credentials token, one refund each, and a refused card.
    token = stack.idp.machine_token()
    secrets.add(token)
    reference = stack.payment(10_000)
    first = stack.refund(reference, 1_000).json()
    with stack.api() as api:
        api.headers["Authorization"] = f"Bearer {token}"
        second = api.post(
            "/api/v1/refunds",
            headers={"Idempotency-Key": "log-hygiene-2"},
            json={"payment_reference": reference, "amount": 500, "currency": "EUR", "reason": "return"},
        )
        assert second.status_code == 201, second.text
        refused = api.post(
            "/api/v1/refunds",
            headers={"Idempotency-Key": "log-hygiene-3"},
            json={"payment_reference": reference, "amount": 500, "currency": "EUR", "reason": "return",
                  "metadata": {"note": f"card {CARD}"}},
        )  # fmt: skip
        assert refused.status_code == 422
        api.headers["Authorization"] = "Bearer " + token[:-4] + "AAAA"  # a tampered token: 401
        assert api.get("/api/v1/refunds").status_code == 401
    for refund_id in (first["id"], second.json()["id"]):
        wait_until(lambda rid=refund_id: stack.get(rid)["status"] == "succeeded", timeout=30, what="done")
    client.close()

    web = (stack.workdir / "web.log").read_text(errors="replace")
    worker = (stack.workdir / "worker.log").read_text(errors="replace")
    for name, text in (("web.log", web), ("worker.log", worker)):
        for secret in secrets:
            assert secret not in text, f"{name} contains a secret ({secret[:6]}…)"
        assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", text), f"{name} contains a JWT"
    records = [json.loads(line) for line in web.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "refundwatch.access"]
    assert access, "no access lines"
    assert all(re.fullmatch(r"[0-9a-f]{32}", r.get("request_id", "")) for r in access)
    assert any(r["message"].startswith("POST /api/v1/refunds 201") for r in access)
    assert not any("?" in r["message"] for r in access)  # no query strings (references, return paths)
