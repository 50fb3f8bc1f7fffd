"""SQLite group commit: the small write transactions of concurrent callers share one transaction.

SQLite has one writer at a time across every process on the file. Each transaction of its own costs a
thread hop, a ``BEGIN IMMEDIATE`` that may find another process holding the lock (SQLite's busy handler
then sleeps a millisecond or more, whoever let go meanwhile) and a ``COMMIT`` that writes the WAL. Under
load a web process has dozens of intake writes waiting on its write turn; here they go together: one hop,
one lock, one commit. Each caller's work runs inside its own SAVEPOINT, so an exception rolls back that
caller's writes alone and reaches that caller alone; the others still commit. Nothing is reported as
done before the COMMIT that made it durable, and if that COMMIT fails every caller in it gets the error.

Across processes (web workers and the worker write the same file), group commits take their turns on
an flock of the database's directory before ``BEGIN IMMEDIATE``: a process waiting for it is woken the
moment the holder lets go, where SQLite's busy handler would sleep for up to 100 ms between polls.
SQLite's own lock still guards the data; the flock only orders the writers that know of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

try:
    import fcntl
except ImportError:  # not POSIX: SQLite's busy handler alone orders the processes
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

MAX_BATCH = 64  # keeps each transaction (and so everyone's wait for the lock) short

_Work = tuple[Callable[[Connection], Any], "asyncio.Future[Any]"]


class GroupCommit:
    def __init__(
        self, engine: Callable[[], Engine], turn: asyncio.Lock, lock_file: Path | None = None
    ) -> None:
        self._engine = engine  # made on first use
        self._turn = turn  # the process's write turn, which aiosqlite write sessions also take
        self._lock_file = lock_file  # flocked for the writers' turn across processes (None: in memory)
        self._lock_fd: int | None = None
        self._waiting: list[_Work] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` atomically in a write transaction; return once that transaction committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all())
        return await future

    async def _flush_all(self) -> None:
        while self._waiting:
            batch: list[_Work] = []
            try:
                async with self._turn:
                    # Taken once the turn is ours: whoever arrived while we waited for it comes along.
                    # A caller cancelled before its turn came is dropped: its work never runs.
                    batch = [item for item in self._waiting[:MAX_BATCH] if not item[1].done()]
                    del self._waiting[:MAX_BATCH]
                    if not batch:
                        continue
                    outcomes = await asyncio.to_thread(self._transaction, [work for work, _ in batch])
            except Exception as err:  # noqa: BLE001 - the whole transaction failed: nothing of it was written
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            except BaseException:  # the loop is closing: nobody is left to answer
                for _, future in batch:
                    future.cancel()
                self._cancel_waiting()
                raise
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # cancelled while its transaction ran: it committed all the same
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _cancel_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for _, future in waiting:
            if not future.done():
                future.cancel()

    @contextlib.contextmanager
    def _across_processes(self) -> Iterator[None]:
        """Hold the file lock (in this thread; the process's turn is already held, so one at a time)."""
        if self._lock_file is None or fcntl is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_file, os.O_RDONLY)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _transaction(self, works: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self._across_processes(), self._engine().begin() as conn:
            driver = conn.connection.dbapi_connection
            assert driver is not None
            for work in works:
                # Straight to the driver: SQLAlchemy need not know of savepoints it does not manage.
                driver.execute("SAVEPOINT work")
                try:
                    value = work(conn)
                except Exception as err:  # noqa: BLE001 - it belongs to this caller, not to the batch
                    # Should undoing it fail, that propagates: the whole transaction rolls back.
                    driver.execute("ROLLBACK TO work")
                    driver.execute("RELEASE work")
                    outcomes.append((False, err))
                else:
                    driver.execute("RELEASE work")
                    outcomes.append((True, value))
        return outcomes
