"""Server-side sessions in Redis, for signed-in staff.

Hand-written on purpose, small: Litestar's server-side session keeps the same id across
``set_session()`` (STYLE.md, library traps), and a session id must be new at every sign-in so a
planted id can never become a signed-in one. The cookie holds only a random id; everything else
lives in Redis under a hash of that id, with an idle timeout (Redis TTL, renewed on use) and an
absolute timeout (checked against the sign-in time).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from refundwatch.auth.roles import Role, User
from refundwatch.lib.crypto import sha256_hex

COOKIE = "rw_session"
_PREFIX = "rw:session:"
_RENEW_AFTER = 60.0  # renew the idle TTL at most once a minute per session


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: User
    csrf: str  # per-session CSRF secret, echoed by forms and htmx
    signed_in_at: float
    id_token: str  # for the provider's end_session_endpoint (id_token_hint)


def _key(session_id: str) -> str:
    # Only a hash of the id is stored: a Redis dump cannot be replayed as cookies.
    return _PREFIX + sha256_hex(session_id)


def _dump(session: Session) -> str:
    user = asdict(session.user)
    user["role"] = session.user.role.label if session.user.role else None
    return json.dumps(
        {
            "user": user,
            "csrf": session.csrf,
            "signed_in_at": session.signed_in_at,
            "id_token": session.id_token,
            "renewed_at": time.time(),
        }
    )


def _load(session_id: str, raw: bytes | str) -> tuple[Session, float]:
    data: dict[str, Any] = json.loads(raw)
    user = data["user"]
    role = Role[user["role"].upper()] if user.get("role") else None
    session = Session(
        id=session_id,
        user=User(
            subject=user["subject"],
            name=user["name"],
            email=user.get("email"),
            role=role,
            groups=tuple(user.get("groups") or ()),
        ),
        csrf=data["csrf"],
        signed_in_at=float(data["signed_in_at"]),
        id_token=data.get("id_token", ""),
    )
    return session, float(data.get("renewed_at", 0))


class SessionStore:
    def __init__(self, redis: Redis, *, idle_seconds: int, absolute_seconds: int) -> None:
        self._redis = redis
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds

    async def create(self, user: User, id_token: str, *, replacing: str | None = None) -> Session:
        """A new session with a new id (any session the browser had is ended: rotation)."""
        if replacing:
            await self.delete(replacing)
        session = Session(
            id=secrets.token_urlsafe(32),
            user=user,
            csrf=secrets.token_urlsafe(32),
            signed_in_at=time.time(),
            id_token=id_token,
        )
        await self._redis.set(_key(session.id), _dump(session), ex=self.idle_seconds)
        return session

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        raw = await self._redis.get(_key(session_id))
        if raw is None:
            return None
        session, renewed_at = _load(session_id, raw)
        now = time.time()
        if now - session.signed_in_at > self.absolute_seconds:
            await self.delete(session_id)
            return None
        if now - renewed_at > _RENEW_AFTER:  # sliding idle timeout, without a write per request
            ttl = min(self.idle_seconds, int(self.absolute_seconds - (now - session.signed_in_at)) + 1)
            await self._redis.set(_key(session_id), _dump(session), ex=max(ttl, 1))
        return session

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(_key(session_id))
