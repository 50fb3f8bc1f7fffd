"""SQLite group commit (db/groupcommit.py) through ``Database.run_sqlite_write``, on a real database file.

Concurrent writes share transactions, and each caller still gets all-or-nothing for its own work:
its exception undoes its writes alone, and a failed COMMIT fails everyone in it with nothing written.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Connection, ForeignKey, Integer, MetaData, Table, event, insert, select
from sqlalchemy.exc import IntegrityError

from refundwatch.db.engine import Database

METADATA = MetaData()
ITEMS = Table("items", METADATA, Column("id", Integer, primary_key=True), Column("value", Integer))
# A deferred foreign key is checked at COMMIT, so a violation makes the COMMIT itself fail.
LINKS = Table(
    "links",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id", deferrable=True, initially="DEFERRED")),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'groupcommit.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    yield database
    await database.dispose()


def _insert(item_id: int) -> Any:
    def work(conn: Connection) -> int:
        conn.execute(insert(ITEMS).values(id=item_id, value=item_id))
        return item_id

    return work


async def _ids(db: Database) -> list[int]:
    return sorted(row.id for row in await db.fetch_all(select(ITEMS.c.id)))


async def test_concurrent_writes_share_transactions_and_each_caller_gets_its_result(db: Database) -> None:
    commits = 0

    def count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    engine = db._sqlite_engine(write=True)
    event.listen(engine, "commit", count)
    results = await asyncio.gather(*(db.run_sqlite_write(_insert(i)) for i in range(1, 301)))
    assert results == list(range(1, 301))
    assert await _ids(db) == list(range(1, 301))
    assert commits < 30, commits  # hundreds of writes, a handful of transactions
    # A lone write still goes at once.
    assert await asyncio.wait_for(db.run_sqlite_write(_insert(1000)), 5) == 1000


async def test_a_failing_work_undoes_its_own_writes_only(db: Database) -> None:
    def duplicate_after_a_write(conn: Connection) -> None:
        conn.execute(insert(ITEMS).values(id=500, value=0))  # written, then undone with the rest
        conn.execute(insert(ITEMS).values(id=1, value=0))  # the key another caller takes

    def raises_after_a_write(conn: Connection) -> None:
        conn.execute(insert(ITEMS).values(id=501, value=0))
        raise ValueError("this caller's own failure")

    results = await asyncio.gather(
        *(db.run_sqlite_write(_insert(i)) for i in range(1, 20)),
        db.run_sqlite_write(duplicate_after_a_write),
        db.run_sqlite_write(raises_after_a_write),
        *(db.run_sqlite_write(_insert(i)) for i in range(20, 40)),
        return_exceptions=True,
    )
    assert isinstance(results[19], IntegrityError)
    assert isinstance(results[20], ValueError)
    assert str(results[20]) == "this caller's own failure"
    assert [r for r in results if not isinstance(r, Exception)] == list(range(1, 40))
    assert await _ids(db) == list(range(1, 40))  # 500 and 501 undone, everyone else committed


async def test_a_failed_commit_fails_every_caller_in_it_and_writes_nothing(db: Database) -> None:
    def dangling_link(conn: Connection) -> None:
        conn.execute(insert(LINKS).values(id=1, item_id=999))  # no item 999: COMMIT will refuse

    results = await asyncio.gather(
        *(db.run_sqlite_write(_insert(i)) for i in range(1, 10)),
        db.run_sqlite_write(dangling_link),
        return_exceptions=True,
    )
    # Every caller that shared the failed transaction hears of it; the ones before it may have
    # gone in an earlier transaction of their own, and those committed.
    failed = [i for i, r in enumerate(results) if isinstance(r, IntegrityError)]
    assert 9 in failed
    committed = [r for r in results if isinstance(r, int)]
    assert await _ids(db) == sorted(committed)
    assert not (await db.fetch_all(select(LINKS.c.id)))


async def test_a_caller_cancelled_before_its_turn_never_runs(db: Database) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(conn: Connection) -> int:
        started.set()
        release.wait(10)  # holds the transaction until the second caller has been cancelled
        conn.execute(insert(ITEMS).values(id=1, value=1))
        return 1

    first = asyncio.create_task(db.run_sqlite_write(slow))
    assert await asyncio.to_thread(started.wait, 10)
    second = asyncio.create_task(db.run_sqlite_write(_insert(2)))
    await asyncio.sleep(0)  # it is now waiting for the next transaction
    second.cancel()
    release.set()
    assert await first == 1
    with pytest.raises(asyncio.CancelledError):
        await second
    await db.run_sqlite_write(_insert(3))
    assert await _ids(db) == [1, 3]
