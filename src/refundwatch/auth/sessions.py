"""Server-side sessions in Redis, for signed-in staff.

Hand-written on purpose, small: Litestar's server-side session keeps the same id across
``set_session()`` (STYLE.md, library traps), and a session id must be new at every sign-in so a
planted id can never become a signed-in one. The cookie holds only a random id; everything else
lives in Redis under a hash of that id, with an idle timeout (Redis TTL, renewed on use) and an
absolute timeout (checked against the sign-in time).

The provider's refresh and access tokens stay here too, encrypted with the data keys
(REFUNDWATCH_ENCRYPTION_KEYS): they re-read the person's role (``auth/rolecheck.py``) and never
reach a cookie, a page or a log.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from redis.asyncio import Redis

from refundwatch.auth.roles import Role, User
from refundwatch.lib.crypto import DecryptionError, FieldCipher, sha256_hex

COOKIE = "rw_session"
_PREFIX = "rw:session:"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: User
    csrf: str  # per-session CSRF secret, echoed by forms and htmx
    signed_in_at: float
    id_token: str  # for the provider's end_session_endpoint (id_token_hint)
    refresh_token: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    roles_checked_at: float = 0.0  # when the provider last confirmed the role (sign-in, or a re-read)
    retry_at: float = 0.0  # the provider did not answer: not asked again before this

    def with_tokens(self, refresh_token: str, access_token: str) -> Session:
        return replace(self, refresh_token=refresh_token, access_token=access_token)


def _key(session_id: str) -> str:
    # Only a hash of the id is stored: a Redis dump cannot be replayed as cookies.
    return _PREFIX + sha256_hex(session_id)


def _dump(session: Session, cipher: FieldCipher) -> str:
    user = asdict(session.user)
    user["role"] = session.user.role.label if session.user.role else None
    tokens = {"refresh_token": session.refresh_token, "access_token": session.access_token}
    return json.dumps(
        {
            "user": user,
            "csrf": session.csrf,
            "signed_in_at": session.signed_in_at,
            "id_token": session.id_token,
            "tokens": cipher.encrypt(json.dumps(tokens)),
            "roles_checked_at": session.roles_checked_at,
            "retry_at": session.retry_at,
        }
    )


def _tokens(data: dict[str, Any], cipher: FieldCipher) -> dict[str, str]:
    try:
        tokens: dict[str, str] = json.loads(cipher.decrypt(data["tokens"])) if data.get("tokens") else {}
    except (DecryptionError, ValueError):
        return {}  # its data key was retired: the next role check ends the session
    return tokens


def _load(session_id: str, raw: bytes | str, cipher: FieldCipher) -> Session:
    data: dict[str, Any] = json.loads(raw)
    tokens = _tokens(data, cipher)
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
        refresh_token=tokens.get("refresh_token", ""),
        access_token=tokens.get("access_token", ""),
        roles_checked_at=float(data.get("roles_checked_at", 0)),
        retry_at=float(data.get("retry_at", 0)),
    )
    return session


class SessionStore:
    def __init__(
        self, redis: Redis, cipher: FieldCipher, *, idle_seconds: int, absolute_seconds: int
    ) -> None:
        self._redis = redis
        self._cipher = cipher
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds

    async def create(
        self,
        user: User,
        id_token: str,
        *,
        refresh_token: str = "",
        access_token: str = "",
        replacing: str | None = None,
    ) -> Session:
        """A new session with a new id (any session the browser had is ended: rotation)."""
        if replacing:
            await self.delete(replacing)
        now = time.time()
        session = Session(
            id=secrets.token_urlsafe(32),
            user=user,
            csrf=secrets.token_urlsafe(32),
            signed_in_at=now,
            id_token=id_token,
            refresh_token=refresh_token,
            access_token=access_token,
            roles_checked_at=now,
        )
        await self._redis.set(_key(session.id), _dump(session, self._cipher), ex=self.idle_seconds)
        return session

    async def save(self, session: Session) -> bool:
        """Write a changed session back, keeping its idle TTL; False when it ended meanwhile (never
        brings a signed-out session back)."""
        done = await self._redis.set(_key(session.id), _dump(session, self._cipher), xx=True, keepttl=True)
        return bool(done)

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        # Read and renew the idle timeout in one round trip. Only the TTL is touched: rewriting the
        # record from this copy could undo a role re-read that a concurrent request just saved.
        # (GET + EXPIRE pipelined rather than GETEX, which needs Redis 6.2.)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(_key(session_id))
            pipe.expire(_key(session_id), self.idle_seconds)
            raw, _ = await pipe.execute()
        if raw is None:
            return None
        session = _load(session_id, raw, self._cipher)
        if time.time() - session.signed_in_at > self.absolute_seconds:
            await self.delete(session_id)
            return None
        return session

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(_key(session_id))
