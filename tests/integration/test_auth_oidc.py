"""``refundwatch.auth.oidc.OidcProvider`` in-process, against the real test identity provider.

The code exchange of a staff sign-in happens server-side, and the test provider only ever issues
good ID tokens, so the ID-token-level attacks (tampered, expired, other audience, other issuer,
wrong nonce, unknown key, ``alg: none``, HS256 with the public key) are checked here, in two ways:

- ``verify_id_token`` directly, with tokens crafted by the provider's ``/__test/sign`` hook;
- the whole ``begin`` → provider login form → ``complete`` flow, with the token endpoint's answer
  intercepted on the wire (an httpx transport around the real one) so that ``complete`` receives
  the crafted ID token instead of the real one. Everything else (state, PKCE, code exchange) is real.

No database and no refundwatch processes: a private Redis and the session's identity provider.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from joserfc.jwk import RSAKey
from redis.asyncio import Redis

import refundwatch.auth.oidc as oidc_module
from _services import free_port, start_private_redis
from identity_provider import (
    ROLE_MAP,
    IdentityProvider,
    OidcClient,
    flip_signature,
    query,
    swap_claims,
    with_query,
)
from refundwatch.auth.oidc import OidcProvider, SignedIn, SignInError, TokenInvalid
from refundwatch.config import Settings

# --------------------------------------------------------------------------------------------- helpers

# The sign-in cookie value of "this browser": begin() binds the state to it, complete() checks it.
BROWSER = "test-browser-binding"


class Recorder(httpx2.AsyncBaseTransport):
    """Counts the provider's JWKS downloads; can answer the first ones with an older key set."""

    def __init__(self, jwks_path: str, stale_jwks: list[dict[str, Any]] | None = None) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.jwks_path = jwks_path
        self.jwks_fetches = 0
        self.stale = list(stale_jwks or [])

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == self.jwks_path:
            self.jwks_fetches += 1
            if self.stale:
                return httpx2.Response(200, json=self.stale.pop(0), request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class TokenEndpointTamper(httpx2.AsyncBaseTransport):
    """Around the real transport of authlib's client (httpx2 here): rewrites the token endpoint's
    JSON answer."""

    def __init__(self, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.rewrite = rewrite
        self.calls = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/token"):
            return response
        self.calls += 1
        body = await response.aread()
        await response.aclose()
        if response.status_code != 200:
            return httpx2.Response(response.status_code, content=body, request=request)
        return httpx2.Response(200, json=self.rewrite(json.loads(body)), request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# -------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def redis_url() -> str:
    return start_private_redis()


@pytest.fixture(scope="module")
def rp(idp: IdentityProvider) -> tuple[str, OidcClient]:
    """A web client of its own at the provider (nothing listens on its base URL: the callback URL
    is read from the provider's redirect and handed to ``complete`` directly)."""
    base_url = f"http://127.0.0.1:{free_port()}"
    return base_url, idp.register_web_client(base_url)


def _settings(idp: IdentityProvider, rp: tuple[str, OidcClient]) -> Settings:
    base_url, client = rp
    return Settings(
        mode="test",
        oidc_issuer=idp.issuer,
        oidc_client_id=client.client_id,
        oidc_client_secret=client.client_secret,
        base_url=base_url,
        role_map=ROLE_MAP,
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def recorder(idp: IdentityProvider) -> AsyncIterator[Recorder]:
    transport = Recorder(urlsplit(str(idp.discovery()["jwks_uri"])).path)
    yield transport
    await transport.aclose()


@pytest.fixture
async def provider(
    idp: IdentityProvider, rp: tuple[str, OidcClient], redis: Redis, recorder: Recorder
) -> AsyncIterator[OidcProvider]:
    async with httpx2.AsyncClient(transport=recorder) as http:
        yield OidcProvider(_settings(idp, rp), redis, http)


def id_claims(
    idp: IdentityProvider, rp: tuple[str, OidcClient], nonce: str, /, **overrides: Any
) -> dict[str, Any]:
    """Claims like those of a real ID token for ``rp``'s client; None drops a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": idp.issuer,
        "sub": "u-crafted-subject",
        "aud": rp[1].client_id,
        "iat": now,
        "exp": now + 300,
        "auth_time": now,
        "nonce": nonce,
        "name": "Crafted Person",
        "email": "crafted@example.test",
        "groups": ["refundwatch-viewers"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


NONCE = "n-" + secrets.token_urlsafe(12)

#: name -> how to make the token from (idp, rp, nonce). Every one of these must be refused.
BAD_ID_TOKENS: dict[str, Callable[[IdentityProvider, tuple[str, OidcClient], str], str]] = {
    "tampered signature": lambda idp, rp, n: flip_signature(idp.sign(id_claims(idp, rp, n))),
    "tampered claims": lambda idp, rp, n: swap_claims(
        idp.sign(id_claims(idp, rp, n)), groups=["refundwatch-admins"]
    ),
    "expired": lambda idp, rp, n: idp.sign(
        id_claims(idp, rp, n, iat=int(time.time()) - 900, exp=int(time.time()) - 300)
    ),
    "no exp": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, exp=None)),
    "not valid yet (nbf)": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, nbf=int(time.time()) + 600)),
    "issued in the future": lambda idp, rp, n: idp.sign(
        id_claims(idp, rp, n, iat=int(time.time()) + 600, exp=int(time.time()) + 900)
    ),
    "other audience": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, aud="some-other-client")),
    "other audience in a list": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, aud=["some-other-client"])),
    # OIDC Core 3.1.3.7 (3): "MUST be rejected if ... it contains additional audiences not trusted by
    # the Client".
    "our audience plus an untrusted one": lambda idp, rp, n: idp.sign(
        id_claims(idp, rp, n, aud=[rp[1].client_id, "some-other-client"])
    ),
    "api audience": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, aud=idp.audience)),
    "no aud": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, aud=None)),
    "other issuer": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, iss="http://evil.example")),
    "issuer with a suffix": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, iss=idp.issuer + ".evil")),
    "no iss": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, iss=None)),
    "wrong nonce": lambda idp, rp, n: idp.sign(id_claims(idp, rp, "another-nonce")),
    "no nonce": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, nonce=None)),
    "no sub": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n, sub=None)),
    "unknown key": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n), key="unknown"),
    "real key, kid not in the JWKS": lambda idp, rp, n: idp.sign(
        id_claims(idp, rp, n), header={"kid": "not-a-published-kid"}
    ),
    "alg none": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n), key="none"),
    "alg none without kid": lambda idp, rp, n: idp.sign(
        id_claims(idp, rp, n), key="none", header={"kid": None}
    ),
    "HS256 with the public key as secret": lambda idp, rp, n: idp.sign(id_claims(idp, rp, n), key="hs256"),
    "HS256 with the public key, provider kid": lambda idp, rp, n: idp.sign(
        id_claims(idp, rp, n), key="hs256", header={"kid": str(idp.jwks()["keys"][0]["kid"])}
    ),
    "RS256 signature, header says HS256": lambda idp, rp, n: idp.sign(
        id_claims(idp, rp, n), header={"alg": "HS256"}
    ),
    "not a JWT": lambda idp, rp, n: "not-a-token",
    "two parts": lambda idp, rp, n: ".".join(idp.sign(id_claims(idp, rp, n)).split(".")[:2]),
}


# ------------------------------------------------------------------------------------- verify_id_token


async def test_a_good_id_token_verifies(
    idp: IdentityProvider, rp: tuple[str, OidcClient], provider: OidcProvider
) -> None:
    claims = await provider.verify_id_token(idp.sign(id_claims(idp, rp, NONCE)), NONCE)
    assert claims["sub"] == "u-crafted-subject"
    assert claims["groups"] == ["refundwatch-viewers"]


@pytest.mark.parametrize("case", list(BAD_ID_TOKENS))
async def test_a_bad_id_token_is_refused(
    case: str, idp: IdentityProvider, rp: tuple[str, OidcClient], provider: OidcProvider
) -> None:
    token = BAD_ID_TOKENS[case](idp, rp, NONCE)
    with pytest.raises(TokenInvalid) as caught:
        await provider.verify_id_token(token, NONCE)
    # The message says which check failed, never the token itself.
    assert token not in str(caught.value)


async def test_an_id_token_is_not_an_access_token(
    idp: IdentityProvider, rp: tuple[str, OidcClient], provider: OidcProvider
) -> None:
    """An ID token (no typ at+jwt, audience the web client) must not pass as an API access token."""
    with pytest.raises(TokenInvalid):
        await provider.verify_access_token(idp.sign(id_claims(idp, rp, NONCE)))
    # ... nor with the API audience, as long as its typ is not at+jwt.
    with pytest.raises(TokenInvalid):
        await provider.verify_access_token(idp.sign(idp.access_token_claims()))
    assert await provider.verify_access_token(idp.sign(idp.access_token_claims(), header={"typ": "at+jwt"}))


# -------------------------------------------------------------------------------------- key rotation


async def test_unknown_kids_do_not_hammer_the_provider(
    idp: IdentityProvider, provider: OidcProvider, recorder: Recorder
) -> None:
    """After a download, tokens naming unknown keys are refused without downloading the JWKS again."""
    assert await provider.verify_access_token(idp.sign(idp.access_token_claims(), header={"typ": "at+jwt"}))
    assert recorder.jwks_fetches == 1
    for _ in range(10):
        with pytest.raises(TokenInvalid):
            await provider.verify_access_token(
                idp.sign(idp.access_token_claims(), header={"typ": "at+jwt"}, key="unknown")
            )
    assert recorder.jwks_fetches == 1


async def test_a_rotated_key_is_fetched_once(
    idp: IdentityProvider,
    rp: tuple[str, OidcClient],
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider rotated its key after refundwatch cached the JWKS: a token signed with the new
    key (kid not in the cached set) makes refundwatch download the JWKS once more, then verifies."""
    old = RSAKey.generate_key(2048, parameters={"kid": "old-rotated-away", "use": "sig", "alg": "RS256"})
    recorder = Recorder(
        urlsplit(str(idp.discovery()["jwks_uri"])).path, stale_jwks=[{"keys": [old.as_dict(private=False)]}]
    )
    # The refetch is rate-limited (a few seconds); this test is about the refetch itself.
    monkeypatch.setattr(oidc_module, "_JWKS_MIN_REFRESH", 0.0)
    async with httpx2.AsyncClient(transport=recorder) as http:
        provider = OidcProvider(_settings(idp, rp), redis, http)
        token = idp.sign(id_claims(idp, rp, NONCE))
        claims = await provider.verify_id_token(token, NONCE)
        assert claims["sub"] == "u-crafted-subject"
        assert recorder.jwks_fetches == 2  # the stale set, then the current one
        # Known now: no further download.
        await provider.verify_id_token(token, NONCE)
        assert recorder.jwks_fetches == 2
        # A kid that is not there after the refetch either: exactly one more download, then refused.
        with pytest.raises(TokenInvalid):
            await provider.verify_id_token(idp.sign(id_claims(idp, rp, NONCE), key="unknown"), NONCE)
        assert recorder.jwks_fetches == 3
    await recorder.aclose()


class LaterJwks(Recorder):
    """The provider's real JWKS at the first download; each later one answers ``later`` (a key set,
    or None: the provider does not answer)."""

    def __init__(self, jwks_path: str, later: dict[str, Any] | None) -> None:
        super().__init__(jwks_path)
        self.later = later

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == self.jwks_path and self.jwks_fetches >= 1:
            self.jwks_fetches += 1
            if self.later is None:
                raise httpx2.ConnectError("the provider is down", request=request)
            return httpx2.Response(200, json=self.later, request=request)
        return await super().handle_async_request(request)


async def test_a_key_the_provider_withdrew_stops_verifying(
    idp: IdentityProvider, rp: tuple[str, OidcClient], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider took a (compromised) key out of its JWKS: tokens signed with it must stop
    verifying once the cached set is old, not only after a restart. The JWKS was cached for the
    process's life: only an unknown kid made refundwatch download it again."""
    other = RSAKey.generate_key(2048, parameters={"kid": "the-new-key", "use": "sig", "alg": "RS256"})
    recorder = LaterJwks(
        urlsplit(str(idp.discovery()["jwks_uri"])).path, {"keys": [other.as_dict(private=False)]}
    )
    token = idp.sign(idp.access_token_claims(), header={"typ": "at+jwt"})
    async with httpx2.AsyncClient(transport=recorder) as http:
        provider = OidcProvider(_settings(idp, rp), redis, http)
        assert await provider.verify_access_token(token)
        assert recorder.jwks_fetches == 1
        monkeypatch.setattr(oidc_module, "_JWKS_TTL", 0.0, raising=False)  # the cached set is old
        monkeypatch.setattr(oidc_module, "_JWKS_MIN_REFRESH", 0.0)
        with pytest.raises(TokenInvalid):
            await provider.verify_access_token(token)
        assert recorder.jwks_fetches >= 2
    await recorder.aclose()


async def test_the_cached_keys_keep_verifying_while_the_provider_does_not_answer(
    idp: IdentityProvider, rp: tuple[str, OidcClient], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic re-read of the JWKS fails (provider down): the keys already known still verify,
    and the provider is not asked again at every request."""
    recorder = LaterJwks(urlsplit(str(idp.discovery()["jwks_uri"])).path, None)
    token = idp.sign(idp.access_token_claims(), header={"typ": "at+jwt"})
    async with httpx2.AsyncClient(transport=recorder) as http:
        provider = OidcProvider(_settings(idp, rp), redis, http)
        assert await provider.verify_access_token(token)
        monkeypatch.setattr(oidc_module, "_JWKS_TTL", 0.5, raising=False)
        monkeypatch.setattr(oidc_module, "_JWKS_MIN_REFRESH", 0.0)
        time.sleep(0.6)
        for _ in range(5):
            assert await provider.verify_access_token(token)
        assert recorder.jwks_fetches == 2  # one failed re-read, then the cached set until the retry
    await recorder.aclose()


async def test_an_issuer_with_a_trailing_slash_is_matched_exactly(redis: Redis) -> None:
    """Some providers' issuer ends with a slash (Auth0: ``https://<tenant>.auth0.com/``), and their
    tokens' ``iss`` is exactly that. The issuer was compared without its slash, so every ID token and
    access token of such a provider was refused (nobody could sign in)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/"
    with IdentityProvider(port=port, config={"issuer": issuer}) as slashed:
        assert slashed.issuer == issuer
        client = slashed.register_web_client(f"http://127.0.0.1:{free_port()}")
        settings = Settings(
            mode="test",
            oidc_issuer=issuer,
            oidc_client_id=client.client_id,
            oidc_client_secret=client.client_secret,
            base_url="http://127.0.0.1:9",
            role_map=ROLE_MAP,
        )
        async with httpx2.AsyncClient() as http:
            provider = OidcProvider(settings, redis, http)
            claims = await provider.verify_access_token(slashed.machine_token())
            assert claims["iss"] == issuer
            now = int(time.time())
            id_token = slashed.sign(
                {
                    "iss": issuer,
                    "sub": "u-1",
                    "aud": client.client_id,
                    "iat": now,
                    "exp": now + 300,
                    "nonce": "n",
                }
            )
            assert (await provider.verify_id_token(id_token, "n"))["iss"] == issuer
            # Exactly the provider's issuer: without its slash, a token is another issuer's.
            other = slashed.sign(
                {
                    "iss": issuer[:-1],
                    "sub": "u-1",
                    "aud": client.client_id,
                    "iat": now,
                    "exp": now + 300,
                    "nonce": "n",
                }
            )
            with pytest.raises(TokenInvalid):
                await provider.verify_id_token(other, "n")


# ------------------------------------------------------------------------- begin → login → complete


async def _authorize(
    provider: OidcProvider, idp: IdentityProvider, username: str, return_to: str = "/"
) -> str:
    """Starts a sign-in, logs in at the provider, returns the callback URL (not requested)."""
    url = await provider.begin(return_to, BROWSER)
    with httpx2.Client(follow_redirects=False, timeout=10) as browser:
        return idp.sign_in(browser, url, username, "password")


async def test_begin_asks_for_code_with_pkce_and_keeps_secrets_server_side(
    idp: IdentityProvider, rp: tuple[str, OidcClient], provider: OidcProvider, redis: Redis
) -> None:
    url = await provider.begin("/refunds", BROWSER)
    params = query(url)
    assert url.startswith(str(idp.discovery()["authorization_endpoint"]) + "?")
    assert params["response_type"] == "code"
    assert params["client_id"] == rp[1].client_id
    assert params["redirect_uri"] == rp[0] + "/auth/callback"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) >= 43
    assert "openid" in params["scope"].split()
    assert len(params["state"]) >= 32
    assert len(params["nonce"]) >= 32
    assert "code_verifier" not in params
    # Two sign-ins never share state, nonce or challenge.
    again = query(await provider.begin("/refunds", BROWSER))
    assert {again["state"], again["nonce"], again["code_challenge"]}.isdisjoint(
        {params["state"], params["nonce"], params["code_challenge"]}
    )
    # The state's record lives in Redis, with an expiry, and holds no secret in the URL.
    stored = [k async for k in redis.scan_iter(match=f"*{params['state']}*")]
    assert len(stored) == 1
    assert 0 < await redis.ttl(stored[0]) <= 600


async def test_complete_signs_in_with_the_real_provider(
    idp: IdentityProvider, provider: OidcProvider
) -> None:
    callback = await _authorize(provider, idp, "amy-approver", "/approvals")
    params = query(callback)
    assert "iss" in params, callback  # the provider sends RFC 9207's iss; refundwatch checks it
    done = await provider.complete(params, BROWSER)
    assert isinstance(done, SignedIn)
    assert done.return_to == "/approvals"
    assert done.claims["groups"] == ["refundwatch-approvers"]
    assert done.claims["preferred_username"] == "amy-approver"
    # The state is single use: the same answer again is refused before the code is even tried.
    with pytest.raises(SignInError):
        await provider.complete(params, BROWSER)


async def test_a_replayed_code_is_refused_even_with_a_fresh_state(
    idp: IdentityProvider, provider: OidcProvider, redis: Redis
) -> None:
    """Defence in depth: even if the state could be replayed, the provider refuses a code twice and
    refundwatch reports that as a failed sign-in (not an error page with a stack trace)."""
    callback = await _authorize(provider, idp, "alice-viewer")
    params = query(callback)
    key = oidc_module._STATE_PREFIX + params["state"]
    pending = await redis.get(key)
    assert pending is not None
    await provider.complete(params, BROWSER)
    await redis.set(key, pending, ex=60)  # the same state again, with the same PKCE verifier
    with pytest.raises(SignInError, match="code"):
        await provider.complete(params, BROWSER)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"state": "x" * 43}, id="unknown state"),
        pytest.param({"state": None}, id="no state"),
        pytest.param({"state": ""}, id="empty state"),
        pytest.param({"state": "s" * 5000}, id="huge state"),
        pytest.param({"iss": "http://evil.example"}, id="other iss parameter"),
        pytest.param({"iss": None}, id="no iss parameter"),
        pytest.param({"code": "forged-code"}, id="forged code"),
        pytest.param({"code": None}, id="no code"),
        pytest.param({"error": "access_denied", "code": None}, id="error answer"),
    ],
)
async def test_a_bad_authorization_response_is_refused(
    change: dict[str, str | None], idp: IdentityProvider, provider: OidcProvider
) -> None:
    callback = await _authorize(provider, idp, "alice-viewer")
    with pytest.raises(SignInError):
        await provider.complete(query(with_query(callback, **change)), BROWSER)
    if "state" in change:
        # A forged state did not use up the real one: the real answer still completes.
        done = await provider.complete(query(callback), BROWSER)
        assert done.claims["preferred_username"] == "alice-viewer"


@pytest.mark.parametrize("case", list(BAD_ID_TOKENS))
async def test_complete_refuses_a_bad_id_token_from_the_token_endpoint(
    case: str,
    idp: IdentityProvider,
    rp: tuple[str, OidcClient],
    provider: OidcProvider,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    callback = await _authorize(provider, idp, "alice-viewer")
    params = query(callback)
    pending = await redis.get(oidc_module._STATE_PREFIX + params["state"])
    assert pending is not None
    bad = BAD_ID_TOKENS[case](idp, rp, json.loads(pending)["nonce"])
    tamper = TokenEndpointTamper(lambda answer: {**answer, "id_token": bad})
    real_client = oidc_module.AsyncOAuth2Client
    monkeypatch.setattr(
        oidc_module, "AsyncOAuth2Client", lambda **kwargs: real_client(**kwargs, transport=tamper)
    )
    with pytest.raises(SignInError, match="ID token"):
        await provider.complete(params, BROWSER)
    assert tamper.calls == 1


async def test_complete_accepts_the_crafted_control_token(
    idp: IdentityProvider,
    rp: tuple[str, OidcClient],
    provider: OidcProvider,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The interception itself is sound: a correctly crafted ID token goes through ``complete``."""
    callback = await _authorize(provider, idp, "alice-viewer")
    params = query(callback)
    pending = await redis.get(oidc_module._STATE_PREFIX + params["state"])
    assert pending is not None
    good = idp.sign(id_claims(idp, rp, json.loads(pending)["nonce"], groups=["refundwatch-admins"]))
    tamper = TokenEndpointTamper(lambda answer: {**answer, "id_token": good})
    real_client = oidc_module.AsyncOAuth2Client
    monkeypatch.setattr(
        oidc_module, "AsyncOAuth2Client", lambda **kwargs: real_client(**kwargs, transport=tamper)
    )
    done = await provider.complete(params, BROWSER)
    assert done.claims["groups"] == ["refundwatch-admins"]
    assert tamper.calls == 1


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda answer: {k: v for k, v in answer.items() if k != "id_token"}, id="no id_token"),
        pytest.param(lambda answer: {**answer, "id_token": ""}, id="empty id_token"),
    ],
)
async def test_complete_refuses_a_token_answer_without_id_token(
    rewrite: Callable[[dict[str, Any]], dict[str, Any]],
    idp: IdentityProvider,
    provider: OidcProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    callback = await _authorize(provider, idp, "alice-viewer")
    tamper = TokenEndpointTamper(rewrite)
    real_client = oidc_module.AsyncOAuth2Client
    monkeypatch.setattr(
        oidc_module, "AsyncOAuth2Client", lambda **kwargs: real_client(**kwargs, transport=tamper)
    )
    with pytest.raises(SignInError):
        await provider.complete(query(callback), BROWSER)


async def test_a_response_presented_by_another_browser_is_refused(
    idp: IdentityProvider, provider: OidcProvider
) -> None:
    """Login CSRF (RFC 6749 §10.12): the state is bound to the browser that started the sign-in."""
    callback = await _authorize(provider, idp, "alice-viewer")
    with pytest.raises(SignInError, match="another browser"):
        await provider.complete(query(callback), "another-browser-binding")
    with pytest.raises(SignInError):
        await provider.complete(query(callback), None)
