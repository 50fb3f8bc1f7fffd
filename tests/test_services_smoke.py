"""The test-service helpers find or start Redis and PostgreSQL, and only ever touch what is theirs."""

from __future__ import annotations

import os
import shutil
import uuid

import asyncpg
import pytest
import redis

from _services import (
    PG_DB_PREFIX,
    TEST_REDIS_DB,
    create_pg_database,
    drop_pg_database,
    ensure_postgres,
    ensure_redis,
    flush_redis_db,
    free_port,
    pg_database_exists,
    postgres_unavailable_reason,
    start_private_redis,
    unique_pg_database_name,
    wait_for_port,
)


def _admin_dsn_or_skip() -> str:
    admin = ensure_postgres()
    if admin is None:
        reason = f"PostgreSQL unavailable: {postgres_unavailable_reason()}"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs PostgreSQL; missing there is a real failure
        pytest.skip(reason)
    return admin


def test_redis_answers_on_dedicated_db_and_flush_stays_there() -> None:
    url = ensure_redis()
    assert url.endswith(f"/{TEST_REDIS_DB}")
    assert ensure_redis() == url  # cached: one Redis per test process
    client = redis.Redis.from_url(url)
    try:
        assert client.ping()
        key = f"refundwatch-smoke-{uuid.uuid4().hex}"
        client.set(key, "1")
        flush_redis_db(url)
        assert client.get(key) is None
    finally:
        client.close()


def test_flush_refuses_db_zero() -> None:
    with pytest.raises(ValueError, match="db 0"):
        flush_redis_db("redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="db 0"):
        flush_redis_db("redis://127.0.0.1:6379")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary")
def test_private_redis_server_starts_on_free_port() -> None:
    url = start_private_redis()  # stopped at interpreter exit
    assert not url.startswith("redis://127.0.0.1:6379/")
    client = redis.Redis.from_url(url)
    try:
        assert client.ping()
    finally:
        client.close()


def test_wait_for_port_times_out_on_closed_port() -> None:
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), timeout=0.2)


async def test_postgres_database_lifecycle() -> None:
    admin = _admin_dsn_or_skip()
    name = unique_pg_database_name("smoke")
    assert name.startswith(PG_DB_PREFIX)
    url = create_pg_database(admin, name)  # synchronous, and callable inside a running loop
    try:
        assert url.startswith("postgresql+asyncpg://")
        assert url.endswith(f"/{name}")
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert await conn.fetchval("SELECT current_database()") == name
        finally:
            await conn.close()
        # Re-creating drops the earlier one (it is ours) and leaves an empty database.
        assert create_pg_database(admin, name) == url
    finally:
        drop_pg_database(admin, name)
    assert not pg_database_exists(admin, name)
    drop_pg_database(admin, name)  # already gone: no error


def test_postgres_helpers_refuse_foreign_databases() -> None:
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"  # never contacted: names are checked first
    for name in ("postgres", "refundwatch", "template1", 'refundwatch_test"; DROP DATABASE x; --'):
        with pytest.raises(ValueError, match="refusing"):
            create_pg_database(admin, name)
        with pytest.raises(ValueError, match="refusing"):
            drop_pg_database(admin, name)


async def test_postgres_drop_leaves_unmarked_databases_alone() -> None:
    admin = _admin_dsn_or_skip()
    name = unique_pg_database_name("foreign")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')  # right prefix, but not made by the helpers
        try:
            with pytest.raises(RuntimeError, match="not created by the test helpers"):
                drop_pg_database(admin, name)
            assert pg_database_exists(admin, name)
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()
