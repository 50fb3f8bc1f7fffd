"""Anchors: the audit chain's head, written outside the database (REFUNDWATCH_AUDIT_ANCHOR).

The chain alone cannot show that its newest entries were deleted: what is left is still a valid
chain. So the head (``seq`` and its keyed ``hash``) is appended, as one JSON line
``{"seq", "hash", "at"}``, to a destination the database's owner cannot rewrite: a file opened
with O_APPEND and fsynced (make it append-only or write-once where it lives; see the README).
``audit verify`` then fails when the chain is shorter than the last anchor or differs from it.

An anchor never goes backwards: before appending, the current chain must still reach the last
anchor with the same hash; otherwise the anchor is refused (and the worker logs it), so a deleted
tail cannot be blessed by the next periodic anchor. Where the destination cannot be read back (a
FIFO), the worker's own last anchor stands in for the file's, kept in Redis: arq gives every job a
fresh context, and a restarted worker (or another one) must know it too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select

from refundwatch.audit.services import chain_head
from refundwatch.config import Settings
from refundwatch.db.engine import Database
from refundwatch.db.models import AuditEntry
from refundwatch.lib.exceptions import RefundwatchError
from refundwatch.lib.scripts import run_script

log = logging.getLogger("refundwatch.audit")
_HASH = re.compile(r"[0-9a-f]{64}")
_TAIL_BLOCK = 4096
LAST_KEY = "refundwatch:audit:anchor:last"  # the last anchor the worker wrote (JSON line)
TRIED_KEY = "refundwatch:audit:anchor:tried"  # when the worker last tried (epoch seconds)
# Take this interval's try: 1 when the last one is at least ARGV[2] seconds before ARGV[1] (or unreadable).
_TRY = """
local last = tonumber(redis.call('GET', KEYS[1]) or '')
if last and tonumber(ARGV[1]) - last < tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


class AnchorError(RefundwatchError):
    """The anchor destination cannot be read or written, or the chain no longer reaches it."""

    code = "audit_anchor"


