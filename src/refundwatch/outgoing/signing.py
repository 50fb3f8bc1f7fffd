"""Standard Webhooks signatures (``standardwebhooks``): secrets in ``whsec_…`` form, and the three
headers every attempt carries, signed afresh with the time of that attempt."""

from __future__ import annotations

import base64
import datetime as dt
import math
import secrets
from collections.abc import Sequence

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    """A new signing secret: 256 random bits, base64, with the ``whsec_`` prefix the spec uses."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def headers(message_id: str, body: bytes, signing_secrets: Sequence[str], at: dt.datetime) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``: one ``v1,…`` signature per
    secret, space-separated (during a rotation both the new and the previous secret sign)."""
    signatures = " ".join(Webhook(secret).sign(message_id, at, body) for secret in signing_secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
