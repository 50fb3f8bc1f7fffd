"""Settlement data pulled from a processor's API, imported as a file would be, then matched.

Each processor that offers its settlement data by API has a puller in its own package, registered
here by processor (imported on demand, as ``parsing`` registers parsers). A pull is started two ways:
by the processor's own notice (a webhook event with ``settlement_ref``: Stripe's ``payout.paid``,
Adyen's ``REPORT_AVAILABLE``), as the worker job ``pull_settlement``; and on the worker's schedule
(``pull_due``), for whatever each enabled connection's puller says is due, so a lost webhook only
delays a pull.

A pull imports through ``importing.import_content``: the same answer twice adds nothing, and a
malformed one leaves nothing behind. A processor error or an answer that cannot be read is logged
and audited as a failed pull with a one-line reason; the next schedule tries again.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol
from uuid import UUID

from sqlalchemy import select

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.connections.services import ConnectionInfo
from refundwatch.db.models import SettlementFile
from refundwatch.gateways.base import GatewayError
from refundwatch.jobs import enqueue
from refundwatch.lib.exceptions import BadInput, Conflict
from refundwatch.reconciliation.importing import Imported, import_content
from refundwatch.reconciliation.matching import Summary, match_imported
from refundwatch.reconciliation.parsing import SettlementParser, SourceKind
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)

PULLER: Final = Actor("system", "settlement-pull")
PULL_JOB: Final = "pull_settlement"
_MAX_REASON = 300


@dataclasses.dataclass(frozen=True, slots=True)
class PulledReport:
    name: str  # shown as the settlement file's name, e.g. "stripe payout po_123"
    content: bytes  # what the processor answered, as its settlement parser reads it
    source: SourceKind  # "file" (a report) or "api" (an API answer)
    # How to read ``content`` when the registry's parser for (processor, source) cannot know all of it
    # (Stripe: the payout the transactions were listed for). None: the registry's.
    parser: SettlementParser | None = None


class PullError(Exception):
    """The processor's answer cannot be used. ``str()`` is one line, safe to show and to audit."""


class SettlementPull(Protocol):
    """One processor's settlement data by API. Stateless, like an adapter; raises GatewayError for
    what the processor answered and PullError for an answer it cannot use."""

    async def fetch(self, rt: Runtime, conn: ConnectionInfo, ref: str) -> PulledReport:
        """The settlement data ``ref`` names (Stripe: a payout id; Adyen: a report URL)."""
        ...

    async def due(self, rt: Runtime, conn: ConnectionInfo) -> list[str]:
        """The refs to pull on the schedule: what the processor has and refundwatch has not imported."""
        ...


# processor -> "module:class", imported on demand: a processor's puller lives in its own package.
_PULLERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "stripe": "refundwatch.gateways.stripe.settlement_pull:StripeSettlementPull",
        "adyen": "refundwatch.gateways.adyen.settlement_pull:AdyenSettlementPull",
    }
)


def puller_for(processor: str) -> SettlementPull | None:
    """The processor's puller; None when it has none (or its module is not there yet)."""
    target = _PULLERS.get(processor)
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # the module is there but something it imports is not: a bug
            raise
        return None
    puller: SettlementPull = getattr(module, class_name)()
    return puller


async def imported_names(rt: Runtime, connection_id: UUID, names: Collection[str]) -> set[str]:
    """Which of ``names`` (settlement file names) the connection has imported: for ``due``."""
    if not names:
        return set()
    async with rt.db.read_session() as session:
        found = await session.scalars(
            select(SettlementFile.name).where(
                SettlementFile.connection_id == connection_id,
                SettlementFile.status == "imported",
                SettlementFile.name.in_(list(names)),
            )
        )
        return set(found)


@dataclasses.dataclass(frozen=True, slots=True)
class Pulled:
    connection: str
    ref: str
    imported: Imported | None = None  # None: the pull failed
    matched: Summary | None = None
    reason: str | None = None  # why it failed

    def __str__(self) -> str:
        if self.imported is None:
            return f"{self.connection} {self.ref}: failed: {self.reason}"
        if self.imported.already:
            return f"{self.connection} {self.ref}: already imported"
        breaks = sum(self.matched.breaks.values()) if self.matched is not None else 0
        return f"{self.connection} {self.ref}: {self.imported.lines} lines, {breaks} breaks"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


