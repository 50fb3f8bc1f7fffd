"""PayPal's OAuth 2 client-credentials tokens: issued by ``POST /v1/oauth2/token``, checked on every call.

A client authenticates with Basic ``client_id:client_secret`` (checked against the connections file's
PayPal connections; without a file any pair is taken) and ``grant_type=client_credentials``. Each
call issues a new bearer token living ``token_ttl_seconds`` (a fault; PayPal's 32400 by default).
Tokens and the count of issued tokens outlive ``/_control/reset`` (refundwatch keeps its cached token
across tests); ``POST /_control/paypal/tokens/expire`` ends every token at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ..connections import Connections

__all__ = ["PROCESSOR", "OAuthError", "TokenIssuer"]

PROCESSOR = "paypal"
# What PayPal grants an app with the refund and webhook permissions (its token answers list scopes).
SCOPES = " ".join(
    (
        "https://uri.paypal.com/services/payments/refund",
        "https://uri.paypal.com/services/payments/payment",
        "https://uri.paypal.com/services/applications/webhooks",
        "https://uri.paypal.com/services/payments/realtimepayment",
    )
)
_PURGE_EVERY = 1024


class OAuthError(Exception):
    """An OAuth answer: ``{"error", "error_description"}`` with its HTTP status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


INVALID_CLIENT = OAuthError(401, "invalid_client", "Client Authentication failed")


@dataclass(slots=True)
class _Token:
    client_id: str
    expires_at: float  # time.monotonic()


def app_id(client_id: str) -> str:
    return "APP-" + hashlib.sha256(client_id.encode()).hexdigest()[:17].upper()


class TokenIssuer:
    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        self.issued = 0
        self._tokens: dict[str, _Token] = {}

    def _client(self, authorization: str | None) -> str:
        if not authorization or not authorization[:6].lower() == "basic ":
            raise INVALID_CLIENT
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise INVALID_CLIENT from exc
        client_id, sep, secret = decoded.partition(":")
        if not sep or not client_id or not secret:
            raise INVALID_CLIENT
        if self.connections.from_file:
            known = [
                c
                for c in self.connections.for_processor(PROCESSOR)
                if c.get("client_id") == client_id
                and secrets.compare_digest((c.get("client_secret") or "").encode(), secret.encode())
            ]
            if not known:
                raise INVALID_CLIENT
        return client_id

    def issue(self, authorization: str | None, form: bytes, ttl_seconds: float) -> dict[str, object]:
        """The token answer for this request, or :class:`OAuthError`."""
        client_id = self._client(authorization)
        try:
            fields = dict(parse_qsl(form.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError as exc:
            raise OAuthError(400, "invalid_request", "Request body is not form-encoded") from exc
        grant = fields.get("grant_type")
        if not grant:
            raise OAuthError(400, "unsupported_grant_type", "Grant Type is NULL")
        if grant != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", f"Grant Type {grant} is not supported")
        token = "A21AA" + secrets.token_urlsafe(72)
        now = time.monotonic()
        self._tokens[token] = _Token(client_id, now + ttl_seconds)
        self.issued += 1
        if self.issued % _PURGE_EVERY == 0:
            self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
        return {
            "scope": SCOPES,
            "access_token": token,
            "token_type": "Bearer",
            "app_id": app_id(client_id),
            "expires_in": int(ttl_seconds),
            "nonce": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + secrets.token_urlsafe(32),
        }

    def client_for(self, authorization: str | None) -> str:
        """The client id the bearer token in ``authorization`` was issued to, or :class:`OAuthError`
        (``AUTHENTICATION_FAILURE`` for no bearer at all is the caller's to answer: ``None`` here)."""
        token = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else ""
        entry = self._tokens.get(token)
        if entry is None or entry.expires_at <= time.monotonic():
            raise OAuthError(401, "invalid_token", "Access Token not found in cache")
        return entry.client_id

    def expire_all(self) -> int:
        count = sum(1 for t in self._tokens.values() if t.expires_at > time.monotonic())
        self._tokens.clear()
        return count

    def active(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self._tokens.values() if t.expires_at > now)
