"""Protection (issue 3 §5): security headers on every response, and rate limits on the API and on
sign-in, against live web processes.

Neither depends on the database, so these run on SQLite only. A second web process on the same
database, with its own Redis, low limits and an https base URL, covers the limits and HSTS; each
rate-limit test connects from its own loopback address (127.0.0.x) so per-address budgets do not meet.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from _services import free_port, start_private_redis
from refundwatch.config import Settings
from refundwatch.web.security import security_before_send
from stack import METRICS_TOKEN, Proc, Stack, wait_http

API_LIMIT, SIGN_IN_LIMIT, FAILURE_LIMIT = 5, 3, 4
SQLITE_ONLY = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}

COMMON = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def assert_protected(
    headers: Any, *, issuer: str | None = None, cached: bool = False, where: str = ""
) -> None:
    for name, value in COMMON.items():
        assert headers.get(name) == value, (where, name, headers.get(name))
    csp = headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp
    assert "*" not in csp
    if issuer is not None:
        parts = urlsplit(issuer)
        assert directives["form-action"] == f"'self' {parts.scheme}://{parts.netloc}"
    assert "camera=()" in headers["permissions-policy"]
    if not cached:
        assert headers.get("cache-control") == "no-store", (where, headers.get("cache-control"))


def client_from(base_url: str, address: str, **kwargs: Any) -> httpx2.Client:
    """A client whose connections come from ``address`` (any 127.0.0.x reaches a server on 127.0.0.1)."""
    transport = httpx2.HTTPTransport(local_address=address)
    return httpx2.Client(base_url=base_url, transport=transport, timeout=30, **kwargs)


def new_api_key(stack: Stack) -> str:
    return stack.cli(
        "apikeys", "create", "--name", f"rl-{uuid.uuid4().hex[:8]}", "--scopes", "refunds:read"
    ).stdout.strip()


@dataclass
class Limited:
    url: str
    proc: Proc


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[Limited]:
    """A second web process: low limits, its own Redis, an https base URL (served over http here)."""
    port = free_port()
    env = {
        **stack.env,
        "REFUNDWATCH_REDIS_URL": start_private_redis(),
        "REFUNDWATCH_BASE_URL": f"https://127.0.0.1:{port}",
        "REFUNDWATCH_RATE_LIMIT_API_PER_MINUTE": str(API_LIMIT),
        "REFUNDWATCH_RATE_LIMIT_SIGN_IN_PER_MINUTE": str(SIGN_IN_LIMIT),
        "REFUNDWATCH_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE": str(FAILURE_LIMIT),
        # Only 127.0.0.20 plays the load balancer: its X-Forwarded-For is believed, nobody else's.
        "REFUNDWATCH_TRUSTED_PROXIES": "127.0.0.20",
    }
    proc = Proc(
        "web-limited", ["refundwatch", "serve", "--port", str(port)], env, stack.workdir / "web-limited.log"
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        yield Limited(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.stop()


# --- headers -------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_pages_carry_the_headers_and_are_never_cached(stack: Stack) -> None:
    issuer = stack.env["REFUNDWATCH_OIDC_ISSUER"]
    anonymous = httpx2.get(f"{stack.web_url}/", timeout=30)  # redirect to sign-in
    assert anonymous.status_code in (302, 303, 307), anonymous.status_code
    assert_protected(anonymous.headers, issuer=issuer, where="/ anonymous")
    client = stack.sign_in("ada-admin")
    try:
        page = client.get("/")
        assert page.status_code == 200, page.text[:300]
        assert page.headers["content-type"].startswith("text/html")
        assert_protected(page.headers, issuer=issuer, where="/")
        assert "strict-transport-security" not in page.headers  # served over http
        assert "<script>" not in page.text
        assert " style=" not in page.text
        assert "ratelimit-limit" not in page.headers  # pages are not rate limited
    finally:
        client.close()


@SQLITE_ONLY
def test_api_answers_carry_the_headers(stack: Stack) -> None:
    issuer = stack.env["REFUNDWATCH_OIDC_ISSUER"]
    unauthenticated = httpx2.get(f"{stack.web_url}/api/v1/refunds", timeout=30)
    assert unauthenticated.status_code == 401
    assert_protected(unauthenticated.headers, issuer=issuer, where="API 401")
    with stack.api() as client:
        listed = client.get("/api/v1/refunds")
        missing = client.get(f"/api/v1/refunds/{uuid.uuid4()}")
    assert listed.status_code == 200, listed.text
    assert_protected(listed.headers, issuer=issuer, where="API 200")
    assert missing.status_code == 404, missing.text
    assert missing.json()["code"].endswith("not_found")
    assert_protected(missing.headers, issuer=issuer, where="API 404")
    assert "strict-transport-security" not in listed.headers


@SQLITE_ONLY
def test_csrf_refusals_carry_the_headers(stack: Stack) -> None:
    """CSRF middleware refuses inside the headers middleware: its 403 must carry them too."""
    response = httpx2.post(f"{stack.web_url}/auth/logout", timeout=30)
    assert response.status_code == 403, response.status_code
    assert_protected(response.headers, where="CSRF 403")


@SQLITE_ONLY
def test_static_files_keep_their_own_caching(stack: Stack) -> None:
    response = httpx2.get(f"{stack.web_url}/static/css/app.css", timeout=30)
    assert response.status_code == 200
    assert_protected(response.headers, cached=True, where="static")
    assert "no-store" not in response.headers.get("cache-control", "")
    health = httpx2.get(f"{stack.web_url}/healthz", timeout=30)
    assert_protected(health.headers, where="healthz")
    assert "ratelimit-limit" not in health.headers


@SQLITE_ONLY
def test_hsts_only_when_the_base_url_is_https(stack: Stack, limited: Limited) -> None:
    response = httpx2.get(f"{limited.url}/healthz", timeout=30)
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert "strict-transport-security" not in httpx2.get(f"{stack.web_url}/healthz", timeout=30).headers


def test_the_before_send_hook_covers_what_no_route_handles() -> None:
    """The router's own 404/405 bypass app middleware in Litestar 2; the hook adds the headers there."""

    @get("/here")
    async def here() -> str:
        return "ok"

    settings = Settings(oidc_issuer="https://id.example.com/realm", base_url="https://refunds.example.com")
    app = Litestar([here], before_send=[security_before_send(settings)])
    with TestClient(app) as client:
        for method, path, status in (("GET", "/nowhere", 404), ("POST", "/here", 405), ("GET", "/here", 200)):
            response = client.request(method, path)
            assert response.status_code == status
            assert_protected(response.headers, issuer="https://id.example.com", where=path)
            assert response.headers["strict-transport-security"].startswith("max-age=31536000")


