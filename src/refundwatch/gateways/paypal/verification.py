"""PayPal webhook signatures, checked offline with the signing certificate or online by PayPal.

A delivery carries PAYPAL-TRANSMISSION-ID, -TIME and -SIG, PAYPAL-CERT-URL and PAYPAL-AUTH-ALGO. The
signature is RSA PKCS#1 v1.5 with SHA-256 over the UTF-8 text
``{transmission_id}|{transmission_time}|{webhook_id}|{crc32(raw body), unsigned decimal}``, where
webhook_id is the connection's own (so a delivery meant for another webhook fails).

The connection's ``webhook_verification`` chooses how (CONTRACT §6):

- ``certificate`` (default): the key comes from the certificate at PAYPAL-CERT-URL, fetched only from
  an allowed host and checked against the trust store (:mod:`.certs`), then the signature is checked
  here. No call to PayPal's API.
- ``api``: ``POST /v1/notifications/verify-webhook-signature`` with the connection's bearer token. Only
  ``verification_status == "SUCCESS"`` is valid; an unreachable API, a 5xx or anything unreadable is a
  refusal (PayPal re-sends the delivery later), never an acceptance. An API (or certificate host)
  that does not answer, or answers 429 or 5xx (the API also 401 or 403: our token), or no token to
  ask with, gives no verdict (``WebhookVerificationUnavailable``):
  the delivery is refused with 503 and not counted against its sender.

Both first check the headers locally: all present, each once, well formed, the algorithm
``SHA256withRSA``, and the transmission time within the window below.

Transmission time: PayPal signs the time of each transmission and re-sends an unacknowledged event for
up to three days (25 attempts). A transmission more than :data:`MAX_FUTURE_SECONDS` ahead of our clock
is refused, and so is one older than :data:`MAX_AGE_SECONDS` (three days and an hour), so a re-send
PayPal still makes is never refused for its age whether or not PayPal re-stamps it. Replaying an
accepted delivery changes nothing: events are stored once per connection and event id. The signed text
binds the body only through CRC32, which is not collision resistant, so the window is also the limit on
how long a leaked set of signed headers can be replayed with another body of the same CRC32;
refusing a transmission id seen before closes that (it needs state, so it belongs in the core).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from refundwatch.config import get_settings
from refundwatch.gateways.base import (
    Credentials,
    GatewayError,
    WebhookVerificationError,
    WebhookVerificationUnavailable,
)
from refundwatch.gateways.paypal import certs
from refundwatch.gateways.paypal.certs import CertPolicy
from refundwatch.lib.http import timeout_for

__all__ = [
    "MAX_AGE_SECONDS",
    "MAX_FUTURE_SECONDS",
    "CertPolicy",
    "Transmission",
    "read_transmission",
    "settings_policy",
    "signed_message",
    "verify_delivery",
]

AUTH_ALGO = "SHA256withRSA"
AUTH_VERSION = "v2"
MAX_FUTURE_SECONDS = 300.0  # clock skew
MAX_AGE_SECONDS = 3 * 86400.0 + 3600.0  # PayPal re-sends for three days
VERIFY_PATH = "/v1/notifications/verify-webhook-signature"
API_TIMEOUT_SECONDS = 10.0

# The verify-webhook-signature request's own limits (specs/paypal/notifications_webhooks_v1.json),
# narrowed so no field can hold the "|" that separates the signed fields.
_TRANSMISSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")
_WEBHOOK_ID = re.compile(r"^[A-Za-z0-9]{1,50}$")
_MAX_SIG = 700  # base64 of a 4,096-bit signature is 684 characters

Bearer = Callable[[], Awaitable[str]]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Transmission:
    """The signed headers of one delivery, checked for form."""

    transmission_id: str
    transmission_time: str
    signature: bytes
    signature_b64: str
    cert_url: str
    auth_algo: str
    sent_at: float  # the transmission time as a POSIX timestamp


def _header(headers: Mapping[str, str], name: str) -> str:
    values = [value for key, value in headers.items() if key.lower() == name.lower()]
    if not values or not values[0].strip():
        raise WebhookVerificationError(f"missing {name} header")
    if len(values) > 1:
        raise WebhookVerificationError(f"more than one {name} header")
    return values[0].strip()


def read_transmission(headers: Mapping[str, str], *, now: float) -> Transmission:
    """The delivery's signed headers, or WebhookVerificationError naming the first problem."""
    transmission_id = _header(headers, "PAYPAL-TRANSMISSION-ID")
    transmission_time = _header(headers, "PAYPAL-TRANSMISSION-TIME")
    signature_b64 = _header(headers, "PAYPAL-TRANSMISSION-SIG")
    cert_url = _header(headers, "PAYPAL-CERT-URL")
    auth_algo = _header(headers, "PAYPAL-AUTH-ALGO")
    if not _TRANSMISSION_ID.match(transmission_id):
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-ID is malformed")
    if auth_algo != AUTH_ALGO:
        raise WebhookVerificationError(f"PAYPAL-AUTH-ALGO must be {AUTH_ALGO}")
    versions = [value for key, value in headers.items() if key.lower() == "paypal-auth-version"]
    if versions and [v.strip() for v in versions] != [AUTH_VERSION]:
        raise WebhookVerificationError(f"PAYPAL-AUTH-VERSION must be {AUTH_VERSION}")
    sent_at = _parse_time(transmission_time)
    if sent_at - now > MAX_FUTURE_SECONDS:
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-TIME is in the future")
    if now - sent_at > MAX_AGE_SECONDS:
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-TIME is too old")
    if len(signature_b64) > _MAX_SIG:
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-SIG is too long")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-SIG is not base64") from None
    if not 128 <= len(signature) <= 512:
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-SIG has the wrong length")
    return Transmission(
        transmission_id, transmission_time, signature, signature_b64, cert_url, auth_algo, sent_at
    )


