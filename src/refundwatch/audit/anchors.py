"""Anchors: the audit chain's head, written outside the database (REFUNDWATCH_AUDIT_ANCHOR).

The chain alone cannot show that its newest entries were deleted: what is left is still a valid
chain. So the head (``seq`` and its keyed ``hash``) is appended, as one JSON line
``{"seq", "hash", "at"}``, to a destination the database's owner cannot rewrite: a file opened
with O_APPEND and fsynced (make it append-only or write-once where it lives; see the README).
``audit verify`` then fails when the chain is shorter than the last anchor or differs from it.

An anchor never goes backwards: before appending, the current chain must still reach the last
anchor with the same hash; otherwise the anchor is refused (and the worker logs it), so a deleted
tail cannot be blessed by the next periodic anchor.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from refundwatch.audit.services import chain_head
from refundwatch.config import Settings
from refundwatch.db.engine import Database
from refundwatch.db.models import AuditEntry
from refundwatch.lib.exceptions import RefundwatchError

log = logging.getLogger("refundwatch.audit")
_HASH = re.compile(r"[0-9a-f]{64}")
_TAIL_BLOCK = 4096


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
    def parse(cls, raw: bytes, where: str) -> Anchor:
        try:
            data: Any = json.loads(raw)
        except ValueError:
            raise AnchorError(f"{where}: the last anchor is not JSON") from None
        if not isinstance(data, dict):
            raise AnchorError(f"{where}: the last anchor is not a JSON object")
        seq, digest, at = data.get("seq"), data.get("hash"), data.get("at")
        if type(seq) is not int or seq < 0:
            raise AnchorError(f"{where}: the last anchor has no valid seq")
        if not isinstance(digest, str) or not _HASH.fullmatch(digest):
            raise AnchorError(f"{where}: the last anchor has no valid hash")
        return cls(seq, digest, str(at))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_readable_file(path: Path) -> bool:
    """A regular file that can be read back (a FIFO or a device is write-only for our purposes)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return False


def read_last(path: Path) -> Anchor | None:
    """The last anchor in the file; None when there is none yet (no file, or an empty one)."""
    where = f"audit anchors {path}"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AnchorError(f"{where}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise AnchorError(f"{where}: not a regular file; pass a readable copy of the anchors with --anchors")
    try:
        with path.open("rb") as handle:
            return _last_line(handle, where)
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
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        # O_NONBLOCK: a FIFO nobody reads fails at once (ENXIO) instead of hanging the worker.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
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

    The last anchor is read back from the file where it is a readable file, otherwise ``previous``
    (the one this process wrote last) stands in for it.
    """
    last = await asyncio.to_thread(_last_known, path, previous)
    async with db.snapshot_session() as session:
        seq, digest = await chain_head(session)
        if last is not None and last.seq > 0:
            if seq < last.seq:
                raise AnchorError(
                    f"refusing to anchor: the audit chain ends at seq {seq} but the last anchor "
                    f"({last.at}) is at seq {last.seq}; entries were deleted (run audit verify)"
                )
            anchored = await session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == last.seq))
            if anchored != last.hash:
                raise AnchorError(
                    f"refusing to anchor: the audit entry at seq {last.seq} differs from the last "
                    f"anchor ({last.at}); the chain was rewritten (run audit verify)"
                )
    if only_if_moved and last is not None and (last.seq, last.hash) == (seq, digest):
        return None
    written = Anchor(seq, digest, _now())
    await asyncio.to_thread(append, path, written)  # fsync: off the event loop
    return written


def _last_known(path: Path, previous: Anchor | None) -> Anchor | None:
    """The file's last anchor where it can be read back, else the one this process wrote last."""
    readable = is_readable_file(path) or not path.exists()
    return (read_last(path) if readable else None) or previous


async def anchor_periodically(db: Database, settings: Settings, state: dict[str, Any]) -> str | None:
    """The worker's anchoring (run every second): at most once per interval, and only when the head
    moved. ``state`` (the worker's context) keeps when it is next due and the last anchor written."""
    now = time.monotonic()
    if now < state.get("audit_anchor_due", 0.0):
        return None
    state["audit_anchor_due"] = now + settings.audit_anchor_interval_seconds
    try:
        written = await anchor(
            db, Path(settings.audit_anchor), previous=state.get("audit_anchor"), only_if_moved=True
        )
    except AnchorError as exc:
        log.error("audit anchor not written: %s", exc)  # noqa: TRY400 - the line says it all
        return f"not anchored: {exc}"
    if written is None:
        return None
    state["audit_anchor"] = written
    return f"anchored at seq {written.seq}"
