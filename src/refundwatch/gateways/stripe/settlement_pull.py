"""Stripe's settlement data by API: a paid automatic payout's balance transactions.

``GET /v1/balance_transactions?payout=po_…`` lists every balance transaction an automatic payout paid
out (and the payout's own), auto-paginated 100 at a time with ``starting_after``; the pages are joined
into one list document, which ``settlement.StripeBalanceTransactionsParser`` reads with the payout id.
``GET /v1/payouts?status=paid&arrival_date[gte]=`` finds the payouts to pull on the schedule
(RECONCILIATION.md §1.1; parameters and list envelope checked against stripe 16.1.0,
``_balance_transaction_list_params.py``, ``_payout_list_params.py``, ``_list_object.py``).

Calls go through the shared client and ``gateways.calls`` with the connection's key, base URL and
timeout, as the refund calls do. No database here beyond ``pulling.imported_names``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final
from urllib.parse import urlencode

from refundwatch.connections.services import ConnectionInfo
from refundwatch.gateways import calls
from refundwatch.gateways.base import GatewayError, as_json
from refundwatch.gateways.stripe import StripeGateway
from refundwatch.gateways.stripe import transformers as tx
from refundwatch.gateways.stripe.settlement import StripeBalanceTransactionsParser
from refundwatch.reconciliation.pulling import PulledReport, PullError, imported_names
from refundwatch.runtime import Runtime

PAGE_LIMIT: Final = 100  # Stripe's largest page
MAX_PAGES: Final = 2_000  # 200,000 transactions in one payout: past that, something is wrong
_GATEWAY = StripeGateway()  # for its scrub: keys never reach a message


def report_name(payout_id: str) -> str:
    """The settlement file a payout's pull is kept as (and how ``due`` knows it was imported)."""
    return f"stripe payout {payout_id}"


class StripeSettlementPull:
    processor = "stripe"

    async def fetch(self, rt: Runtime, conn: ConnectionInfo, ref: str) -> PulledReport:
        if not ref.startswith("po_") or not ref.isascii() or len(ref) > 255:
            raise PullError(f"not a Stripe payout id: {ref[:60]!r}")
        items = await self._all(rt, conn, "/v1/balance_transactions", {"payout": ref})
        document = {"object": "list", "data": items, "has_more": False, "url": "/v1/balance_transactions"}
        return PulledReport(
            name=report_name(ref),
            content=json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(),
            source="api",
            parser=StripeBalanceTransactionsParser(payout_id=ref),
        )

    async def due(self, rt: Runtime, conn: ConnectionInfo) -> list[str]:
        """Paid payouts that arrived within the lookback window and are not imported yet, oldest first."""
        since = int(time.time()) - rt.settings.reconcile_pull_lookback_days * 86_400
        payouts = await self._all(
            rt, conn, "/v1/payouts", {"status": "paid", "arrival_date[gte]": str(since)}
        )
        ids: list[str] = []
        for payout in reversed(payouts):  # Stripe lists newest first
            payout_id = payout.get("id")
            # Only an automatic payout can be tied to its transactions (RECONCILIATION.md §1.1).
            if isinstance(payout_id, str) and payout.get("automatic") is not False and payout_id not in ids:
                ids.append(payout_id)
        done = await imported_names(rt, conn.id, [report_name(i) for i in ids])
        return [i for i in ids if report_name(i) not in done]

    async def _all(
        self, rt: Runtime, conn: ConnectionInfo, path: str, query: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Every item of a Stripe list, page after page."""
        items: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            page_query = {**query, "limit": str(PAGE_LIMIT), **({"starting_after": after} if after else {})}
            page, has_more = await self._page(rt, conn, f"{path}?{urlencode(page_query)}")
            items.extend(page)
            if not has_more:
                return items
            after = page[-1]["id"]
        raise PullError(f"Stripe listed more than {MAX_PAGES * PAGE_LIMIT} objects at {path}")

    async def _page(self, rt: Runtime, conn: ConnectionInfo, path: str) -> tuple[list[dict[str, Any]], bool]:
        creds = conn.credentials
        api_key = creds.secrets.get("api_key")
        if api_key is None or not api_key.reveal():
            raise PullError("no Stripe api_key is configured")
        headers = {
            "Authorization": f"Bearer {api_key.reveal()}",
            "Stripe-Version": tx.STRIPE_API_VERSION,
            "Accept": "application/json",
        }
        try:
            response, _ = await calls.call(
                rt.require_http(),
                "Stripe",
                "GET",
                creds.base_url.rstrip("/") + path,
                path,
                timeout_seconds=creds.timeout_seconds,
                headers=headers,
                scrub=_GATEWAY.scrub,
            )
        except GatewayError as exc:  # transport: its first clause says what happened
            raise PullError(exc.message.split(";")[0]) from None
        if not response.is_success:
            error = tx.parse_error(as_json(response))
            label = "/".join(filter(None, (error.code, error.type))) or "http"
            detail = error.message or response.reason_phrase or "no message"
            raise PullError(_GATEWAY.scrub(f"Stripe answered {response.status_code} ({label}): {detail}"))
        try:
            return _list_page(json.loads(response.content))
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, tx.MalformedError) else "not JSON"
            status = response.status_code
            raise PullError(f"Stripe answered {status} with an unreadable list: {reason}") from None


def _list_page(data: object) -> tuple[list[dict[str, Any]], bool]:
    if not isinstance(data, dict) or data.get("object") != "list":
        raise tx.MalformedError("not a Stripe list")
    items, has_more = data.get("data"), data.get("has_more")
    if not isinstance(items, list) or not isinstance(has_more, bool):
        raise tx.MalformedError("no data array or has_more flag")
    if not all(isinstance(item, dict) and isinstance(item.get("id"), str) for item in items):
        raise tx.MalformedError("an item without an id")
    if has_more and not items:
        raise tx.MalformedError("has_more on an empty page")
    return items, has_more
