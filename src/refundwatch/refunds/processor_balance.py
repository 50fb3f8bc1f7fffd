"""The processor's own refundable balance, checked before a key's first send.

refundwatch keeps its own ledger of what is refundable (intake refuses anything above it), but the
processor's can be lower: a refund made in the processor's dashboard, a chargeback, a partial void.
Where the processor reports it (``Capabilities.refundable_queryable``: Checkout.com's
``balances.available_to_refund``), a refund above it is refused before anything is sent
(``amount_exceeds_refundable``: failed, its amount released) instead of being refused there.

Only before a key's first send: once a key may have reached the processor, the balance may already
count this very refund, so such an attempt is looked up instead (refunds.lookup). A balance that cannot
be read stops nothing: the processor enforces its own balance when the refund arrives.
"""

from __future__ import annotations

import logging
from typing import Any

from refundwatch.connections.services import ConnectionInfo
from refundwatch.gateways.base import ErrorCode, GatewayError, RefundRequest
from refundwatch.gateways.registry import get_gateway
from refundwatch.lib.money import format_money
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)


def _balance_query(conn: ConnectionInfo) -> Any | None:
    """The gateway's balance read, where it declares one (``Capabilities.refundable_queryable``)."""
    gateway = get_gateway(conn.processor)
    return getattr(gateway, "refundable", None) if gateway.capabilities.refundable_queryable else None


def reads_balance(conn: ConnectionInfo) -> bool:
    """Whether a first send through ``conn`` reads the processor's balance first (one more call)."""
    return _balance_query(conn) is not None


async def refusal(rt: Runtime, conn: ConnectionInfo, request: RefundRequest) -> GatewayError | None:
    """Why the processor's reported balance refuses ``request`` (never sent), or None to send it."""
    query = _balance_query(conn)
    if query is None:
        return None
    try:
        reported = await query(rt.require_http(), conn.credentials, request.payment_reference)
    except GatewayError as err:
        log.info("refundable balance of %s not read (%s): sending", request.payment_reference, err.code)
        return None
    if reported is None:
        return None
    available, currency = reported
    if currency.upper() != request.currency.upper():
        return GatewayError(
            ErrorCode.CURRENCY_MISMATCH,
            f"not sent: {conn.processor} holds payment {request.payment_reference} in {currency.upper()}, "
            f"the refund is in {request.currency}",
            processor_code="balance_check",
        )
    if available < request.amount:
        return GatewayError(
            ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE,
            f"not sent: {conn.processor} reports {format_money(available, currency)} still refundable on "
            f"payment {request.payment_reference}, less than this refund's "
            f"{format_money(request.amount, request.currency)}",
            processor_code="balance_check",
        )
    return None
