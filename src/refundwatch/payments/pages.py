"""The staff payment page (issue 14 §1): a payment, its ledger, its order's and invoice's ledgers per
currency, and its refunds with what reconciliation made of each.

The same view and the same errors as ``GET /api/v1/payments/{reference}`` (payments.ledger), as a page:
an unknown payment is a 404, an ambiguous reference or an unknown connection a 422, each offering the
connections that have the reference. Under htmx (a boosted link) a refusal comes back as 200 so it is
swapped in, as the other pages' refusals are.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.response import Template

from refundwatch.auth.roles import Action
from refundwatch.auth.sessions import Session
from refundwatch.lib.exceptions import RefundwatchError
from refundwatch.payments.ledger import MAX_REFUNDS, other_connections, payment_view
from refundwatch.payments.reconciled import reconciliation_of
from refundwatch.web.state import runtime_of


def _refunds_of(q: str) -> str:
    """The refunds list, filtered on a payment, order or invoice reference (it matches all three)."""
    return "/refunds?" + urlencode({"q": q})


@get("/payments/{payment_reference:str}", opt={"action": Action.VIEW})
async def payment_page(
    request: Request[Any, Any, Any], session: Session, payment_reference: str, connection: str | None = None
) -> Template:
    rt = runtime_of(request)
    context: dict[str, Any] = {"user": session.user, "reference": payment_reference}
    status = 200
    try:
        view = await payment_view(rt, payment_reference, (connection or "").strip() or None)
    except RefundwatchError as exc:
        status = 200 if request.headers.get("hx-request") else exc.status_code
        context.update(
            error_status=exc.status_code,
            error=exc.message,
            error_code=exc.code,
            choices=await other_connections(rt, payment_reference),
        )
    else:
        payment = view.payment
        context.update(
            view=view,
            recon=await reconciliation_of(rt, view),
            truncated=len(view.refunds) >= MAX_REFUNDS,
            refunds_url=_refunds_of(payment.payment_reference),
            order_url=_refunds_of(payment.order_id) if payment.order_id else None,
            invoice_url=_refunds_of(payment.invoice_id) if payment.invoice_id else None,
            new_refund_url="/refunds/new?" + urlencode({"q": payment.payment_reference})
            if session.user.can(Action.CREATE) and view.ledger.refundable > 0
            else None,
        )
    return Template(
        template_name="pages/payment.html",
        context=context,
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


ROUTES = [payment_page]
