"""One settlement line's verdict, decided in memory from what its batch read (issue 14 §3).

A refund line is matched on the processor's own refund id first, then on the merchant reference
refundwatch sent (its refund id). A line that an earlier file already brought, same key and same
content (cumulative reports), is that line again: it keeps the earlier verdict and opens nothing
(``_seen_before``). Nothing here touches the database: ``matching`` reads a batch, asks ``classify``
line by line in id order, and writes the verdicts and breaks in bulk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from uuid_utils.compat import uuid7

from refundwatch.refunds.states import Status

if TYPE_CHECKING:
    from refundwatch.db.models import Refund

MATCHED = "matched"
NOT_A_REFUND = "not_a_refund"
REFUND_KINDS = ("refund", "refund_failure")


def break_values(
    kind: str,
    connection_id: UUID | None,
    subject: str,
    detail: str,
    *,
    refund_id: UUID | None = None,
    line_id: int | None = None,
    gateway_refund_id: str | None = None,
    expected: int | None = None,
    actual: int | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """A new open break's columns: one shape for the ORM (``new_break``) and the bulk insert."""
    return {
        "id": uuid7(),
        "connection_id": connection_id,
        "kind": kind,
        "subject": subject[:255],
        "refund_id": refund_id,
        "line_id": line_id,
        "gateway_refund_id": gateway_refund_id,
        "currency": currency,
        "expected": expected,
        "actual": actual,
        "detail": detail[:500],
        "opened_at": dt.datetime.now(dt.UTC),
        "status": "open",
    }


@dataclasses.dataclass(slots=True)
class RefundView:
    """What deciding a line needs of its refund; ``status`` follows what this batch did to it."""

    id: UUID
    connection_id: UUID
    gateway_refund_id: str | None
    amount: int
    currency: str
    status: str


class Line(NamedTuple):
    """A line as matching reads it (``matching._LINE_COLUMNS``, in that order)."""

    id: int
    file_id: UUID
    connection_id: UUID
    row_number: int
    line_key: str
    kind: str
    gross: int
    currency: str
    gateway_refund_id: str | None
    merchant_reference: str | None
    raw_type: str


# What a line says, whatever form it came in (a report's CSV, its columns in any order, or the
# processor's API answer for the same balance transaction): its kind, amount and currency.
Content = tuple[str, int, str]


def content_of(line: Line) -> Content:
    return (line.kind, line.gross, line.currency)


class Earlier(NamedTuple):
    """A line already classified under the same processor line key (one per line: a cheap tuple)."""

    id: int
    connection_id: UUID
    file_id: UUID
    content: Content
    match: str
    refund_id: UUID | None


# Keyed by the processor's strings, the connection compared on a hit: a key of (connection, text)
# hashes a UUID in Python for every line, and a batch is nearly always one connection's.
@dataclasses.dataclass
class Batch:
    by_gateway_id: dict[str, list[RefundView]]  # refunds by the processor's refund id
    by_id: dict[UUID, RefundView]
    earlier: dict[str, list[Earlier]]  # classified lines by line key, in id order
    locked: dict[UUID, Refund] = dataclasses.field(default_factory=dict)  # locked for a transition
    # (processor, account) of the connections that name their processor account: a line imported for
    # one of them may be about a refund made through another (ConnectionCache.siblings).
    accounts: dict[UUID, tuple[str, str]] = dataclasses.field(default_factory=dict)

    # This batch's lines as decided, by key (what the next batch carries over).
    decided: list[tuple[str, Earlier]] = dataclasses.field(default_factory=list)

    def classified(self, line: Line, match: str, refund_id: UUID | None) -> None:
        """``line`` has its verdict: later lines of the batch with its key see it."""
        earlier = Earlier(line.id, line.connection_id, line.file_id, content_of(line), match, refund_id)
        self.earlier.setdefault(line.line_key, []).append(earlier)
        self.decided.append((line.line_key, earlier))

    def carry(self, lines: list[Line], before: list[tuple[str, Earlier]]) -> None:
        """The batch before's lines (``decided``), perhaps not committed yet, as earlier lines of
        ``lines``' keys: each once (the read may have found it committed already), in id order."""
        if not before:
            return
        wanted = {line.line_key for line in lines if line.kind in REFUND_KINDS}
        touched = set()
        for key, earlier in before:
            if key in wanted:
                self.earlier.setdefault(key, []).append(earlier)
                touched.add(key)
        for key in touched:
            self.earlier[key] = sorted({e.id: e for e in self.earlier[key]}.values())

    def by_gateway(self, connection_id: UUID, gateway_refund_id: str | None) -> RefundView | None:
        """The connection's refund with this processor refund id (the last read, if ever two)."""
        for refund in reversed(self.by_gateway_id.get(gateway_refund_id or "", ())):
            if self.same_account(refund.connection_id, connection_id):
                return refund
        return None

    def with_siblings(self, connections: set[UUID]) -> set[UUID]:
        """These connections and every other that reaches one of their processor accounts."""
        shared = {self.accounts[c] for c in connections if c in self.accounts}
        return connections | {c for c, account in self.accounts.items() if account in shared}

    def same_account(self, one: UUID, other: UUID) -> bool:
        """The same connection, or two that reach the same processor account."""
        if _same(one, other):
            return True
        account = self.accounts.get(one)
        return account is not None and account == self.accounts.get(other)


def _same(one: UUID, other: UUID) -> bool:
    return one is other or one == other


