"""Reading the audit log: filters, keyset pages, readable details, and CSV / JSON Lines exports.

One filter means the same on the page and in both exports. Every filter but the free-text search is
index-backed (target id since 0001; action and actor with the id, and time, since 0012), and pages are
keyset pages on the primary key (``id < before``), so a page of a large log costs one index range, not
an OFFSET (on 300,000 entries in PostgreSQL a filtered page takes under a millisecond).
The search is a substring match over actor, target and details, and finds staff by the name pages show
for them (their latest sign-in's, which the actor id does not hold): it reads entries newest first until a
page is full, so it is best combined with a time range on a large log.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, or_, select

from refundwatch.db.engine import Database
from refundwatch.db.models import AuditEntry
from refundwatch.lib import csvcells
from refundwatch.lib.identifiers import whole_number
from refundwatch.refunds.people import staff_named

PAGE = 100
BATCH = 1000  # entries per query while exporting
MAX_ID = 2**63 - 1  # audit_log.id is a BIGINT: a cursor past it is not one of ours
ACTOR_TYPES = ("user", "api_key", "system", "processor")
FIELDS = ("actor", "actor_type", "action", "target", "since", "until", "q")


@dataclass(slots=True)
class AuditFilter:
    """A parsed query string: the filter, the cursor, what the form shows back, and what was refused."""

    actor: str | None = None  # exactly this actor id
    actor_type: str | None = None
    action: str | None = None  # exactly this action
    target: str | None = None  # exactly this target id
    since: dt.datetime | None = None  # inclusive, UTC
    until: dt.datetime | None = None  # exclusive, UTC
    q: str | None = None  # substring of actor, target or details, or of a person's name (see named())
    q_actors: tuple[str, ...] = ()  # the staff whose shown name contains q
    before: int | None = None  # keyset cursor: entries older than this id
    form: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def query(self, **override: Any) -> str:
        """The query string of this filter (cursor aside unless given), for links and exports."""
        params = {k: v for k, v in self.form.items() if v}
        params.update({k: str(v) for k, v in override.items() if v is not None})
        return urlencode(params)

    def summary(self) -> dict[str, str]:
        return {k: v for k, v in self.form.items() if v}


def _time(name: str, raw: str, errors: list[str]) -> dt.datetime | None:
    """ISO 8601 times. The page's script sends the viewer's local time as UTC with a ``Z``
    (static/js/localtime.js); a time without a zone (the form without its script) is UTC."""
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        # A zone can carry a moment past year 1 or 9999 once in UTC (OverflowError): not a time.
        return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        errors.append(
            f"{name}: {raw!r} is not a date and time (YYYY-MM-DDTHH:MM, in UTC unless it has a zone)"
        )
        return None


def parse(items: Iterable[tuple[str, str]]) -> AuditFilter:
    values = {k: v.strip() for k, v in items if k in (*FIELDS, "before") and v.strip()}
    f = AuditFilter(form={k: values.get(k, "") for k in FIELDS})
    f.actor, f.action, f.target = values.get("actor"), values.get("action"), values.get("target")
    f.q = values.get("q")
    if (kind := values.get("actor_type")) is not None:
        if kind in ACTOR_TYPES:
            f.actor_type = kind
        else:
            f.errors.append(f"actor type: {kind!r} is not one of {', '.join(ACTOR_TYPES)}")
    if "since" in values:
        f.since = _time("from", values["since"], f.errors)
    if "until" in values:
        f.until = _time("until", values["until"], f.errors)
    for name, moment in (("since", f.since), ("until", f.until)):
        if moment is not None:  # UTC with its Z in links and exports: one meaning wherever it is read
            f.form[name] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if f.since and f.until and f.since >= f.until:
        f.errors.append("the time range ends before it starts")
    if (before := values.get("before")) is not None:
        if (cursor := whole_number(before, MAX_ID)) is not None:
            f.before = cursor
        else:
            f.errors.append("the page cursor is not valid; start from the newest entries")
    return f


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def conditions(f: AuditFilter) -> list[ColumnElement[bool]]:
    """The WHERE terms of a filter, cursor aside."""
    terms: list[ColumnElement[bool]] = []
    if f.actor is not None:
        terms.append(AuditEntry.actor_id == f.actor)
    if f.actor_type is not None:
        terms.append(AuditEntry.actor_type == f.actor_type)
    if f.action is not None:
        terms.append(AuditEntry.action == f.action)
    if f.target is not None:
        terms.append(AuditEntry.target_id == f.target)
    if f.since is not None:
        terms.append(AuditEntry.at >= f.since)
    if f.until is not None:
        terms.append(AuditEntry.at < f.until)
    if f.q is not None:
        pattern = _like(f.q)
        terms.append(
            or_(
                AuditEntry.actor_id.ilike(pattern, escape="\\"),
                AuditEntry.target_id.ilike(pattern, escape="\\"),
                AuditEntry.action.ilike(pattern, escape="\\"),
                AuditEntry.details.ilike(pattern, escape="\\"),
                *([AuditEntry.actor_id.in_(f.q_actors)] if f.q_actors else []),
            )
        )
    return terms


async def named(db: Database, f: AuditFilter) -> AuditFilter:
    """Let the search find people by the name the page shows for them: staff by the name from their
    latest sign-in (an API key's name is already part of its actor id)."""
    if f.q:
        async with db.read_session() as session:
            f.q_actors = tuple(await staff_named(session, f.q))
    return f


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[AuditEntry]
    next_before: int | None  # the cursor of the next (older) page; None on the last page


async def page(db: Database, f: AuditFilter, *, size: int = PAGE) -> Page:
    query = select(AuditEntry).where(*conditions(f)).order_by(AuditEntry.id.desc()).limit(size + 1)
    if f.before is not None:
        query = query.where(AuditEntry.id < f.before)
    async with db.read_session() as session:
        rows = list(await session.scalars(query))
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, rows[-1].id if more else None)


