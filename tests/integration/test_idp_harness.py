"""The test identity provider (idp/provider.mjs, driven by tests/identity_provider.py) does what
refundwatch's tests rely on: discovery, authorization code + PKCE with the login form, RS256 ID tokens
with groups, RFC 9068 machine tokens, RP-initiated logout and the signing test hook. Plain httpx2 and
joserfc, no browser.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
)
from joserfc.jwk import KeySet

import identity_provider as idp_module
from identity_provider import (
    API_AUDIENCE,
    API_SCOPES,
    MACHINE_CLIENT,
    READER_CLIENT,
    USERS,
    WEB_CLIENT,
    IdentityProvider,
    IdpError,
    OidcClient,
    pkce_pair,
)

RP = "http://127.0.0.1:8765"
CALLBACK = f"{RP}/auth/callback"
ACCESS_TOKEN_TTL = 120
ID_TOKEN_TTL = 90


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    idp = IdentityProvider(
        rp_base_url=RP,
        access_token_ttl=ACCESS_TOKEN_TTL,
        id_token_ttl=ID_TOKEN_TTL,
        log_path=tmp_path_factory.mktemp("idp") / "idp.log",
    )
    with idp:
        yield idp


@pytest.fixture
def browser() -> Iterator[httpx2.Client]:
    """A cookie-keeping client that shows every redirect instead of following it."""
    with httpx2.Client(follow_redirects=False, timeout=10) as client:
        yield client


def keyset(provider: IdentityProvider) -> KeySet:
    return KeySet.import_key_set(provider.jwks())  # type: ignore[arg-type]


def authorize_url(provider: IdentityProvider, challenge: str, state: str, nonce: str, **extra: str) -> str:
    params = {
        "client_id": WEB_CLIENT.client_id,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": "openid profile email groups",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{provider.discovery()['authorization_endpoint']}?{urlencode(params)}"


def exchange(
    provider: IdentityProvider,
    code: str,
    verifier: str,
    *,
    client: OidcClient = WEB_CLIENT,
    post: bool = False,
) -> httpx2.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }
    token_endpoint = str(provider.discovery()["token_endpoint"])
    if post:
        data |= {"client_id": client.client_id, "client_secret": client.client_secret}
        return httpx2.post(token_endpoint, data=data, timeout=10)
    return httpx2.post(token_endpoint, data=data, auth=client.auth, timeout=10)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def login(
    provider: IdentityProvider, browser: httpx2.Client, username: str, password: str = "password"
) -> dict[str, Any]:
    """Signs in through the login form and exchanges the code: the token response, plus the nonce."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    callback = provider.sign_in(browser, authorize_url(provider, challenge, state, nonce), username, password)
    params = query(callback)
    assert params["state"] == state
    response = exchange(provider, params["code"], verifier)
    assert response.status_code == 200, response.text
    return {**response.json(), "nonce": nonce}


def verify_id_token(provider: IdentityProvider, value: str, nonce: str) -> jwt.Token:
    token = jwt.decode(value, keyset(provider), algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": WEB_CLIENT.client_id},
        nonce={"essential": True, "value": nonce},
        sub={"essential": True},
        exp={"essential": True},
    ).validate(token.claims)
    return token


# --- discovery and keys ----------------------------------------------------------------------------


def test_discovery_document(provider: IdentityProvider) -> None:
    doc = provider.discovery()
    assert doc["issuer"] == provider.url
    assert provider.url.startswith("http://127.0.0.1:")
    assert "S256" in doc["code_challenge_methods_supported"]
    assert doc["end_session_endpoint"].startswith(provider.url)
    assert doc["jwks_uri"].startswith(provider.url)
    assert {"authorization_code", "client_credentials"} <= set(doc["grant_types_supported"])
    assert doc["response_types_supported"] == ["code"]
    assert {"openid", "profile", "email", "groups"} <= set(doc["scopes_supported"])
    assert "groups" in doc["claims_supported"]
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(doc["token_endpoint_auth_methods_supported"])


def test_jwks_publishes_one_public_rs256_key(provider: IdentityProvider) -> None:
    (key,) = provider.jwks()["keys"]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kid"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


# --- authorization code + PKCE ---------------------------------------------------------------------


