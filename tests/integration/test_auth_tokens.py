"""Machine clients on the API with OIDC client-credentials access tokens (CONTRACT §4; issue 3 §6).

Real RFC 9068 tokens from the session's identity provider, and crafted ones from its signing hook
(real key, unknown key, ``alg: none``, HS256 with the public key), against a real refundwatch on
each database backend. Missing/invalid token → 401 ``invalid_token``; missing scope → 403
``insufficient_scope``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from identity_provider import (
    API_SCOPES,
    READER_CLIENT,
    WEB_CLIENT,
    IdentityProvider,
    flip_signature,
    swap_claims,
)
from stack import Stack, db_rows

AT_JWT = {"typ": "at+jwt"}

# --------------------------------------------------------------------------------------------- helpers


def loopback_address() -> str:
    """Each client its own loopback source address: refundwatch limits failed authentications per
    address, and these tests fail many on purpose."""
    return f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(253) + 2}"


def api(stack: Stack, token: str | None) -> httpx2.Client:
    headers = {"User-Agent": f"refundwatch-token-tests/{uuid.uuid4().hex}"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.Client(
        base_url=stack.web_url,
        timeout=30,
        headers=headers,
        transport=httpx2.HTTPTransport(local_address=loopback_address()),
    )


def idp_of(stack: Stack) -> IdentityProvider:
    assert stack.idp is not None
    return stack.idp


def payment_body(reference: str | None = None, amount: int = 10_000) -> dict[str, Any]:
    return {
        "connection": "stripe-test",
        "payment_reference": reference or f"pi_{uuid.uuid4().hex[:20]}",
        "amount": amount,
        "currency": "EUR",
        "captured_at": "2026-11-01T10:00:00Z",
    }


def refund_body(reference: str, amount: int = 1_000) -> dict[str, Any]:
    return {"payment_reference": reference, "amount": amount, "currency": "EUR", "reason": "return"}


def assert_error(response: httpx2.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.json()["code"] == code, response.text[:500]


def _now() -> int:
    return int(time.time())


# ------------------------------------------------------------------------------------- real tokens


def test_a_machine_token_with_every_scope_reads_and_writes(stack: Stack) -> None:
    idp = idp_of(stack)
    token = idp.machine_token()
    with api(stack, token) as client:
        listed = client.get("/api/v1/refunds")
        assert listed.status_code == 200, listed.text[:500]

        body = payment_body()
        created = client.post("/api/v1/payments", json=body)
        assert created.status_code == 201, created.text[:500]
        assert client.post("/api/v1/payments", json=body).status_code in (200, 201)
        changed = client.post("/api/v1/payments", json={**body, "amount": body["amount"] + 1})
        assert changed.status_code == 409, changed.text[:500]
        invalid = client.post("/api/v1/payments", json={**body, "amount": "lots"})
        assert invalid.status_code == 422, invalid.text[:500]

        reference = stack.payment(20_000)
        refund = client.post(
            "/api/v1/refunds", headers={"Idempotency-Key": uuid.uuid4().hex}, json=refund_body(reference)
        )
        assert refund.status_code == 201, refund.text[:500]
        refund_id = refund.json()["id"]
        fetched = client.get(f"/api/v1/refunds/{refund_id}")
        assert fetched.status_code == 200
        assert fetched.json()["id"] == refund_id

        # The machine client is who the audit log names for what it did.
        rows = db_rows(
            stack,
            "SELECT action, actor_type, actor_id FROM audit_log WHERE user_agent = ?",
            str(client.headers["user-agent"]),
        )
    assert rows, "the machine client's writes were not audited"
    for action, actor_type, actor_id in rows:
        assert actor_type == "client", (action, actor_type, actor_id)
        assert "refundwatch-machine" in actor_id, (action, actor_id)


def test_a_reader_token_reads_but_does_not_write(stack: Stack) -> None:
    idp = idp_of(stack)
    token = idp.machine_token("refunds:read", READER_CLIENT)
    reference = stack.payment(20_000)
    existing = stack.refund(reference, 1_000)
    assert existing.status_code == 201, existing.text
    with api(stack, token) as client:
        assert client.get("/api/v1/refunds").status_code == 200
        assert client.get(f"/api/v1/refunds/{existing.json()['id']}").status_code == 200
        assert_error(
            client.post(
                "/api/v1/refunds", headers={"Idempotency-Key": uuid.uuid4().hex}, json=refund_body(reference)
            ),
            403,
            "insufficient_scope",
        )
        assert_error(client.post("/api/v1/payments", json=payment_body()), 403, "insufficient_scope")
        assert_error(
            client.post(f"/api/v1/refunds/{existing.json()['id']}/cancel"), 403, "insufficient_scope"
        )
    # Nothing was created or canceled by the refused calls.
    with stack.api() as client:
        listed = client.get("/api/v1/refunds", params={"payment_reference": reference}).json()
    assert [r["id"] for r in listed["data"]] == [existing.json()["id"]]
    assert listed["data"][0]["status"] != "canceled"


def test_a_reader_cannot_get_more_scopes_than_it_has(stack: Stack) -> None:
    response = idp_of(stack).client_credentials(" ".join(API_SCOPES), READER_CLIENT)
    assert response.status_code == 400, response.text  # invalid_scope at the provider


def test_a_token_without_scope_claim_may_do_nothing(stack: Stack) -> None:
    response = idp_of(stack).client_credentials(scope=None)
    assert response.status_code == 200, response.text
    with api(stack, response.json()["access_token"]) as client:
        assert_error(client.get("/api/v1/refunds"), 403, "insufficient_scope")
        assert_error(client.post("/api/v1/payments", json=payment_body()), 403, "insufficient_scope")


def test_one_scope_grants_only_itself(stack: Stack) -> None:
    token = idp_of(stack).machine_token("payments:write")
    with api(stack, token) as client:
        assert client.post("/api/v1/payments", json=payment_body()).status_code == 201
        assert_error(client.get("/api/v1/refunds"), 403, "insufficient_scope")
        assert_error(client.get("/api/v1/webhook-endpoints"), 403, "insufficient_scope")


def test_a_machine_client_manages_webhook_endpoints_with_webhooks_write(stack: Stack) -> None:
    with api(stack, idp_of(stack).machine_token("webhooks:write")) as client:
        listed = client.get("/api/v1/webhook-endpoints")
        assert listed.status_code == 200, listed.text
        assert_error(client.get("/api/v1/refunds"), 403, "insufficient_scope")


# ---------------------------------------------------------------------------------- crafted tokens


def test_a_crafted_token_like_a_real_one_is_accepted(stack: Stack) -> None:
    """The control for the cases below: a token from the signing hook with the real key and the
    right claims and header works, so each refusal below is due to the one thing changed."""
    idp = idp_of(stack)
    with api(stack, idp.sign(idp.access_token_claims(), header=AT_JWT)) as client:
        assert client.get("/api/v1/refunds").status_code == 200
    with api(stack, idp.sign(idp.access_token_claims(), header={"typ": "application/at+jwt"})) as client:
        assert client.get("/api/v1/refunds").status_code == 200
    # Scopes come from the token: extra, unknown ones give nothing.
    claims = idp.access_token_claims(scope="refunds:read admin refunds:*")
    with api(stack, idp.sign(claims, header=AT_JWT)) as client:
        assert client.get("/api/v1/refunds").status_code == 200
        assert_error(client.post("/api/v1/payments", json=payment_body()), 403, "insufficient_scope")


#: name -> token maker. Every one must be answered 401 invalid_token.
BAD_TOKENS: dict[str, Callable[[IdentityProvider], str]] = {
    "other audience": lambda idp: idp.sign(
        idp.access_token_claims(aud="urn:someone-else:api"), header=AT_JWT
    ),
    "web client audience": lambda idp: idp.sign(
        idp.access_token_claims(aud=WEB_CLIENT.client_id), header=AT_JWT
    ),
    "other audience in a list": lambda idp: idp.sign(
        idp.access_token_claims(aud=["urn:someone-else:api"]), header=AT_JWT
    ),
    "no audience": lambda idp: idp.sign(idp.access_token_claims(aud=None), header=AT_JWT),
    "expired": lambda idp: idp.sign(
        idp.access_token_claims(iat=_now() - 900, exp=_now() - 300), header=AT_JWT
    ),
    "no exp": lambda idp: idp.sign(idp.access_token_claims(exp=None), header=AT_JWT),
    "not valid yet (nbf)": lambda idp: idp.sign(idp.access_token_claims(nbf=_now() + 600), header=AT_JWT),
    "issued in the future": lambda idp: idp.sign(
        idp.access_token_claims(iat=_now() + 600, exp=_now() + 900), header=AT_JWT
    ),
    "other issuer": lambda idp: idp.sign(idp.access_token_claims(iss="http://evil.example"), header=AT_JWT),
    "no issuer": lambda idp: idp.sign(idp.access_token_claims(iss=None), header=AT_JWT),
    "no sub": lambda idp: idp.sign(idp.access_token_claims(sub=None), header=AT_JWT),
    "typ JWT": lambda idp: idp.sign(idp.access_token_claims(), header={"typ": "JWT"}),
    "no typ": lambda idp: idp.sign(idp.access_token_claims()),
    "tampered signature": lambda idp: flip_signature(idp.sign(idp.access_token_claims(), header=AT_JWT)),
    "tampered claims": lambda idp: swap_claims(
        idp.sign(idp.access_token_claims(scope="refunds:read"), header=AT_JWT), scope=" ".join(API_SCOPES)
    ),
    "unknown key": lambda idp: idp.sign(idp.access_token_claims(), header=AT_JWT, key="unknown"),
    "real key, kid not in the JWKS": lambda idp: idp.sign(
        idp.access_token_claims(), header={**AT_JWT, "kid": "not-a-published-kid"}
    ),
    "alg none": lambda idp: idp.sign(idp.access_token_claims(), header=AT_JWT, key="none"),
    "HS256 with the public key as secret": lambda idp: idp.sign(
        idp.access_token_claims(), header=AT_JWT, key="hs256"
    ),
    "HS256 with the public key, provider kid": lambda idp: idp.sign(
        idp.access_token_claims(), header={**AT_JWT, "kid": str(idp.jwks()["keys"][0]["kid"])}, key="hs256"
    ),
    "RS256 signature, header says HS256": lambda idp: idp.sign(
        idp.access_token_claims(), header={**AT_JWT, "alg": "HS256"}
    ),
    "an ID token": lambda idp: idp.sign(
        {
            "iss": idp.issuer,
            "sub": "u-someone",
            "aud": WEB_CLIENT.client_id,
            "iat": _now(),
            "exp": _now() + 300,
            "nonce": "n",
            "groups": ["refundwatch-admins"],
        }
    ),
    "not a JWT": lambda idp: "definitely-not-a-token",
    "three dots of nothing": lambda idp: "..",
    "made-up API key": lambda idp: "rw_" + secrets.token_urlsafe(32),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_token_gets_401(stack: Stack, case: str) -> None:
    token = BAD_TOKENS[case](idp_of(stack))
    with api(stack, token) as client:
        assert_error(client.get("/api/v1/refunds"), 401, "invalid_token")
        # Before the body is even looked at.
        response = client.post(
            "/api/v1/refunds", headers={"Idempotency-Key": uuid.uuid4().hex}, content=b"{not json"
        )
        assert_error(response, 401, "invalid_token")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="no Authorization"),
        pytest.param("Bearer", id="Bearer and nothing"),
        pytest.param("Bearer   x", id="Bearer, blanks and junk"),
        pytest.param("Basic cmVmdW5kd2F0Y2gtbWFjaGluZTpzZWNyZXQ=", id="Basic"),
        pytest.param("Token abc.def.ghi", id="another scheme"),
    ],
)
def test_a_missing_or_malformed_authorization_gets_401(stack: Stack, header: str | None) -> None:
    with api(stack, None) as client:
        headers = {} if header is None else {"Authorization": header}
        response = client.get("/api/v1/refunds", headers=headers)
        assert response.status_code == 401, response.text[:300]
        assert response.json()["code"] in ("unauthenticated", "invalid_token")


def test_the_real_token_still_works_after_the_bad_ones(stack: Stack) -> None:
    """Forged kids and bad tokens do not poison the key cache: a real token is still accepted."""
    idp = idp_of(stack)
    for _ in range(5):
        with api(stack, idp.sign(idp.access_token_claims(), header=AT_JWT, key="unknown")) as client:
            assert client.get("/api/v1/refunds").status_code == 401
    with api(stack, idp.machine_token()) as client:
        assert client.get("/api/v1/refunds").status_code == 200