async def walk(db: Database, terms: Sequence[ColumnElement[bool]]) -> AsyncIterator[list[AuditEntry]]:
    """Every entry matching ``terms``, newest first, in keyset batches (memory stays flat)."""
    before: int | None = None
    while True:
        query = select(AuditEntry).where(*terms).order_by(AuditEntry.id.desc()).limit(BATCH)
        if before is not None:
            query = query.where(AuditEntry.id < before)
        async with db.read_session() as session:
            rows = list(await session.scalars(query))
        if not rows:
            return
        yield rows
        if len(rows) < BATCH:
            return
        before = rows[-1].id


# ---------------------------------------------------------------------------------------- reading


def utc_text(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: what exports and the page's hover text carry."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Detail:
    """One line of an entry's details: ``key: text``, or an amount for the money filter."""

    key: str
    text: str
    amount: int | None = None
    currency: str | None = None


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "—"
    return str(value)


def details_of(raw: str) -> list[Detail]:
    """The stored JSON as lines people read: a status change as ``from → to``, an amount with its
    currency, nested objects as ``key: value`` pairs."""
    try:
        data = json.loads(raw)
    except ValueError:
        return [Detail("details", raw)]
    if not isinstance(data, dict):
        return [Detail("details", _text(data))]
    data = dict(data)
    lines: list[Detail] = []
    if "from" in data and "to" in data:
        lines.append(Detail("status", f"{_text(data.pop('from'))} → {_text(data.pop('to'))}"))
    amount, currency = data.get("amount"), data.get("currency")
    if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(currency, str):
        del data["amount"], data["currency"]
        lines.append(Detail("amount", f"{amount} {currency}", amount, currency))
    lines.extend(Detail(key, _text(value)) for key, value in data.items())
    return lines


# ---------------------------------------------------------------------------------------- exports

HEADER = (
    "id",
    "seq",
    "at",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "details",
    "ip",
    "user_agent",
    "hash",
)


def filename(kind: str, now: dt.datetime) -> str:
    return csvcells.stamped("audit", now, kind)


def _row(entry: AuditEntry) -> list[str | int]:
    return [
        csvcells.cell(v, utc_text)  # the audit log's times as its page and JSON Lines show them
        for v in (
            entry.id,
            entry.seq,
            entry.at,
            entry.actor_type,
            entry.actor_id,
            entry.action,
            entry.target_type,
            entry.target_id,
            entry.details,
            entry.ip,
            entry.user_agent,
            entry.hash,
        )
    ]


def _json_line(entry: AuditEntry) -> str:
    try:
        details: Any = json.loads(entry.details)
    except ValueError:
        details = entry.details
    record = {
        "id": entry.id,
        "seq": entry.seq,
        "at": utc_text(entry.at),
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": details,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "hash": entry.hash,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


async def csv_chunks(db: Database, terms: Sequence[ColumnElement[bool]]) -> AsyncIterator[bytes]:
    yield csvcells.lines([HEADER])
    async for rows in walk(db, terms):
        yield csvcells.lines([_row(e) for e in rows])


async def jsonl_chunks(db: Database, terms: Sequence[ColumnElement[bool]]) -> AsyncIterator[bytes]:
    async for rows in walk(db, terms):
        yield "".join(_json_line(e) for e in rows).encode("utf-8")
