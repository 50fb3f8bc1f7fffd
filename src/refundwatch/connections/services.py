"""Gateway connections: import (encrypted at rest), and a per-process cache of decrypted credentials."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.connections.spec import ConnectionSpec, call_timeout_cap
from refundwatch.db.engine import Database
from refundwatch.db.models import Connection
from refundwatch.gateways.base import Credentials
from refundwatch.lib.crypto import FieldCipher, Secret
from refundwatch.lib.exceptions import BadInput, NotFound

DEFAULT_BASE_URLS = {
    "stripe": "https://api.stripe.com",
    "adyen": "https://checkout-test.adyen.com",
    "paypal": "https://api-m.paypal.com",  # live; a sandbox app sets base_url (gateways/paypal)
    "checkout": "https://api.checkout.com",  # live; a sandbox account sets base_url (gateways/checkout)
    "square": "https://connect.squareupsandbox.com",
    "braintree": "https://api.sandbox.braintreegateway.com",
}

log = logging.getLogger(__name__)


def _blob(spec: ConnectionSpec) -> str:
    return json.dumps({"secrets": spec.secrets, "options": spec.options}, sort_keys=True)


async def import_connections(
    db: Database, cipher: FieldCipher, specs: list[ConnectionSpec], actor: Actor
) -> tuple[int, int]:
    """Create or update every connection in one transaction. Returns (created, updated)."""
    created = updated = 0
    async with db.session() as session:
        existing = {
            c.name: c
            for c in (
                await session.scalars(select(Connection).where(Connection.name.in_([s.name for s in specs])))
            ).all()
        }
        for spec in specs:
            row = existing.get(spec.name)
            fields = {
                "processor": spec.processor,
                "base_url": spec.base_url,
                "enabled": spec.enabled,
                "rate_limit_per_second": spec.rate_limit_per_second,
                "health_check_interval_seconds": spec.health_check_interval_seconds,
                "timeout_seconds": spec.timeout_seconds,
            }
            if row is None:
                row = Connection(name=spec.name, credentials_encrypted=cipher.encrypt(_blob(spec)), **fields)
                session.add(row)
                created += 1
                action = actions.CLI_CONNECTION_CREATE
            else:
                if row.processor != spec.processor:
                    # Its refunds, payments and webhooks were made at the first processor: another
                    # processor's answers about them would be read as the wrong refunds.
                    raise BadInput(
                        f"connection {spec.name!r} is a {row.processor} connection; its processor cannot "
                        f"change to {spec.processor}: create a new connection (another name) instead"
                    )
                changed = sorted(k for k, v in fields.items() if getattr(row, k) != v)
                if json.loads(cipher.decrypt(row.credentials_encrypted)) != json.loads(_blob(spec)):
                    changed.append("credentials")
                    row.credentials_encrypted = cipher.encrypt(_blob(spec))
                if not changed:
                    continue
                for key, value in fields.items():
                    setattr(row, key, value)
                updated += 1
                action = actions.CLI_CONNECTION_UPDATE
            # Field names only: the audit log never holds a secret.
            record(
                session,
                actor,
                action,
                target_type="connection",
                target_id=spec.name,
                details={"processor": spec.processor, "fields": sorted({*fields, *spec.options})},
            )
        await session.commit()
    return created, updated


async def set_enabled(db: Database, name: str, enabled: bool, actor: Actor) -> bool:
    """Enable or disable a connection; returns whether it changed. A disabled connection's refunds
    wait (refunds.connection_wait); every process sees the change within its cache's time."""
    async with db.session() as session:
        row = await session.scalar(select(Connection).where(Connection.name == name).with_for_update())
        if row is None:
            raise NotFound(f"no connection {name!r}", code="unknown_connection")
        if row.enabled == enabled:
            return False
        row.enabled = enabled
        record(
            session,
            actor,
            actions.ADMIN_CONNECTION_ENABLE if enabled else actions.ADMIN_CONNECTION_DISABLE,
            target_type="connection",
            target_id=name,
            details={"processor": row.processor, "enabled": enabled},
        )
        await session.commit()
    return True


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    id: UUID
    name: str
    processor: str
    enabled: bool
    health_check_interval_seconds: int
    credentials: Credentials
    rate_limit_per_second: int | None = None  # calls a second, kept across all workers (refunds.pacing)

    @property
    def account(self) -> str | None:
        """The processor account it reaches (CONTRACT §6 ``account``), when the file names one."""
        return self.credentials.options.get("account")