@dataclass(frozen=True, slots=True)
class Anchor:
    seq: int
    hash: str
    at: str

    def line(self) -> bytes:
        body = json.dumps({"seq": self.seq, "hash": self.hash, "at": self.at}, separators=(",", ":"))
        return (body + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes, where: str, name: str = "the last anchor") -> Anchor:
        try:
            data: Any = json.loads(raw)
        except ValueError:
            raise AnchorError(f"{where}: {name} is not JSON") from None
        if not isinstance(data, dict):
            raise AnchorError(f"{where}: {name} is not a JSON object")
        seq, digest, at = data.get("seq"), data.get("hash"), data.get("at")
        if type(seq) is not int or seq < 0:
            raise AnchorError(f"{where}: {name} has no valid seq")
        if not isinstance(digest, str) or not _HASH.fullmatch(digest):
            raise AnchorError(f"{where}: {name} has no valid hash")
        return cls(seq, digest, str(at))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_readable_file(path: Path) -> bool:
    """A regular file that can be read back (a FIFO or a device is write-only for our purposes)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:  # missing, or a path through a file (ENOTDIR): nothing to read back
        return False


def _readable(path: Path, *, required: bool = False) -> bool:
    """Whether there are anchors to read at ``path``: False when it does not exist (an error when the
    operator named it, ``required``), an AnchorError when it exists but cannot be read as a file."""
    where = f"audit anchors {path}"
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        if required:
            raise AnchorError(f"{where}: does not exist") from None
        return False
    except OSError as exc:
        raise AnchorError(f"{where}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise AnchorError(f"{where}: not a regular file; pass a readable copy of the anchors with --anchors")
    return True


def read_last(path: Path) -> Anchor | None:
    """The last anchor in the file; None when there is none yet (no file, or an empty one)."""
    if not _readable(path):
        return None
    where = f"audit anchors {path}"
    try:
        with path.open("rb") as handle:
            return _last_line(handle, where)
    except OSError as exc:
        raise AnchorError(f"{where}: cannot read: {exc.strerror}") from None


def read_all(path: Path, *, required: bool = False) -> Iterator[tuple[int, Anchor]]:
    """Every anchor in the file with its line number, first to last (streamed: the file may be long);
    nothing when there is no file (an AnchorError when ``required``) or an empty one."""
    if not _readable(path, required=required):
        return
    where = f"audit anchors {path}"
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.endswith(b"\n"):
                    raise AnchorError(f"{where}: the anchor on line {number} is incomplete (no end of line)")
                yield number, Anchor.parse(raw, where, f"the anchor on line {number}")
    except OSError as exc:
        raise AnchorError(f"{where}: cannot read: {exc.strerror}") from None


def _last_line(handle: Any, where: str) -> Anchor | None:
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return None
    tail, position = b"", end
    while position > 0:  # read backwards until the start of the last line
        step = min(_TAIL_BLOCK, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
        if tail.count(b"\n") >= 2 or (position == 0 and tail):
            break
    if not tail.endswith(b"\n"):
        raise AnchorError(f"{where}: the last anchor is incomplete (no end of line)")
    last = tail[:-1].rsplit(b"\n", 1)[-1]
    return Anchor.parse(last, where)


def append(path: Path, anchor: Anchor) -> None:
    """Append one anchor line: O_APPEND (never overwrites), one write, fsync where it is a file."""
    # O_NONBLOCK: a FIFO nobody reads fails at once (ENXIO) instead of hanging the worker.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        try:
            fd = os.open(path, flags, 0o640)
        except FileNotFoundError:  # a missing directory is created; a file in the way fails (ENOTDIR)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o640)
        try:
            data = anchor.line()
            if os.write(fd, data) != len(data):
                raise AnchorError(f"audit anchors {path}: short write")
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise AnchorError(f"audit anchors {path}: cannot append: {exc.strerror}") from None


async def anchor(
    db: Database, path: Path, *, previous: Anchor | None = None, only_if_moved: bool = False
) -> Anchor | None:
    """Append the chain's head to ``path``; the anchor written, or None when ``only_if_moved`` and
    the head is where the last anchor left it.

    The last anchor is read back from the file where it is a readable file; ``previous`` (the one
    the worker wrote last) must be reached as well, and stands in for the file's where it cannot be
    read back (a FIFO).
    """
    readable, in_file = await asyncio.to_thread(_read_back, path)
    last = in_file if readable else previous  # "moved" since the last anchor in this destination
    async with db.snapshot_session() as session:
        seq, digest = await chain_head(session)
        for known in (a for a in (in_file, previous) if a is not None and a.seq > 0):
            if seq < known.seq:
                raise AnchorError(
                    f"refusing to anchor: the audit chain ends at seq {seq} but the last anchor "
                    f"({known.at}) is at seq {known.seq}; entries were deleted (run audit verify)"
                )
            anchored = await session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == known.seq))
            if anchored != known.hash:
                raise AnchorError(
                    f"refusing to anchor: the audit entry at seq {known.seq} differs from the last "
                    f"anchor ({known.at}); the chain was rewritten (run audit verify)"
                )
    if only_if_moved and last is not None and (last.seq, last.hash) == (seq, digest):
        return None
    written = Anchor(seq, digest, _now())
    await asyncio.to_thread(append, path, written)  # fsync: off the event loop
    return written


def _read_back(path: Path) -> tuple[bool, Anchor | None]:
    """Whether the destination can be read back (a FIFO or a device cannot), and its last anchor."""
    if is_readable_file(path) or not path.exists():
        return True, read_last(path)
    return False, None


async def anchor_periodically(db: Database, settings: Settings, redis: Redis) -> str | None:
    """The worker's anchoring (run every second): at most once per interval, and only when the head
    moved. When it last tried and the last anchor it wrote are kept in Redis, not in the job's
    context (arq builds a new one for every job), so they hold across runs, restarts and workers."""
    # One try per interval across every worker: taken atomically, so two overlapping runs never both
    # anchor (an older head appended after a newer one would read as going back).
    # Each process judges the last try by its own interval (a lowered setting applies at once).
    interval = float(settings.audit_anchor_interval_seconds)
    if not await run_script(redis, _TRY, [TRIED_KEY], [repr(time.time()), repr(interval)]):
        return None
    previous = _remembered(await redis.get(LAST_KEY))
    try:
        written = await anchor(db, Path(settings.audit_anchor), previous=previous, only_if_moved=True)
    except AnchorError as exc:
        log.error("audit anchor not written: %s", exc)  # noqa: TRY400 - the line says it all
        return f"not anchored: {exc}"
    if written is None:
        return None
    await redis.set(LAST_KEY, written.line())
    return f"anchored at seq {written.seq}"


def _remembered(raw: bytes | None) -> Anchor | None:
    if raw is None:
        return None
    try:
        return Anchor.parse(raw, "redis")
    except AnchorError:
        log.warning("audit anchor kept in Redis (%s) is unreadable: ignored", LAST_KEY)
        return None
