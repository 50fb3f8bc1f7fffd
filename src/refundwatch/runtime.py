"""What a process (web, worker, CLI) holds open: settings, database, job queue, HTTP client, caches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx2
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from redis.exceptions import RedisError

from refundwatch.config import Settings, get_settings
from refundwatch.connections.services import ConnectionCache
from refundwatch.dashboard.signals import signals
from refundwatch.db.engine import Database
from refundwatch.db.types import use_cipher
from refundwatch.lib.crypto import FieldCipher
from refundwatch.lib.http import make_client
from refundwatch.refunds.breaker import Breaker

log = logging.getLogger(__name__)
QUEUE_NAME = "refundwatch:queue"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


def _unconnected_pool(settings: RedisSettings) -> ArqRedis:
    """The pool ``create_pool`` makes, before its first command (it connects on demand)."""
    pool = ArqRedis(
        host=settings.host,
        port=settings.port,
        unix_socket_path=settings.unix_socket_path,
        socket_connect_timeout=settings.conn_timeout,
        ssl=settings.ssl,
        ssl_keyfile=settings.ssl_keyfile,
        ssl_certfile=settings.ssl_certfile,
        ssl_cert_reqs=settings.ssl_cert_reqs,
        ssl_ca_certs=settings.ssl_ca_certs,
        ssl_ca_data=settings.ssl_ca_data,
        ssl_check_hostname=settings.ssl_check_hostname,
        retry=settings.retry,
        retry_on_timeout=settings.retry_on_timeout,
        retry_on_error=settings.retry_on_error,
        max_connections=settings.max_connections,
        db=settings.database,
        username=settings.username,
        password=settings.password,
        encoding="utf8",
    )
    pool.default_queue_name = QUEUE_NAME
    return pool


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cipher: FieldCipher
    connections: ConnectionCache
    redis: ArqRedis | None = None
    http: httpx2.AsyncClient | None = None
    breaker: Breaker | None = None  # workers only: processors that are down are left alone
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings | None = None, *, pool_size: int = 8) -> Runtime:
        settings = settings or get_settings()
        settings.check_required()  # a malformed key or threshold stops here with one clear line
        db = Database(settings.database_url, pool_size=pool_size)
        cipher = FieldCipher(settings.encryption_key_list)
        use_cipher(cipher)  # the encrypted column types use the same keys
        return cls(settings=settings, db=db, cipher=cipher, connections=ConnectionCache(db, cipher))

    async def open(self, *, redis: bool = True, http: bool = True, wait_for_redis: bool = True) -> Runtime:
        """``wait_for_redis=False`` (the web server): a Redis that does not answer yet does not stop
        the process. It starts, says so, reports not ready (``/readyz``) and connects on first use."""
        if redis and self.redis is None:
            settings = redis_settings(self.settings.redis_url)
            try:
                self.redis = await create_pool(settings, default_queue_name=QUEUE_NAME)
            except (RedisError, OSError) as exc:
                if wait_for_redis:
                    raise
                log.warning("Redis does not answer (%s): starting without it; not ready until it does", exc)
                self.redis = _unconnected_pool(settings)
            signals.attach(self.redis)
        if http and self.http is None:
            self.http = make_client()
        return self

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self.redis is not None:
            await signals.detach()
            await self.redis.aclose()
            self.redis = None
        await self.db.dispose()

    def require_redis(self) -> ArqRedis:
        if self.redis is None:
            raise RuntimeError("runtime opened without Redis")
        return self.redis

    def require_http(self) -> httpx2.AsyncClient:
        if self.http is None:
            raise RuntimeError("runtime opened without an HTTP client")
        return self.http
