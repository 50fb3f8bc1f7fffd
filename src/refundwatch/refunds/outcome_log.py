"""One structured log line per refund outcome, written by the worker.

Outcomes the processor decides (succeeded, failed, reversed) are logged where the worker folds them into
the dashboard rollups (``dashboard.rollups.fold``): every such transition passes there exactly once,
whichever process made it (worker, webhook fast path, sync). ``manual_review``, which the worker itself
decides, is logged where it decides it. Only ids, codes and numbers: never metadata or secrets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from refundwatch.runtime import Runtime

log = logging.getLogger("refundwatch.outcomes")
WORRYING = frozenset({"failed", "reversed", "manual_review"})


@dataclass(frozen=True, slots=True)
class FinalOutcome:
    refund_id: UUID
    connection_id: UUID
    status: str
    amount: int
    currency: str
    attempts: int
    error_code: str | None


def log_outcome(outcome: FinalOutcome, connection: str) -> None:
    fields: dict[str, Any] = {
        "event": "refund_outcome",
        "refund_id": str(outcome.refund_id),
        "connection": connection,
        "status": outcome.status,
        "amount": outcome.amount,
        "currency": outcome.currency,
        "attempts": outcome.attempts,
        "error_code": outcome.error_code,
    }
    text = " ".join(f"{k}={'-' if v is None else v}" for k, v in fields.items() if k != "event")
    level = logging.WARNING if outcome.status in WORRYING else logging.INFO
    log.log(level, "refund %s: %s", outcome.status, text, extra={"fields": fields})


async def log_outcomes(rt: Runtime, outcomes: list[FinalOutcome]) -> None:
    for outcome in outcomes:
        info = await rt.connections.by_id(outcome.connection_id)
        log_outcome(outcome, info.name if info else str(outcome.connection_id))


def outcome_of(refund: Any) -> FinalOutcome:
    """From a refund row or model (anything with these attributes)."""
    return FinalOutcome(
        refund_id=refund.id,
        connection_id=refund.connection_id,
        status=str(refund.status),
        amount=refund.amount,
        currency=refund.currency,
        attempts=refund.attempts,
        error_code=refund.error_code,
    )


async def log_refund(rt: Runtime, refund: Any) -> None:
    """Log a refund's outcome from its (committed) row."""
    await log_outcomes(rt, [outcome_of(refund)])