def _info(row: Connection, cipher: FieldCipher, timeout_seconds: float) -> ConnectionInfo:
    blob = json.loads(cipher.decrypt(row.credentials_encrypted))
    creds = Credentials(
        connection_name=row.name,
        processor=row.processor,
        base_url=(row.base_url or DEFAULT_BASE_URLS[row.processor]).rstrip("/"),
        secrets={k: Secret(v) for k, v in blob["secrets"].items()},
        options=blob["options"],
        timeout_seconds=timeout_seconds,
    )
    return ConnectionInfo(
        row.id,
        row.name,
        row.processor,
        row.enabled,
        row.health_check_interval_seconds,
        creds,
        row.rate_limit_per_second,
    )


class ConnectionCache:
    """Decrypted connections, reloaded at most every ``ttl`` seconds or when a name is unknown."""

    def __init__(self, db: Database, cipher: FieldCipher, ttl: float = 10.0) -> None:
        self._db, self._cipher, self._ttl = db, cipher, ttl
        self._cap: float | None = None  # see cap_call_timeouts
        self._capped: set[str] = set()  # connections already warned about
        self._by_name: dict[str, ConnectionInfo] = {}
        self._by_id: dict[UUID, ConnectionInfo] = {}
        self._loaded_at = 0.0

    def cap_call_timeouts(self, job_timeout_seconds: float) -> None:
        """Calls end within jobs this long (the worker). timeout_seconds is checked at import against
        the importing shell's job timeout only: a worker whose jobs are shorter had arq kill the job
        mid-call, and a killed job records nothing (the refund ended in manual review)."""
        self._cap = call_timeout_cap(job_timeout_seconds)
        self.invalidate()

    def invalidate(self) -> None:
        """Reload on next use (this process changed a connection)."""
        self._loaded_at = 0.0

    async def reload(self) -> None:
        async with self._db.read_session() as session:
            rows = (await session.scalars(select(Connection))).all()
        infos = [_info(row, self._cipher, self._timeout(row)) for row in rows]
        self._by_name = {i.name: i for i in infos}
        self._by_id = {i.id: i for i in infos}
        self._loaded_at = time.monotonic()

    def _timeout(self, row: Connection) -> float:
        wanted = float(row.timeout_seconds)
        if self._cap is None or wanted <= self._cap:
            return wanted
        if row.name not in self._capped:
            self._capped.add(row.name)
            log.warning(
                "connection %r: timeout_seconds %d leaves too little of this process's job timeout "
                "(REFUNDWATCH_JOB_TIMEOUT_SECONDS) to record the outcome; its calls wait at most %g s",
                row.name,
                row.timeout_seconds,
                self._cap,
            )
        return self._cap

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > self._ttl:
            await self.reload()

    async def by_name(self, name: str) -> ConnectionInfo | None:
        await self._fresh()
        if name not in self._by_name and time.monotonic() - self._loaded_at > 1.0:
            await self.reload()
        return self._by_name.get(name)

    async def by_id(self, connection_id: UUID) -> ConnectionInfo | None:
        await self._fresh()
        if connection_id not in self._by_id:
            await self.reload()
        return self._by_id.get(connection_id)

    async def name_of(self, connection_id: UUID | None) -> str | None:
        """The connection's name as the API shows it (``None`` for none, or one not found)."""
        info = await self.by_id(connection_id) if connection_id is not None else None
        return info.name if info is not None else None

    async def all(self) -> list[ConnectionInfo]:
        await self._fresh()
        return list(self._by_name.values())

    async def siblings(self, connection_id: UUID) -> tuple[UUID, ...]:
        """The connections that reach the same processor account (same ``processor`` and
        ``account``), this one first: they may carry each other's refunds, so a webhook or a
        settlement line that reaches one of them may be about a refund made through another."""
        info = await self.by_id(connection_id)
        if info is None or info.account is None:
            return (connection_id,)
        same = (
            other.id
            for other in self._by_id.values()
            if other.id != connection_id
            and other.processor == info.processor
            and other.account == info.account
        )
        return (connection_id, *same)

    async def account_keys(self) -> dict[UUID, tuple[str, str]]:
        """(processor, account) by connection id, for the connections that name an account."""
        await self._fresh()
        return {i.id: (i.processor, i.account) for i in self._by_id.values() if i.account is not None}
