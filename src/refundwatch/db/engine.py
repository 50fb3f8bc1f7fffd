"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

Transactions are explicit everywhere: services commit, then cause side effects (STYLE rule 7).
On SQLite, write sessions start with BEGIN IMMEDIATE so two writers queue on the database lock up
front instead of failing on a lock upgrade halfway through; reads use a plain deferred BEGIN. Within a
process, write sessions also queue on an asyncio lock: SQLite's busy handler polls with growing sleeps
and is unfair, so dozens of pooled writers polling for the lock can starve one past any timeout, while
a FIFO queue in the process keeps every wait as short as the transactions ahead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, Row, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from refundwatch.db.groupcommit import GroupCommit

T = TypeVar("T")


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def _writers_lock(url: str) -> Path | None:
    """What a SQLite database's writing processes take turns on (groupcommit): its directory, so no
    file is left behind, and no descriptor of the database file is closed under SQLite's own locks."""
    path = _sqlite_file(url) if url.startswith("sqlite") else None
    return None if path is None else path.parent


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(
    url: str, *, immediate: bool = True, pool_size: int = 20, autocommit: bool = False
) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = _sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, pool_size=pool_size, max_overflow=0, pool_timeout=60, hide_parameters=True
        )
        _configure_sqlite(engine.sync_engine, immediate=immediate)
        return engine
    # Round trips are the cost that matters here, so: no pool_pre_ping (one per transaction; a dropped
    # connection fails one transaction and is discarded, pool_recycle retires idle ones early) and no
    # reset-on-return ROLLBACK (every session already ends in COMMIT or ROLLBACK). Read-only engines
    # run in autocommit: single SELECTs need no BEGIN/ROLLBACK around them.
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    return create_async_engine(
        url,
        pool_size=pool_size,
        # No overflow: under load, overflow connections are opened and closed per checkout, and a
        # connect costs more CPU than waiting a moment for a pooled connection.
        max_overflow=0,
        pool_recycle=900,
        pool_reset_on_return=None,
        # A failed statement's values (webhook bodies, metadata) never go into its exception text,
        # which a plain-text log prints with the traceback.
        hide_parameters=True,
        **options,
    )


class Database:
    """One per process: a write engine and a read engine (deferred on SQLite, autocommit on PostgreSQL;
    on PostgreSQL the autocommit engine also runs single self-contained write statements)."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        """``pool_size`` writers; reads get three quarters as many. PostgreSQL's default of 100
        connections must cover every web and worker process, so keep these small (PgBouncer for large
        deployments)."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = make_engine(url, immediate=True, pool_size=pool_size)
        self.read_engine = make_engine(
            url, immediate=False, pool_size=max(2, pool_size * 3 // 4), autocommit=True
        )
        self._writer = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False, autoflush=False)
        self._write_turn = asyncio.Lock() if self.is_sqlite else None
        self._read_pool_size = max(2, pool_size * 3 // 4)
        self._sqlite_writer: Engine | None = None  # plain (sync) engines, made on first use
        self._sqlite_reader: Engine | None = None
        self._group_commit = (
            GroupCommit(lambda: self._sqlite_engine(write=True), self._write_turn, _writers_lock(url))
            if self._write_turn is not None
            else None
        )

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A write session; the caller commits. Anything not committed is rolled back.

        Never open a write session inside another one: on SQLite the second would wait for the first.
        """
        if self._write_turn is None:
            async with self._writer() as session:
                yield session
            return
        async with self._write_turn, self._writer() as session:
            yield session

    @contextlib.asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session:
            yield session

    @contextlib.asynccontextmanager
    async def write_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a write transaction, committed on success (no ORM unit of work)."""
        if self._write_turn is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_turn, self.engine.begin() as conn:
            yield conn

    def _sqlite_engine(self, *, write: bool) -> Engine:
        engine = self._sqlite_writer if write else self._sqlite_reader
        if engine is None:
            size = 2 if write else self._read_pool_size
            url = make_url(self.url).set(drivername="sqlite")
            engine = create_engine(url, pool_size=size, max_overflow=0, hide_parameters=True)
            _configure_sqlite(engine, immediate=write)
            if write:
                self._sqlite_writer = engine
            else:
                self._sqlite_reader = engine
        return engine

    async def run_sqlite_write(self, work: Callable[[Connection], T]) -> T:
        """SQLite only: run ``work`` atomically in a write transaction, in one thread hop on a plain
        connection, and return once it is committed. Through aiosqlite every statement is a hop between
        the event loop and a thread, with the write turn held across all of them. Concurrent calls
        share one transaction, each in its own savepoint (``groupcommit``): an exception from ``work``
        undoes its writes alone and is raised here."""
        assert self._group_commit is not None, "run_sqlite_write is for SQLite"
        return await self._group_commit.run(work)

    async def fetch_all(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> list[Row[Any]]:
        """The rows of one read statement, the cheapest way each database allows: on PostgreSQL on
        the autocommit engine (no BEGIN/ROLLBACK), on SQLite in one thread hop on a plain connection.
        Through aiosqlite the same read is half a dozen hops (checkout, BEGIN, cursor, execute, fetch,
        rollback): about 0.95 ms of CPU per intake lookup on the bench machine, against 0.31 ms."""
        if not self.is_sqlite:
            async with self.read_engine.connect() as conn:
                return list((await conn.execute(statement, params)).all())
        engine = self._sqlite_engine(write=False)

        def read() -> list[Row[Any]]:
            with engine.connect() as conn:
                return list(conn.execute(statement, params).all())

        return await asyncio.to_thread(read)

    @contextlib.asynccontextmanager
    async def autocommit_connection(self) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL only: each statement commits on its own, with no BEGIN/COMMIT round trips. For
        single statements that must be atomic by themselves (a data-modifying CTE is)."""
        if self.is_sqlite:
            raise RuntimeError("autocommit connections are for PostgreSQL; use write_connection")
        async with self.read_engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def snapshot_session(self) -> AsyncIterator[AsyncSession]:
        """A read-only view that stays consistent across many statements (for whole-table checks)."""
        if self.is_sqlite:  # a deferred read transaction in WAL mode is already a snapshot
            async with self._reader() as session:
                yield session
            return
        async with self._writer() as session:
            await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            yield session
            await session.rollback()

    async def dispose(self) -> None:
        for engine in (self._sqlite_writer, self._sqlite_reader):
            if engine is not None:
                engine.dispose()
        if self._group_commit is not None:
            self._group_commit.close()
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