# --- rate limits ---------------------------------------------------------------------------------


@SQLITE_ONLY
def test_api_budget_per_key_with_headers_then_429(stack: Stack, limited: Limited) -> None:
    first, second = new_api_key(stack), new_api_key(stack)
    with client_from(limited.url, "127.0.0.2", headers={"Authorization": f"Bearer {first}"}) as client:
        remaining = []
        for _ in range(API_LIMIT):
            response = client.get("/api/v1/refunds")
            assert response.status_code == 200, response.text
            assert response.headers["ratelimit-limit"] == str(API_LIMIT)
            assert response.headers["ratelimit-policy"] == f"{API_LIMIT};w=60"
            assert 1 <= int(response.headers["ratelimit-reset"]) <= 60
            remaining.append(int(response.headers["ratelimit-remaining"]))
        assert remaining == list(range(API_LIMIT - 1, -1, -1))
        refused = client.get("/api/v1/refunds")
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert_protected(refused.headers, where="429")
    # Another key from the same address has its own budget.
    with client_from(limited.url, "127.0.0.2", headers={"Authorization": f"Bearer {second}"}) as other:
        response = other.get("/api/v1/refunds")
    assert response.status_code == 200, response.text
    assert response.headers["ratelimit-remaining"] == str(API_LIMIT - 1)


@SQLITE_ONLY
def test_sign_in_budget_per_address(limited: Limited) -> None:
    with client_from(limited.url, "127.0.0.3") as client:
        for expected_remaining in range(SIGN_IN_LIMIT - 1, -1, -1):
            response = client.get("/auth/login")
            assert response.status_code != 429
            assert response.headers["ratelimit-remaining"] == str(expected_remaining)
        refused = client.get("/auth/login")
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        # The callback counts separately, and the API is not sign-in.
        callback = client.get("/auth/callback", params={"code": "x", "state": "y"})
        assert callback.status_code != 429
        assert callback.headers["ratelimit-limit"] == str(SIGN_IN_LIMIT)
    with client_from(limited.url, "127.0.0.4") as elsewhere:
        assert elsewhere.get("/auth/login").status_code != 429


@SQLITE_ONLY
def test_made_up_tokens_are_limited_per_address(stack: Stack, limited: Limited) -> None:
    with client_from(limited.url, "127.0.0.5") as client:
        for _ in range(FAILURE_LIMIT):
            response = client.get(
                "/api/v1/refunds", headers={"Authorization": f"Bearer rw_{uuid.uuid4().hex}"}
            )
            assert response.status_code == 401, response.text
        refused = client.get("/api/v1/refunds", headers={"Authorization": f"Bearer rw_{uuid.uuid4().hex}"})
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert refused.headers["ratelimit-limit"] == str(FAILURE_LIMIT)
    # Other addresses are unaffected.
    with client_from(
        limited.url, "127.0.0.6", headers={"Authorization": f"Bearer {new_api_key(stack)}"}
    ) as ok:
        assert ok.get("/api/v1/refunds").status_code == 200


@SQLITE_ONLY
def test_webhooks_health_and_metrics_are_not_limited(limited: Limited) -> None:
    with client_from(limited.url, "127.0.0.7") as client:
        for _ in range(max(API_LIMIT, SIGN_IN_LIMIT, FAILURE_LIMIT) * 2):
            hook = client.post(
                "/webhooks/stripe-test", content=b"{}", headers={"content-type": "application/json"}
            )
            assert hook.status_code in (400, 401), hook.status_code
            assert "ratelimit-limit" not in hook.headers
            for path in ("/healthz", "/readyz", "/metrics"):
                response = client.get(path, headers=METRICS_AUTH if path == "/metrics" else {})
                assert response.status_code == 200, (path, response.status_code)
                assert "ratelimit-limit" not in response.headers


@SQLITE_ONLY
def test_forwarded_client_addresses_only_from_trusted_proxies(limited: Limited) -> None:
    """Behind the trusted proxy each forwarded client has its own sign-in budget; anyone else's
    X-Forwarded-For is ignored, so it cannot be used to dodge the limit."""
    with client_from(limited.url, "127.0.0.20") as proxy:
        for _ in range(SIGN_IN_LIMIT):
            assert proxy.get("/auth/login", headers={"X-Forwarded-For": "203.0.113.7"}).status_code != 429
        assert proxy.get("/auth/login", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 429
        assert proxy.get("/auth/login", headers={"X-Forwarded-For": "203.0.113.8"}).status_code != 429
    with client_from(limited.url, "127.0.0.21") as direct:
        for n in range(SIGN_IN_LIMIT):
            assert (
                direct.get("/auth/login", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code != 429
            )
        dodge = direct.get("/auth/login", headers={"X-Forwarded-For": "198.51.100.99"})
        assert dodge.status_code == 429
