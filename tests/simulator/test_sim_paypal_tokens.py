"""PayPal's OAuth tokens at the simulator: the token call, bearer checks, expiry and the count."""

from __future__ import annotations

import time

from .conftest import Simulator
from .paypal_kit import (
    CLIENT_ID,
    US_CLIENT_ID,
    US_CLIENT_SECRET,
    basic,
    capture,
    eur,
    get_token,
    paypal_cert_dir,
    paypal_receiver,
    paypal_simulator_process,
    psim,
    refund,
)

__all__ = ["paypal_cert_dir", "paypal_receiver", "paypal_simulator_process", "psim"]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _token_call(
    sim: Simulator, authorization: str | None, body: bytes = b"grant_type=client_credentials"
) -> tuple[int, dict[str, object]]:
    headers = dict(FORM)
    if authorization is not None:
        headers["Authorization"] = authorization
    response = sim.http.post(f"{sim.url}/paypal/v1/oauth2/token", content=body, headers=headers)
    return response.status_code, response.json()


def test_token_answer_as_paypal_gives_it(psim: Simulator) -> None:
    status, body = _token_call(psim, basic())
    assert status == 200
    assert set(body) == {"scope", "access_token", "token_type", "app_id", "expires_in", "nonce"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 32_400
    assert str(body["access_token"]).startswith("A21AA")
    assert str(body["app_id"]).startswith("APP-")
    assert "https://uri.paypal.com/services/payments/refund" in str(body["scope"])


def test_unknown_client_wrong_secret_and_grant(psim: Simulator) -> None:
    refused = {"error": "invalid_client", "error_description": "Client Authentication failed"}
    assert _token_call(psim, basic(CLIENT_ID, "wrong")) == (401, refused)
    assert _token_call(psim, basic("nobody", "nothing")) == (401, refused)
    assert _token_call(psim, None) == (401, refused)
    assert _token_call(psim, "Basic not-base64!") == (401, refused)
    status, body = _token_call(psim, basic(), b"")
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = _token_call(psim, basic(), b"grant_type=password")
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    # The second connection's own pair works too.
    assert _token_call(psim, basic(US_CLIENT_ID, US_CLIENT_SECRET))[0] == 200


def test_api_calls_need_a_live_bearer(psim: Simulator) -> None:
    capture_id = capture(psim)
    missing = psim.http.get(f"{psim.url}/paypal/v2/payments/captures/{capture_id}")
    assert missing.status_code == 401
    assert missing.json()["name"] == "AUTHENTICATION_FAILURE"
    unknown = refund(psim, "A21AAnot-a-token", capture_id, eur("1.00"))
    assert unknown.status_code == 401
    assert unknown.json() == {
        "error": "invalid_token",
        "error_description": "Access Token not found in cache",
    }
    assert psim.ledger("paypal") == []


def test_an_expired_token_is_refused_and_a_new_one_works(psim: Simulator) -> None:
    capture_id = capture(psim)
    psim.faults(processor="paypal", token_ttl_seconds=1)
    status, body = _token_call(psim, basic())
    assert (status, body["expires_in"]) == (200, 1)
    token = str(body["access_token"])
    assert refund(psim, token, capture_id, eur("1.00")).status_code == 201
    time.sleep(1.2)
    expired = refund(psim, token, capture_id, eur("1.00"))
    assert expired.status_code == 401
    assert expired.json()["error"] == "invalid_token"
    assert refund(psim, get_token(psim), capture_id, eur("1.00")).status_code == 201
    assert len(psim.ledger("paypal")) == 2  # the refused call executed nothing


def test_tokens_are_counted_and_can_be_expired_at_once(psim: Simulator) -> None:
    before = psim.control("GET", "/paypal/tokens").json()["issued"]
    tokens = [get_token(psim) for _ in range(3)]
    counts = psim.control("GET", "/paypal/tokens").json()
    assert counts["issued"] == before + 3
    assert counts["active"] >= 3
    assert psim.control("POST", "/paypal/tokens/expire").json()["expired"] >= 3
    capture_id = capture(psim)
    assert all(refund(psim, t, capture_id, eur("1.00")).status_code == 401 for t in tokens)
    assert psim.control("GET", "/paypal/tokens").json()["active"] == 0


def test_token_survives_reset(psim: Simulator) -> None:
    token = get_token(psim)
    psim.reset()
    capture_id = capture(psim)
    assert refund(psim, token, capture_id, eur("1.00")).status_code == 201


def test_token_calls_meet_the_injected_faults(psim: Simulator) -> None:
    psim.faults(processor="paypal", outage=True)
    status, body = _token_call(psim, basic())
    assert (status, body["name"]) == (503, "SERVICE_UNAVAILABLE")