def _parse_time(value: str) -> float:
    if len(value) > 40 or not _TIME.match(value):
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-TIME is not an RFC 3339 time")
    text = value
    if "." in text:  # Python's fromisoformat takes at most 6 fraction digits
        head, _, rest = text.partition(".")
        digits = re.match(r"\d+", rest)
        assert digits is not None  # the pattern above guarantees them
        text = f"{head}.{digits.group()[:6]}{rest[digits.end() :]}"
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-TIME is not an RFC 3339 time") from None


def webhook_id_of(creds: Credentials) -> str:
    """The connection's webhook id (a plain option, or a secret if the connection keeps it so)."""
    value = creds.options.get("webhook_id")
    if value is None and "webhook_id" in creds.secrets:
        value = creds.secret("webhook_id")
    if not value:
        raise WebhookVerificationError("no PayPal webhook_id is configured")
    if not _WEBHOOK_ID.match(value):
        raise WebhookVerificationError("the connection's PayPal webhook_id is malformed")
    return value


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> bytes:
    """What PayPal signs: ``id|time|webhook_id|crc32`` with the CRC32 of the raw body, unsigned."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()


def mode_of(creds: Credentials) -> str:
    mode = (creds.options.get("webhook_verification") or "certificate").strip().lower()
    if mode not in ("certificate", "api"):
        raise WebhookVerificationError("webhook_verification must be certificate or api")
    return mode


async def verify_delivery(
    client: httpx2.AsyncClient,
    creds: Credentials,
    headers: Mapping[str, str],
    body: bytes,
    *,
    bearer: Bearer,
    policy: CertPolicy | None = None,
    now: float | None = None,
) -> str:
    """The delivery's transmission id when it is PayPal's; raise WebhookVerificationError (a safe
    message) if not.

    ``policy`` is used in certificate mode (None: the one for the process's settings), ``bearer``
    (the connection's access token) in api mode.
    """
    current = time.time() if now is None else now
    mode = mode_of(creds)
    webhook_id = webhook_id_of(creds)
    sent = read_transmission(headers, now=current)
    if mode == "api":
        await _verify_online(client, creds, sent, webhook_id, body, bearer)
        return sent.transmission_id
    key = await certs.public_key(client, sent.cert_url, policy or settings_policy(), current)
    if len(sent.signature) != (key.key_size + 7) // 8:
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-SIG does not match the certificate")
    message = signed_message(sent.transmission_id, sent.transmission_time, webhook_id, body)
    try:
        key.verify(sent.signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise WebhookVerificationError("PAYPAL-TRANSMISSION-SIG does not match the body") from None
    return sent.transmission_id


def settings_policy() -> CertPolicy:
    """The certificate policy of REFUNDWATCH_PAYPAL_*. Start-up checked it; a trust store that has
    become unreadable since refuses deliveries (PayPal re-sends) rather than failing as malformed."""
    try:
        return CertPolicy.from_settings(get_settings())
    except ValueError as exc:
        log.error("PayPal webhook certificates cannot be checked: %s", exc)  # noqa: TRY400 - no traceback
        raise WebhookVerificationError("the PayPal certificate trust store cannot be read") from None


async def _verify_online(
    client: httpx2.AsyncClient,
    creds: Credentials,
    sent: Transmission,
    webhook_id: str,
    body: bytes,
    bearer: Bearer,
) -> None:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        event = None
    if not isinstance(event, dict):
        raise WebhookVerificationError("the body is not a JSON object, so PayPal cannot verify it")
    try:
        token = await bearer()
    except GatewayError as exc:  # ours to fix or PayPal's to recover: no verdict on the delivery
        raise WebhookVerificationUnavailable(f"no PayPal access token to verify with ({exc.code})") from None
    request = {
        "auth_algo": sent.auth_algo,
        "cert_url": sent.cert_url,
        "transmission_id": sent.transmission_id,
        "transmission_sig": sent.signature_b64,
        "transmission_time": sent.transmission_time,
        "webhook_id": webhook_id,
        "webhook_event": event,
    }
    url = creds.base_url.rstrip("/") + VERIFY_PATH
    try:
        response = await client.post(
            url,
            json=request,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout_for(min(creds.timeout_seconds, API_TIMEOUT_SECONDS)),
            follow_redirects=False,
        )
    except httpx2.TimeoutException:
        raise WebhookVerificationUnavailable("PayPal's verification API did not answer in time") from None
    except httpx2.HTTPError as exc:
        raise WebhookVerificationUnavailable(
            f"PayPal's verification API could not be reached ({type(exc).__name__})"
        ) from None
    if response.status_code != 200:
        # Busy, failing, or refusing our own token: no verdict on the delivery.
        ours = response.status_code in (401, 403) or certs.answered_not_now(response.status_code)
        error = WebhookVerificationUnavailable if ours else WebhookVerificationError
        raise error(f"PayPal's verification API answered {response.status_code}")
    try:
        answer = response.json()
    except ValueError:
        answer = None
    status = answer.get("verification_status") if isinstance(answer, dict) else None
    if status != "SUCCESS":
        raise WebhookVerificationError("PayPal says the webhook signature is not valid")
