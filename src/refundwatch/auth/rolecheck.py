"""A signed-in person's role, re-read from the identity provider while the session lasts.

Every ``REFUNDWATCH_ROLE_REFRESH_MINUTES`` (default 5), the next request of a session asks the
provider again: the refresh-token grant (when the provider gave a refresh token at sign-in), then the
userinfo endpoint, whose roles claim is mapped as at sign-in.

- Another role → the session carries it from this request on (audited ``user:auth:role_changed``).
- No group maps to a role any more, or the provider refuses (refresh token revoked or expired, person
  disabled or removed, access token refused) → the session ends (audited ``user:auth:session_ended``)
  and the request is answered as signed out.
- The provider cannot be reached → the session keeps its last confirmed role for a grace period of
  one more interval, at most 15 minutes, asking again at most every 30 seconds; then it ends. A
  provider blip does not sign everyone out, and an outage cannot stretch a role for long.

One request per session asks at a time (a Redis lock): a refresh token that the provider rotates is
used once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.auth.oidc import OidcProvider, ProviderRefused, ProviderUnavailable, Tokens
from refundwatch.auth.roles import Role, groups_of, parse_role_map, role_for
from refundwatch.auth.sessions import Session, SessionStore
from refundwatch.lib.crypto import sha256_hex
from refundwatch.web.state import runtime_of

ROLE_CHANGED = "user:auth:role_changed"
SESSION_ENDED = "user:auth:session_ended"
MAX_GRACE_SECONDS = 15 * 60
RETRY_SECONDS = 30.0
_LOCK_PREFIX = "rw:rolecheck:"
_LOCK_SECONDS = 60  # longer than the provider calls' timeouts together (3 x 10 s)

log = logging.getLogger("refundwatch.auth.rolecheck")


def grace_seconds(interval: float) -> float:
    return min(interval, MAX_GRACE_SECONDS)


async def checked(connection: Any, session: Session) -> Session | None:
    """The session as it stands after a role re-read, if one is due; None when it ended."""
    interval = runtime_of(connection).settings.role_refresh_minutes * 60
    now = time.time()
    stale = now - session.roles_checked_at
    if stale < interval:
        return session
    if now < session.retry_at and stale <= interval + grace_seconds(interval):
        return session
    redis = runtime_of(connection).require_redis()
    lock = _LOCK_PREFIX + sha256_hex(session.id)
    if not await redis.set(lock, "1", nx=True, ex=_LOCK_SECONDS):
        return session  # another request of this session is asking the provider right now
    try:
        return await _reread(connection, session, now, interval)
    finally:
        await redis.delete(lock)


async def _reread(connection: Any, session: Session, now: float, interval: float) -> Session | None:
    settings = runtime_of(connection).settings
    store: SessionStore = connection.app.state.sessions
    oidc: OidcProvider = connection.app.state.oidc
    if not session.refresh_token and not session.access_token:  # signed in before this existed
        return await _end(connection, session, "the session holds no token to re-read the role with")
    tokens = Tokens(session.access_token, session.refresh_token)
    try:
        if session.refresh_token:
            tokens = await oidc.refresh(session.refresh_token)
        claims = await oidc.userinfo(tokens.access_token, session.user.subject)
    except ProviderRefused as exc:
        return await _end(connection, session, str(exc))
    except ProviderUnavailable as exc:
        if now - session.roles_checked_at > interval + grace_seconds(interval):
            return await _end(connection, session, f"the identity provider did not answer ({exc})")
        log.warning("role re-read postponed: the identity provider did not answer (%s)", exc)
        # Keep tokens a refresh may already have rotated: the old refresh token is spent.
        postponed = session.with_tokens(tokens.refresh_token, tokens.access_token)
        await store.save(replace(postponed, retry_at=now + min(RETRY_SECONDS, interval)))
        return session
    groups = groups_of(claims, settings.oidc_roles_claim) or []
    role = role_for(groups, parse_role_map(settings.role_map))
    if role is None and session.user.role is not None:
        return await _end(connection, session, "none of the person's groups maps to a role any more")
    updated = replace(
        session.with_tokens(tokens.refresh_token, tokens.access_token),
        user=replace(session.user, role=role, groups=tuple(groups)[:50]),
        roles_checked_at=now,
        retry_at=0.0,
    )
    if not await store.save(updated):
        return None  # signed out meanwhile
    if role != session.user.role:
        await _audit(
            connection, updated, ROLE_CHANGED, {"from": _label(session.user.role), "to": _label(role)}
        )
    return updated


async def _end(connection: Any, session: Session, reason: str) -> Session | None:
    """End the session (audited); None, the answer for a session that ended."""
    store: SessionStore = connection.app.state.sessions
    await store.delete(session.id)
    await _audit(connection, session, SESSION_ENDED, {"reason": reason, "role": _label(session.user.role)})
    return None


def _label(role: Role | None) -> str | None:
    return role.label if role else None


async def _audit(connection: Any, session: Session, action: str, details: dict[str, Any]) -> None:
    user = session.user
    host = connection.client.host if connection.client else None
    actor = Actor("user", f"{user.audit_label} ({user.subject})", host, connection.headers.get("user-agent"))
    details["groups"] = list(user.groups)
    async with runtime_of(connection).db.session() as db:
        record(db, actor, action, target_type="session", details=details)
        await db.commit()