async def _audit(rt: Runtime, conn: ConnectionInfo, action: str, details: dict[str, Any]) -> None:
    """Record one pull of ``conn`` in the audit log, in a transaction of its own."""
    async with rt.db.session() as session:
        record(session, PULLER, action, target_type="connection", target_id=conn.name, details=details)
        await session.commit()


async def _failed(rt: Runtime, conn: ConnectionInfo, ref: str, reason: str) -> Pulled:
    reason = _one_line(reason)
    log.warning("settlement pull failed: %s %s: %s", conn.name, ref, reason)
    await _audit(rt, conn, actions.RECONCILIATION_PULL_FAILED, {"ref": ref[:255], "reason": reason})
    return Pulled(conn.name, ref, reason=reason)


async def pull(rt: Runtime, connection_id: UUID, ref: str) -> Pulled:
    """Fetch ``ref`` from the connection's processor, import it, match what is new."""
    conn = await rt.connections.by_id(connection_id)
    if conn is None:
        return Pulled(str(connection_id), ref, reason="no such connection")
    puller = puller_for(conn.processor)
    if puller is None:
        return await _failed(rt, conn, ref, f"refundwatch cannot pull {conn.processor} settlement data")
    try:
        report = await puller.fetch(rt, conn, ref)
    except GatewayError as exc:
        return await _failed(rt, conn, ref, exc.message)
    except PullError as exc:
        return await _failed(rt, conn, ref, str(exc))
    try:
        imported = await import_content(
            rt,
            conn,
            report.name,
            report.content,
            report.source,
            PULLER,
            parser=report.parser,
            action=actions.RECONCILIATION_PULL,
            details={"ref": ref[:255]},
        )
    except BadInput as exc:
        return await _failed(rt, conn, ref, f"unreadable answer: {exc}")
    except Conflict as exc:  # the same content is being imported elsewhere: the schedule comes back
        return await _failed(rt, conn, ref, exc.message)
    if imported.already:  # audited all the same: each pull leaves its trace
        details = {"ref": ref[:255], "file": report.name, "already": True}
        await _audit(rt, conn, actions.RECONCILIATION_PULL, details)
        return Pulled(conn.name, ref, imported)
    return Pulled(conn.name, ref, imported, await match_imported(rt, imported, every_connection=True))


async def pull_due(rt: Runtime) -> list[str]:
    """The schedule: every enabled connection's due refs, each queued as its own pull job (one per
    connection and ref, so a pull its webhook already queued never runs twice at once); pulled here
    when there is no Redis. Returns one line per ref or failure."""
    done: list[str] = []
    for conn in await rt.connections.all():
        puller = puller_for(conn.processor) if conn.enabled else None
        if puller is None:
            continue
        try:
            refs = await puller.due(rt, conn)
        except GatewayError as exc:
            done.append(str(await _failed(rt, conn, "(due)", exc.message)))
            continue
        except PullError as exc:
            done.append(str(await _failed(rt, conn, "(due)", str(exc))))
            continue
        for ref in refs:
            if rt.redis is None:
                done.append(str(await pull(rt, conn.id, ref)))
            else:
                queued = await enqueue_pull(rt, conn.id, ref)
                done.append(f"{conn.name} {ref}: {'queued' if queued else 'already queued'}")
    return done


def job_id(connection_id: UUID, ref: str) -> str:
    """One queued pull per connection and ref, however often the processor announces it."""
    return f"settlement-pull:{connection_id}:{ref}"


async def enqueue_pull(rt: Runtime, connection_id: UUID, ref: str) -> bool:
    """Queue the pull of ``ref`` (after the caller's commit). False when it is already queued or
    running, or cannot be queued: a lost pull costs only time, the schedule finds it due again."""
    if rt.redis is None:
        return False
    try:
        return await enqueue(rt.redis, PULL_JOB, str(connection_id), ref, job_id=job_id(connection_id, ref))
    except Exception:
        log.warning("could not enqueue the settlement pull of %s", ref, exc_info=True)
        return False
