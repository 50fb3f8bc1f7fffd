"""OpenID Connect: staff sign-in (authorization code + PKCE) and machine-token verification.

- Discovery from ``REFUNDWATCH_OIDC_ISSUER``; the document must name that same issuer.
- State, nonce and PKCE verifier are kept server-side in Redis, single use (GETDEL), ten minutes.
- The ``iss`` authorization-response parameter (RFC 9207) must match when present, and must be
  present when the provider says it sends it.
- Tokens are verified with joserfc against the provider's JWKS; an unknown ``kid`` refetches the
  JWKS once (key rotation), at most every few seconds, so forged kids cannot hammer the provider;
  and it is read again every ten minutes, so a key the provider withdrew stops verifying.
- ID tokens: iss, aud (our client id), exp, iat, nonce, with a small leeway.
- Machine access tokens (RFC 9068): typ at+jwt, iss, aud = REFUNDWATCH_API_AUDIENCE, exp, scope.
- Role re-reads (``auth/rolecheck.py``): the refresh-token grant, then the userinfo endpoint.
  ``offline_access`` is asked for when the provider lists it, since many issue refresh tokens only then.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx2
from authlib.common.errors import AuthlibBaseError as OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from redis.asyncio import Redis

from refundwatch.config import Settings
from refundwatch.lib.crypto import constant_time_equals, sha256_hex

_STATE_PREFIX = "rw:oidc:state:"
_STATE_TTL = 600
_LEEWAY = 60
_METADATA_TTL = 3600.0
_JWKS_MIN_REFRESH = 5.0
_JWKS_TTL = 600.0  # the keys are read again this often: one the provider withdrew stops verifying
_JWKS_RETRY = 30.0  # after a failed periodic re-read, the keys we have serve this long before the next
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class SignInError(Exception):
    """The sign-in could not complete; the message is safe to show (no token content)."""


class TokenInvalid(Exception):
    """A token failed verification; the message says which check, never the token."""


class ProviderRefused(Exception):
    """The provider no longer vouches for the person (refresh token or access token refused)."""


class ProviderUnavailable(Exception):
    """The provider could not be asked (down, slow, or answering errors that are not a refusal)."""


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    nonce: str
    verifier: str
    return_to: str
    browser: str  # hash of the cookie set on the browser that started the sign-in


@dataclass(frozen=True, slots=True)
class SignedIn:
    claims: dict[str, Any]
    id_token: str
    return_to: str
    tokens: Tokens


class OidcProvider:
    def __init__(self, settings: Settings, redis: Redis, http: httpx2.AsyncClient) -> None:
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret
        self.audience = settings.api_audience
        self.redirect_uri = settings.base_url.rstrip("/") + "/auth/callback"
        self._redis = redis
        self._http = http
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._jwks: tuple[float, KeySet] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.issuer and self.client_id)

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is not None and time.monotonic() - self._metadata[0] < _METADATA_TTL:
            return self._metadata[1]
        try:
            response = await self._http.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10.0)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise SignInError(
                f"the identity provider did not answer discovery: {type(exc).__name__}"
            ) from None
        if str(document.get("issuer", "")).rstrip("/") != self.issuer:
            raise SignInError("the identity provider's discovery document names a different issuer")
        self._metadata = (time.monotonic(), document)
        return document

    async def _exact_issuer(self) -> str:
        """The issuer to the character, as the provider names itself in discovery (which must match
        the setting, trailing slash aside): tokens carry exactly that, a trailing slash included
        (Auth0's ``https://<tenant>.auth0.com/``), so it is compared as it is. A document read once
        will do: an issuer does not change, and verifying must not wait on the provider's discovery."""
        document = self._metadata[1] if self._metadata is not None else await self.metadata()
        return str(document["issuer"])

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        """The provider's keys: downloaded again when ``refresh`` (a kid we do not know) and every
        ``_JWKS_TTL``, so a key the provider withdrew stops verifying (it was cached for the
        process's life). A periodic re-read that fails keeps the keys we have for ``_JWKS_RETRY``."""
        cached = self._jwks
        if cached is not None:
            age = time.monotonic() - cached[0]
            if age < _JWKS_MIN_REFRESH or (not refresh and age < _JWKS_TTL):
                return cached[1]
        try:
            uri = (await self.metadata())["jwks_uri"]
            response = await self._http.get(uri, timeout=10.0)
            response.raise_for_status()
            key_set = KeySet.import_key_set(response.json())
        except (SignInError, KeyError, httpx2.HTTPError, ValueError, JoseError) as exc:
            if cached is not None and not refresh:  # the provider is down: no reason to distrust
                self._jwks = (time.monotonic() - _JWKS_TTL + _JWKS_RETRY, cached[1])
                return cached[1]
            raise TokenInvalid(f"could not load the provider's signing keys: {type(exc).__name__}") from None
        self._jwks = (time.monotonic(), key_set)
        return key_set

    async def _decode(self, token: str) -> jwt.Token:
        """Signature check against the JWKS; one refetch when the token names a key we do not know."""
        if token.count(".") != 2 or len(token) > 16_384:
            raise TokenInvalid("not a signed JWT")
        for refresh in (False, True):
            key_set = await self._key_set(refresh=refresh)
            try:
                return jwt.decode(token, key_set, algorithms=_ALGORITHMS)
            except (ValueError, JoseError) as exc:
                unknown_kid = "kid" in str(exc).lower() or type(exc).__name__ in ("InvalidKeyIdError",)
                if refresh or not unknown_kid:
                    raise TokenInvalid(f"signature check failed: {type(exc).__name__}") from None
        raise TokenInvalid("signature check failed")  # pragma: no cover - loop always returns or raises

    # --- staff sign-in ----------------------------------------------------------------------------

    async def begin(self, return_to: str, browser: str) -> str:
        """Remember a fresh state/nonce/verifier, bound to ``browser`` (a random value the caller
        also sets as a cookie), and give the provider's authorization URL."""
        metadata = await self.metadata()
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        pending = {
            "nonce": nonce,
            "verifier": verifier,
            "return_to": return_to,
            "browser": sha256_hex(browser),
        }
        await self._redis.set(_STATE_PREFIX + state, json.dumps(pending), ex=_STATE_TTL)
        client = self._client()
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"],
            state=state,
            code_verifier=verifier,
            nonce=nonce,
            scope=" ".join(["openid", "profile", "email", "groups", *_offline(metadata)]),
        )
        return str(url)

    async def _take_state(self, state: str) -> PendingSignIn:
        if not state or len(state) > 200:
            raise SignInError("the sign-in response had no valid state")
        raw = await self._redis.getdel(_STATE_PREFIX + state)  # single use, even under a race
        if raw is None:
            raise SignInError("this sign-in link was already used or has expired; sign in again")
        data = json.loads(raw)
        return PendingSignIn(
            nonce=data["nonce"],
            verifier=data["verifier"],
            return_to=data["return_to"],
            browser=data["browser"],
        )

    async def complete(self, params: Mapping[str, str], browser: str | None) -> SignedIn:
        """Check the authorization response, redeem the code, verify the ID token.

        ``browser`` is the sign-in cookie of the browser presenting the response: a response that
        another browser started (login CSRF, RFC 6749 §10.12) is refused.
        """
        pending = await self._take_state(params.get("state", ""))
        if not browser or not constant_time_equals(sha256_hex(browser), pending.browser):
            raise SignInError("this sign-in was started in another browser; sign in again")
        if params.get("error"):
            raise SignInError(f"the identity provider refused the sign-in ({params['error'][:64]})")
        metadata = await self.metadata()
        issuer_param = params.get("iss")
        if issuer_param is not None and issuer_param.rstrip("/") != self.issuer:
            raise SignInError("the sign-in response came from a different issuer")
        if issuer_param is None and metadata.get("authorization_response_iss_parameter_supported"):
            raise SignInError("the sign-in response is missing the iss parameter")
        code = params.get("code", "")
        if not code:
            raise SignInError("the sign-in response had no authorization code")
        async with self._client() as client:
            try:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    code=code,
                    code_verifier=pending.verifier,
                    redirect_uri=self.redirect_uri,
                )
            except (OAuthError, httpx2.HTTPError, ValueError, KeyError) as exc:
                raise SignInError(f"the authorization code was not accepted: {type(exc).__name__}") from None
        id_token = str(token.get("id_token") or "")
        if not id_token:
            raise SignInError("the identity provider returned no ID token")
        try:
            claims = await self.verify_id_token(id_token, pending.nonce)
        except TokenInvalid as exc:
            raise SignInError(f"the ID token was rejected: {exc}") from None
        tokens = Tokens(str(token.get("access_token") or ""), str(token.get("refresh_token") or ""))
        return SignedIn(claims=claims, id_token=id_token, return_to=pending.return_to, tokens=tokens)

    async def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        decoded = await self._decode(token)
        registry = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY,
            iss={"essential": True, "value": await self._exact_issuer()},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise TokenInvalid(f"claim check failed: {exc.error}") from None
        audience = decoded.claims["aud"]
        if isinstance(audience, list) and set(audience) != {self.client_id}:
            # OIDC Core 3.1.3.7: reject a token that also names audiences we do not trust.
            raise TokenInvalid("claim check failed: the token is also meant for another audience")
        return dict(decoded.claims)

    async def logout_url(self, id_token: str, post_logout_redirect: str) -> str | None:
        """The provider's end_session_endpoint (RP-initiated logout), when it has one."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except SignInError:
            return None
        if not endpoint:
            return None
        query = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect}
        if id_token:
            query["id_token_hint"] = id_token
        return f"{endpoint}?{urlencode(query)}"

    # --- re-reading a signed-in person -------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> Tokens:
        """The refresh-token grant. ``invalid_grant`` (revoked, expired, person disabled) is a
        refusal; anything else that goes wrong is the provider being unavailable."""
        try:
            endpoint = str((await self.metadata())["token_endpoint"])
        except (SignInError, KeyError):
            raise ProviderUnavailable("no token endpoint") from None
        answer = await self._call(
            "POST",
            endpoint,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(quote(self.client_id, safe=""), quote(self.client_secret, safe="")),
        )
        if answer.status_code in (400, 401) and _error_code(answer) == "invalid_grant":
            raise ProviderRefused("the provider refused the refresh token")
        body = _json_object(answer) if answer.status_code == 200 else {}
        if not body.get("access_token"):
            raise ProviderUnavailable(f"token endpoint answered {answer.status_code}")
        return Tokens(str(body["access_token"]), str(body.get("refresh_token") or refresh_token))

    async def userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The person's current claims; a refused token, or another person's claims, is a refusal."""
        try:
            endpoint = str((await self.metadata())["userinfo_endpoint"])
        except (SignInError, KeyError):
            raise ProviderUnavailable("no userinfo endpoint") from None
        answer = await self._call("GET", endpoint, headers={"Authorization": f"Bearer {access_token}"})
        if answer.status_code in (401, 403):
            raise ProviderRefused("the provider refused the access token")
        claims = _json_object(answer) if answer.status_code == 200 else {}
        if not claims:
            raise ProviderUnavailable(f"userinfo answered {answer.status_code}")
        if str(claims.get("sub")) != subject:  # OIDC Core 5.3.2: must be the signed-in person
            raise ProviderRefused("userinfo is about someone else")
        return claims

    async def _call(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        try:
            return await self._http.request(method, url, timeout=10.0, **kwargs)
        except httpx2.HTTPError as exc:
            raise ProviderUnavailable(type(exc).__name__) from None

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
            timeout=10.0,
        )

    # --- machine clients --------------------------------------------------------------------------

    async def verify_access_token(self, token: str) -> dict[str, Any]:
        """An RFC 9068 access token for this API, checked offline against the JWKS."""
        decoded = await self._decode(token)
        typ = str(decoded.header.get("typ", "")).lower()
        if typ not in ("at+jwt", "application/at+jwt"):
            raise TokenInvalid("not an access token (typ must be at+jwt)")
        registry = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY,
            iss={"essential": True, "value": await self._exact_issuer()},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise TokenInvalid(f"claim check failed: {exc.error}") from None
        return dict(decoded.claims)


def _offline(metadata: Mapping[str, Any]) -> list[str]:
    return ["offline_access"] if "offline_access" in (metadata.get("scopes_supported") or ()) else []


def _json_object(response: httpx2.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(response: httpx2.Response) -> str:
    return str(_json_object(response).get("error", ""))