def _refund_for(batch: Batch, line: Line) -> RefundView | None:
    if line.gateway_refund_id:
        found = batch.by_gateway(line.connection_id, line.gateway_refund_id)
        if found is not None:
            return found
    reference = as_uuid(line.merchant_reference)
    if reference is None:
        return None
    refund = batch.by_id.get(reference)
    return (
        refund
        if refund is not None and batch.same_account(refund.connection_id, line.connection_id)
        else None
    )


def as_uuid(text: str | None) -> UUID | None:
    if not text:
        return None
    try:
        return UUID(text)
    except ValueError:
        return None


def _seen_before(batch: Batch, line: Line) -> tuple[str, Earlier] | None:
    """Whether an earlier line has ``line``'s processor line key: ("repeat", it) or ("duplicate", it).

    Reports are often cumulative (a processor's report "so far", a payout report run again): a later
    file brings the earlier lines again, under the same key and with the same content (kind, amount,
    currency), perhaps in another form: the columns in another order, or the API's answer for what a
    file brought. Such a line is the same line seen again (a *repeat*), not a duplicate: it takes the
    earlier line's verdict and opens nothing. Within one file the same key twice is a *duplicate*.
    Counted per key and content, so a line duplicated within a report and repeated by the next report
    (the same two rows) is a duplicate once: the k-th copy in this file repeats the k-th copy of an
    earlier file. An earlier line with the same key but another amount, kind or currency in another
    file (the processor now reports it differently) is neither: this line is matched afresh.
    """
    same_key = batch.earlier.get(line.line_key)
    if not same_key:  # the usual line: its key is new
        return None
    # A sibling's import of the account's report brings the same lines: repeats, as within one connection.
    earlier = [
        e for e in same_key if e.id < line.id and batch.same_account(e.connection_id, line.connection_id)
    ]
    if not earlier:
        return None
    here = [e for e in earlier if e.file_id == line.file_id]
    content = content_of(line)
    if any(e.content != content for e in here):
        return "duplicate", here[0]
    copies: dict[UUID, list[Earlier]] = {}
    for e in earlier:
        if e.file_id != line.file_id and e.content == content:
            copies.setdefault(e.file_id, []).append(e)
    for same in copies.values():
        if len(same) > len(here):
            return "repeat", same[len(here)]
    if here:
        return "duplicate", here[0]
    return None


# --- one line's verdict ----------------------------------------------------------------------------

# (match, refund id, the break it opens or None)
Verdict = tuple[str, UUID | None, dict[str, Any] | None]


def _line_break(kind: str, line: Line, subject: str, detail: str, **values: Any) -> dict[str, Any]:
    return break_values(
        kind,
        line.connection_id,
        subject,
        detail,
        line_id=line.id,
        gateway_refund_id=line.gateway_refund_id,
        **values,
    )


def refund_break(kind: str, line: Line, refund: RefundView, detail: str, **values: Any) -> dict[str, Any]:
    return break_values(
        kind,
        line.connection_id,
        f"refund:{refund.id}",
        detail,
        refund_id=refund.id,
        line_id=line.id,
        gateway_refund_id=line.gateway_refund_id or refund.gateway_refund_id,
        expected=refund.amount,
        actual=abs(line.gross),
        **values,
    )


def classify(batch: Batch, line: Line) -> Verdict | RefundView:
    """The line's verdict, decided in memory; or its refund, when the processor's word about the money
    may change the refund's status (``matching`` decides those under the refund's lock)."""
    if line.kind == "unmapped":
        detail = f"{line.raw_type!r}: a type refundwatch does not know"
        return "unmapped", None, _line_break("unmapped", line, f"line:{line.id}", detail)
    if line.kind not in REFUND_KINDS:
        return NOT_A_REFUND, None, None
    seen = _seen_before(batch, line)
    if seen is not None and seen[0] == "repeat":
        return seen[1].match, seen[1].refund_id, None
    if seen is not None:
        detail = f"the same line as line {seen[1].id} ({line.line_key})"
        whose = _refund_for(batch, line)  # so the break shows on that refund's timeline
        found = _line_break(
            "duplicate_line",
            line,
            f"line:{line.id}",
            detail,
            actual=abs(line.gross),
            currency=line.currency,
            refund_id=whose.id if whose is not None else None,
        )
        return "duplicate_line", None, found
    refund = _refund_for(batch, line)
    if refund is None:
        named = line.gateway_refund_id or line.line_key
        detail = f"{line.raw_type} {named}: in the report, unknown to refundwatch"
        found = _line_break(
            "missing_local", line, f"line:{line.id}", detail, actual=abs(line.gross), currency=line.currency
        )
        return "missing_local", None, found
    if line.currency != refund.currency:
        detail = f"reported in {line.currency}, asked in {refund.currency}"
        return (
            "currency_mismatch",
            refund.id,
            refund_break("currency_mismatch", line, refund, detail, currency=line.currency),
        )
    if abs(line.gross) != refund.amount:  # gross is signed from the balance: a refund's is negative
        detail = f"reported {abs(line.gross)}, asked {refund.amount} (minor units of {refund.currency})"
        return (
            "amount_mismatch",
            refund.id,
            refund_break("amount_mismatch", line, refund, detail, currency=refund.currency),
        )
    if line.kind == "refund" and refund.status == Status.SUCCEEDED:
        return MATCHED, refund.id, None  # the common case: the records agree, nothing moves
    return refund