def test_authorization_code_flow_with_pkce_step_by_step(
    provider: IdentityProvider, browser: httpx2.Client
) -> None:
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)

    # The authorization endpoint sends the browser to the login page.
    response = browser.get(authorize_url(provider, challenge, state, nonce))
    assert response.status_code in {302, 303}
    login_url = response.headers["location"]
    assert login_url.startswith("/interaction/")
    page = browser.get(provider.url + login_url)
    assert page.status_code == 200
    assert 'name="username"' in page.text
    assert 'name="password"' in page.text
    assert f'action="{login_url}/login"' in page.text

    # Credentials are posted back; the provider resumes the authorization without a consent screen.
    approver = USERS["approver"]
    response = browser.post(
        f"{provider.url}{login_url}/login",
        data={"username": approver.username, "password": approver.password},
    )
    assert response.status_code == 303
    resume = response.headers["location"]
    assert resume.startswith(f"{provider.url}/auth/")
    response = browser.get(resume)
    assert response.status_code == 303
    callback = response.headers["location"]
    assert callback.startswith(CALLBACK + "?")
    params = query(callback)
    assert params["state"] == state
    assert params["iss"] == provider.issuer
    assert "error" not in params

    # The code is exchanged with the PKCE verifier (client_secret_basic).
    response = exchange(provider, params["code"], verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == ACCESS_TOKEN_TTL

    token = verify_id_token(provider, tokens["id_token"], nonce)
    assert token.header["alg"] == "RS256"
    assert token.header["kid"] == provider.jwks()["keys"][0]["kid"]
    claims = token.claims
    assert claims["groups"] == ["refundwatch-approvers"]
    assert claims["preferred_username"] == approver.username
    assert claims["email"] == f"{approver.username}@example.test"
    assert claims["name"] == "Amy Approver"
    assert claims["exp"] - claims["iat"] == ID_TOKEN_TTL

    # The access token of the web client is for the userinfo endpoint, which repeats the claims.
    userinfo = httpx2.get(
        str(provider.discovery()["userinfo_endpoint"]),
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == claims["sub"]
    assert userinfo.json()["groups"] == ["refundwatch-approvers"]

    # A code works once.
    again = exchange(provider, params["code"], verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_second_authorization_reuses_the_session(provider: IdentityProvider, browser: httpx2.Client) -> None:
    login(provider, browser, USERS["viewer"].username)
    verifier, challenge = pkce_pair()
    response = browser.get(authorize_url(provider, challenge, "s2", "n2"))
    assert response.status_code == 303
    callback = response.headers["location"]
    assert callback.startswith(CALLBACK)
    assert exchange(provider, query(callback)["code"], verifier).status_code == 200


def test_client_secret_post_is_accepted(provider: IdentityProvider, browser: httpx2.Client) -> None:
    verifier, challenge = pkce_pair()
    callback = provider.sign_in(
        browser, authorize_url(provider, challenge, "st", "nn"), USERS["admin"].username, "password"
    )
    response = exchange(provider, query(callback)["code"], verifier, post=True)
    assert response.status_code == 200, response.text
    assert verify_id_token(provider, response.json()["id_token"], "nn").claims["groups"] == [
        "refundwatch-admins"
    ]


def test_pkce_is_required(provider: IdentityProvider, browser: httpx2.Client) -> None:
    url = authorize_url(provider, "x", "st", "nn").replace("&code_challenge=x&code_challenge_method=S256", "")
    assert "code_challenge" not in url
    response = browser.get(url)
    assert response.status_code == 303
    params = query(response.headers["location"])
    assert response.headers["location"].startswith(CALLBACK)
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]


def test_plain_pkce_is_refused(provider: IdentityProvider, browser: httpx2.Client) -> None:
    response = browser.get(authorize_url(provider, "a" * 43, "st", "nn", code_challenge_method="plain"))
    assert response.status_code == 303
    assert query(response.headers["location"])["error"] == "invalid_request"


def test_wrong_code_verifier_is_refused(provider: IdentityProvider, browser: httpx2.Client) -> None:
    _, challenge = pkce_pair()
    callback = provider.sign_in(
        browser, authorize_url(provider, challenge, "st", "nn"), USERS["viewer"].username, "password"
    )
    other_verifier, _ = pkce_pair()
    response = exchange(provider, query(callback)["code"], other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_refused(provider: IdentityProvider, browser: httpx2.Client) -> None:
    verifier, challenge = pkce_pair()
    callback = provider.sign_in(
        browser, authorize_url(provider, challenge, "st", "nn"), USERS["viewer"].username, "password"
    )
    response = exchange(
        provider, query(callback)["code"], verifier, client=OidcClient(WEB_CLIENT.client_id, "no")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unregistered_redirect_uri_is_refused(provider: IdentityProvider, browser: httpx2.Client) -> None:
    _, challenge = pkce_pair()
    url = authorize_url(provider, challenge, "st", "nn", redirect_uri="http://127.0.0.1:9/auth/callback")
    response = browser.get(url)
    assert response.status_code == 400  # an error page at the provider, never a redirect
    assert "redirect_uri" in response.text


def test_wrong_password_shows_the_form_again(provider: IdentityProvider, browser: httpx2.Client) -> None:
    _, challenge = pkce_pair()
    response = browser.get(authorize_url(provider, challenge, "st", "nn"))
    login_url = provider.url + response.headers["location"]
    response = browser.post(
        f"{login_url}/login", data={"username": USERS["viewer"].username, "password": "nope"}
    )
    assert response.status_code == 401
    assert "Invalid username or password" in response.text
    assert 'name="password"' in response.text
    with pytest.raises(IdpError, match="refused the credentials"):
        provider.sign_in(browser, authorize_url(provider, challenge, "st", "nn"), "nobody", "password")


def test_cancel_returns_access_denied(provider: IdentityProvider, browser: httpx2.Client) -> None:
    _, challenge = pkce_pair()
    response = browser.get(authorize_url(provider, challenge, "st", "nn"))
    response = browser.get(f"{provider.url}{response.headers['location']}/abort")
    response = browser.get(response.headers["location"])
    assert response.status_code == 303
    params = query(response.headers["location"])
    assert params["error"] == "access_denied"
    assert params["state"] == "st"


@pytest.mark.parametrize("who", sorted(USERS))
def test_each_user_gets_its_groups(provider: IdentityProvider, browser: httpx2.Client, who: str) -> None:
    user = USERS[who]
    tokens = login(provider, browser, user.username, user.password)
    claims = verify_id_token(provider, tokens["id_token"], tokens["nonce"]).claims
    assert claims["preferred_username"] == user.username
    if user.groups is None:
        assert "groups" not in claims
    else:
        assert claims["groups"] == list(user.groups)


def test_subjects_are_stable_and_distinct(provider: IdentityProvider) -> None:
    users = httpx2.get(f"{provider.url}/__test/users", timeout=10).json()
    subs = {u["username"]: u["sub"] for u in users}
    assert {u.username for u in USERS.values()} <= set(subs)
    assert len(set(subs.values())) == len(subs)
    assert all("password" not in u for u in users)


# --- logout ----------------------------------------------------------------------------------------


def test_rp_initiated_logout(provider: IdentityProvider, browser: httpx2.Client) -> None:
    tokens = login(provider, browser, USERS["initiator"].username)
    end_session = str(provider.discovery()["end_session_endpoint"])
    url = f"{end_session}?" + urlencode(
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": f"{RP}/", "state": "bye"}
    )
    page = browser.get(url)
    assert page.status_code == 200
    assert "Yes, sign me out" in page.text

    back = provider.sign_out(browser, url)
    assert back is not None
    assert back.startswith(f"{RP}/")
    assert query(back)["state"] == "bye"

    # The provider session is gone: the next authorization shows the login form again.
    _, challenge = pkce_pair()
    response = browser.get(authorize_url(provider, challenge, "st", "nn"))
    assert response.headers["location"].startswith("/interaction/")


def test_unregistered_post_logout_redirect_is_refused(
    provider: IdentityProvider, browser: httpx2.Client
) -> None:
    tokens = login(provider, browser, USERS["initiator"].username)
    end_session = str(provider.discovery()["end_session_endpoint"])
    params = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:9/"}
    response = browser.get(f"{end_session}?{urlencode(params)}")
    assert response.status_code == 400


# --- machine clients: RFC 9068 access tokens -----------------------------------------------------------


def test_client_credentials_gives_an_rfc9068_jwt(provider: IdentityProvider) -> None:
    response = provider.client_credentials()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == ACCESS_TOKEN_TTL
    assert set(body["scope"].split()) == set(API_SCOPES)

    token = jwt.decode(body["access_token"], keyset(provider), algorithms=["RS256"])
    assert token.header["typ"] == "at+jwt"
    assert token.header["alg"] == "RS256"
    assert token.header["kid"] == provider.jwks()["keys"][0]["kid"]
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": API_AUDIENCE},
        client_id={"essential": True, "value": MACHINE_CLIENT.client_id},
        sub={"essential": True, "value": MACHINE_CLIENT.client_id},
        jti={"essential": True},
        iat={"essential": True},
        exp={"essential": True},
    ).validate(token.claims)
    assert token.claims["aud"] == API_AUDIENCE
    assert set(token.claims["scope"].split()) == set(API_SCOPES)
    assert token.claims["exp"] - token.claims["iat"] == ACCESS_TOKEN_TTL


def test_client_credentials_scope_subsets_and_limits(provider: IdentityProvider) -> None:
    read_only = jwt.decode(provider.machine_token("refunds:read"), keyset(provider), algorithms=["RS256"])
    assert read_only.claims["scope"] == "refunds:read"

    reader = provider.client_credentials("refunds:read", client=READER_CLIENT)
    assert reader.status_code == 200
    claims = jwt.decode(reader.json()["access_token"], keyset(provider), algorithms=["RS256"]).claims
    assert (claims["scope"], claims["client_id"], claims["aud"]) == (
        "refunds:read",
        READER_CLIENT.client_id,
        API_AUDIENCE,
    )

    refused = provider.client_credentials("refunds:read refunds:write", client=READER_CLIENT)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"

    no_scope = provider.client_credentials(None)
    assert no_scope.status_code == 200
    assert (
        "scope"
        not in jwt.decode(no_scope.json()["access_token"], keyset(provider), algorithms=["RS256"]).claims
    )


def test_client_credentials_explicit_resource(provider: IdentityProvider) -> None:
    assert provider.client_credentials("refunds:read", resource=API_AUDIENCE).status_code == 200
    other = provider.client_credentials("refunds:read", resource="urn:someone:else")
    assert other.status_code == 400
    assert other.json()["error"] == "invalid_target"


def test_client_credentials_with_client_secret_post(provider: IdentityProvider) -> None:
    response = httpx2.post(
        str(provider.discovery()["token_endpoint"]),
        data={
            "grant_type": "client_credentials",
            "scope": "payments:write",
            "client_id": MACHINE_CLIENT.client_id,
            "client_secret": MACHINE_CLIENT.client_secret,
        },
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "payments:write"


def test_web_client_cannot_use_client_credentials(provider: IdentityProvider) -> None:
    response = provider.client_credentials("refunds:read", client=WEB_CLIENT)
    assert response.status_code == 400
    assert response.json()["error"] in {"unauthorized_client", "invalid_request"}
    assert "grant type" in response.json()["error_description"]


# --- test hooks -------------------------------------------------------------------------------------


def test_sign_hook_with_the_provider_key(provider: IdentityProvider) -> None:
    value = provider.sign(provider.access_token_claims(), header={"typ": "at+jwt"})
    token = jwt.decode(value, keyset(provider), algorithms=["RS256"])
    assert token.header == {"alg": "RS256", "kid": provider.jwks()["keys"][0]["kid"], "typ": "at+jwt"}
    assert token.claims["aud"] == API_AUDIENCE
    assert token.claims["iss"] == provider.issuer


def test_sign_hook_negative_tokens(provider: IdentityProvider) -> None:
    keys = keyset(provider)
    now = int(time.time())

    expired = jwt.decode(provider.sign(provider.access_token_claims(iat=now - 600, exp=now - 300)), keys)
    with pytest.raises(ExpiredTokenError):
        jwt.JWTClaimsRegistry().validate(expired.claims)

    wrong_aud = jwt.decode(provider.sign(provider.access_token_claims(aud="urn:someone:else")), keys)
    with pytest.raises(InvalidClaimError):
        jwt.JWTClaimsRegistry(aud={"essential": True, "value": API_AUDIENCE}).validate(wrong_aud.claims)

    unknown = provider.sign(provider.access_token_claims(), key="unknown")
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(unknown, keys, algorithms=["RS256"])

    # A key the provider does not publish, presented under the provider's own kid.
    impostor = provider.sign(provider.access_token_claims(), key="unknown", header={"kid": keys.keys[0].kid})
    with pytest.raises(BadSignatureError):
        jwt.decode(impostor, keys, algorithms=["RS256"])

    header, payload, signature = provider.sign(provider.access_token_claims()).split(".")
    tampered = f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    with pytest.raises(JoseError):
        jwt.decode(tampered, keys, algorithms=["RS256"])

    for forged in (
        provider.sign(provider.access_token_claims(), key="none"),
        provider.sign({"a": 1}, key="hs256"),
    ):
        with pytest.raises(JoseError):
            jwt.decode(forged, keys, algorithms=["RS256"])

    no_kid = provider.sign({"a": 1}, header={"kid": None})
    assert "kid" not in jwt.decode(no_kid, keys, algorithms=["RS256"]).header  # the only key is used


def test_sign_hook_rejects_bad_requests(provider: IdentityProvider) -> None:
    with pytest.raises(IdpError):
        provider.sign({"a": 1}, key="nonsense")
    response = httpx2.post(f"{provider.url}/__test/sign", content=b"not json", timeout=10)
    assert response.status_code == 400


def test_added_user_and_registered_client(provider: IdentityProvider, browser: httpx2.Client) -> None:
    added = provider.add_user("carol-multi", groups=["refundwatch-initiators", "refundwatch-approvers"])
    assert "password" not in added
    client = provider.register_web_client("http://127.0.0.1:9911")
    verifier, challenge = pkce_pair()
    url = authorize_url(
        provider,
        challenge,
        "st",
        "nn",
        client_id=client.client_id,
        redirect_uri="http://127.0.0.1:9911/auth/callback",
    )
    callback = provider.sign_in(browser, url, "carol-multi", "password")
    assert callback.startswith("http://127.0.0.1:9911/auth/callback?")
    response = httpx2.post(
        str(provider.discovery()["token_endpoint"]),
        data={
            "grant_type": "authorization_code",
            "code": query(callback)["code"],
            "redirect_uri": "http://127.0.0.1:9911/auth/callback",
            "code_verifier": verifier,
        },
        auth=client.auth,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["id_token"], keyset(provider), algorithms=["RS256"]).claims
    assert claims["aud"] == client.client_id
    assert claims["groups"] == ["refundwatch-initiators", "refundwatch-approvers"]

    refused = httpx2.post(
        f"{provider.url}/__test/clients",
        json={"client_id": WEB_CLIENT.client_id, "redirect_uris": ["http://127.0.0.1:1/cb"]},
        timeout=10,
    )
    assert refused.status_code == 409


def test_refundwatch_env(provider: IdentityProvider) -> None:
    env = provider.refundwatch_env()
    assert env["REFUNDWATCH_OIDC_ISSUER"] == provider.issuer
    assert env["REFUNDWATCH_OIDC_CLIENT_ID"] == WEB_CLIENT.client_id
    assert env["REFUNDWATCH_API_AUDIENCE"] == API_AUDIENCE


# --- the process itself ---------------------------------------------------------------------------------


def test_hooks_are_off_unless_asked_and_sigterm_exits_cleanly(tmp_path: Path) -> None:
    plain = IdentityProvider(test_hooks=False, log_path=tmp_path / "idp.log")
    with plain:
        response = httpx2.post(f"{plain.url}/__test/sign", json={"claims": {}}, timeout=10)
        assert response.status_code == 404
    assert plain.returncode == 0
    assert not plain.alive
    assert "idp listening on http://127.0.0.1:" in (tmp_path / "idp.log").read_text()


def test_missing_node_modules_says_npm_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(idp_module, "REPO_ROOT", tmp_path)
    with pytest.raises(IdpError, match="npm ci"):
        IdentityProvider().start()
