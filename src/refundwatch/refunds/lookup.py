"""Looking a refund up at the processor instead of re-sending it blind.

After an unknown outcome (timeout, reset, 5xx, unreadable answer, a crashed or killed job) the
processor may or may not have executed the refund. A re-send with the same idempotency key is safe
only while the processor still remembers the key (its retention, declared by each processor package);
past it, a re-send would pay twice. So before any re-send the refund is looked up: by its processor id
when known, otherwise by the attempt's key and refundwatch's id (``Gateway.find_refund``). Only the
processor's confirmation that no such refund exists lets the same key go out again.

Where the look-up itself fails, a key the processor still remembers may go out again (a re-send replays
the first answer) — except for processors whose idempotency keeps only successful answers
(``Capabilities.idempotency_covers_errors`` False, Checkout.com): there the first send may have failed
with a 5xx after executing, and a re-send would execute again, so nothing goes out until the processor
answers the look-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from refundwatch.connections.services import ConnectionInfo
from refundwatch.gateways.base import ErrorCode, GatewayError, RefundResult, read_refund
from refundwatch.gateways.registry import get_gateway
from refundwatch.refunds import outcomes
from refundwatch.refunds.states import Source
from refundwatch.runtime import Runtime

if TYPE_CHECKING:
    from refundwatch.refunds.execution import Claim
    from refundwatch.refunds.outcomes import RetryLater

# Keys are trusted only well inside the processor's retention (clock skew, "at least 24 hours").
RETENTION_MARGIN = 0.9


def retention_seconds(processor: str) -> float:
    return float(get_gateway(processor).idempotency_retention_seconds)


def key_remembered(processor: str, key_sent_at: dt.datetime | None, now: dt.datetime | None = None) -> bool:
    """Whether the processor still remembers a key first sent at ``key_sent_at``."""
    if key_sent_at is None:
        return False
    now = now or dt.datetime.now(dt.UTC)
    return (now - key_sent_at).total_seconds() < retention_seconds(processor) * RETENTION_MARGIN


async def ask(rt: Runtime, conn: ConnectionInfo, claim: Claim) -> RefundResult | None:
    """What the processor knows of this attempt; ``None`` when it confirms there is no such refund.
    Raises GatewayError when it cannot tell."""
    gateway = get_gateway(conn.processor)
    if not gateway.capabilities.reads_refunds:
        raise GatewayError(ErrorCode.INVALID_REQUEST, f"{conn.processor} has no endpoint to read a refund")
    if claim.gateway_refund_id:
        return await read_refund(
            gateway,
            rt.require_http(),
            conn.credentials,
            claim.gateway_refund_id,
            payment_reference=claim.request.payment_reference,
        )
    return await gateway.find_refund(rt.require_http(), conn.credentials, claim.request)


@dataclass(frozen=True, slots=True)
class Resend:
    """The refund goes out (again) under its key; ``why`` says so on its timeline."""

    why: str


NOT_FOUND = Resend("the processor has no refund under this key")


async def before_resend(
    rt: Runtime,
    conn: ConnectionInfo,
    refund_id: UUID,
    claim: Claim,
    answered: Callable[[], None] = lambda: None,
) -> str | RetryLater | Resend:
    """Settle the refund from the processor's answer, or wait; or ``Resend`` it under its key (nothing
    exists there, or the processor cannot say and a re-send replays).
    ``answered`` hears that the processor answered a look-up: it is up, which closes a circuit that
    failed sends had been counting towards (a failed look-up is not counted: the send after it is)."""
    try:
        found = await ask(rt, conn, claim)
        answered()
    except GatewayError as err:
        capabilities = get_gateway(conn.processor).capabilities
        if (
            (not claim.gateway_refund_id or not capabilities.reads_refunds)
            and capabilities.idempotency_covers_errors
            and key_remembered(conn.processor, claim.key_sent_at)
        ):
            # The processor still knows the key: a re-send replays, it cannot pay twice. Not "no refund
            # exists": nobody could say (a timeout, or a processor with no read endpoint).
            asked = "could not be asked" if capabilities.reads_refunds else "cannot be asked"
            return Resend(
                f"the processor {asked} where the refund stands ({err.code.value}); it still remembers "
                "this key, so a re-send replays any earlier one"
            )
        # Never a refusal of the refund: the refund stays submitting and is asked again later.
        unknown = GatewayError(
            ErrorCode.OUTCOME_UNKNOWN,
            f"could not ask the processor where the refund stands ({err.code.value}: {err.message}); "
            "nothing re-sent",
            processor_code=err.processor_code,
            retry_after=err.retry_after,
            exchange=err.exchange,
        )
        return await outcomes.failed_attempt(rt, refund_id, claim.attempt, unknown)
    if found is None:
        return NOT_FOUND
    return await outcomes.record_result(
        rt,
        refund_id,
        found,
        source=Source.WORKER,
        key=claim.request.idempotency_key,
        via=" (looked up before any re-send)",
    )


def in_flight_unknown(processor: str, err: GatewayError) -> GatewayError:
    """A send refused because the same key is still in flight (``idempotency_conflict``): for processors
    whose idempotency keeps only successful answers, that earlier send may still fail after executing,
    and a later re-send would then execute again. Its outcome is unknown: the refund is looked up before
    any re-send. For every other processor, and every other error, ``err`` as it is."""
    if err.code is not ErrorCode.IDEMPOTENCY_CONFLICT:
        return err
    if get_gateway(processor).capabilities.idempotency_covers_errors:
        return err
    return GatewayError(
        ErrorCode.OUTCOME_UNKNOWN,
        f"{err.message} — an earlier send under this key is still in flight and its outcome is unknown",
        processor_code=err.processor_code,
        status_code=err.status_code,
        retry_after=err.retry_after,
        exchange=err.exchange,
    )
