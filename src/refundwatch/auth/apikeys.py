"""API keys for internal returns systems: ``rw_`` + 256 random bits, stored as SHA-256 only.

A fast hash is right here: the keys are long random strings, so there is nothing to brute-force, and
every API request checks one.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.db.engine import Database
from refundwatch.db.models import ApiKey
from refundwatch.lib.crypto import sha256_hex
from refundwatch.lib.exceptions import BadInput

SCOPES = ("refunds:read", "refunds:write", "payments:write", "webhooks:write")
PREFIX = "rw_"
_CACHE_TTL = 30.0  # a revoked key stops working within this many seconds


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the API, and what they may do."""

    kind: str  # api_key | client (OAuth client credentials) | user
    id: str
    name: str
    scopes: frozenset[str]

    @property
    def scope_key(self) -> str:
        """Idempotency keys are scoped per client, as Stripe scopes them per account: every API key
        created with the same ``--name`` is one client (so a key rotated mid-retry still replays), and
        a machine token's client is its ``client_id`` (its name, here)."""
        if self.kind in ("api_key", "client"):
            return f"client:{self.name}"
        return self.identity

    @property
    def identity(self) -> str:
        """This one credential (``api_key:<id>``, ``client:<client_id>``): who created a refund."""
        return f"{self.kind}:{self.id}"

    def actor(self, ip: str | None = None, user_agent: str | None = None) -> Actor:
        return Actor(self.kind, f"{self.name} ({self.id})", ip, user_agent)


def parse_scopes(raw: str) -> list[str]:
    scopes = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise BadInput(f"scopes must be a comma-separated subset of {','.join(SCOPES)}")
    return sorted(set(scopes))


async def create_api_key(
    db: Database, name: str, scopes: list[str], actor: Actor, *, action: str = actions.CLI_APIKEY_CREATE
) -> str:
    name = name.strip()
    if not name or len(name) > 128:
        raise BadInput("the name must be 1 to 128 characters")
    # Tabs, line breaks and escapes broke `apikeys list` (one line per key) and the audit's views.
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        raise BadInput("the name must not contain control characters or line breaks")
    key = PREFIX + secrets.token_urlsafe(32)
    async with db.session() as session:
        row = ApiKey(name=name, prefix=key[:8], key_hash=sha256_hex(key), scopes=",".join(scopes))
        session.add(row)
        await session.flush()
        record(
            session,
            actor,
            action,
            target_type="api_key",
            target_id=str(row.id),
            details={"name": name, "scopes": scopes, "prefix": row.prefix},
        )
        await session.commit()
    return key


async def list_api_keys(db: Database) -> list[ApiKey]:
    async with db.read_session() as session:
        return list(await session.scalars(select(ApiKey).order_by(ApiKey.name, ApiKey.created_at)))


async def revoke_api_key(
    db: Database, key_id: str, actor: Actor, *, action: str = actions.CLI_APIKEY_REVOKE
) -> ApiKey:
    """Stop a key working (within the authenticators' cache time). Rotation: create a key with the
    same ``--name`` (same client, same idempotency scope), move the caller to it, then revoke the old."""
    try:
        wanted = uuid.UUID(key_id.strip())
    except ValueError:
        raise BadInput(f"{key_id!r} is not an API key id (see `refundwatch apikeys list`)") from None
    async with db.session() as session:
        row = await session.get(ApiKey, wanted)
        if row is None:
            raise BadInput(f"no API key with id {wanted}")
        if row.revoked_at is None:
            row.revoked_at = dt.datetime.now(dt.UTC)
            record(
                session,
                actor,
                action,
                target_type="api_key",
                target_id=str(row.id),
                details={"name": row.name, "prefix": row.prefix},
            )
            await session.commit()
        return row


class ApiKeyAuthenticator:
    """Looks keys up by hash, with a short in-process cache (positive and negative)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, key: str) -> Principal | None:
        if not key.startswith(PREFIX) or len(key) > 100:
            return None
        digest = sha256_hex(key)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < _CACHE_TTL:
            return hit[1]
        async with self._db.read_session() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        principal = None
        if row is not None and row.revoked_at is None:
            principal = Principal("api_key", str(row.id), row.name, frozenset(row.scopes.split(",")))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal
