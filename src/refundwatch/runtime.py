"""What a process (web, worker, CLI) holds open: settings, database, job queue, HTTP client, caches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from refundwatch.config import Settings, get_settings
from refundwatch.connections.services import ConnectionCache
from refundwatch.dashboard.signals import signals
from refundwatch.db.engine import Database
from refundwatch.db.types import use_cipher
from refundwatch.lib.crypto import FieldCipher
from refundwatch.lib.http import make_client
from refundwatch.refunds.breaker import Breaker

QUEUE_NAME = "refundwatch:queue"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


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

    async def open(self, *, redis: bool = True, http: bool = True) -> Runtime:
        if redis and self.redis is None:
            self.redis = await create_pool(
                redis_settings(self.settings.redis_url), default_queue_name=QUEUE_NAME
            )
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
