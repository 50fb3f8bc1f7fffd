"""Stripe's itemized payout reconciliation report, written in Stripe's own format for refunds a test stack
really executed, and imported with ``refundwatch reconcile import``: how tests make settlement data and
reconciliation breaks (tests/integration/test_reconcile.py, test_reconciliation_pages.py, the browser
tests)."""

from __future__ import annotations

import csv
import io
import itertools
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refundwatch.simulator.stripe.settlement import COLUMNS  # the simulator writes Stripe's reports
from stack import Stack

_serial = itertools.count(1)


def succeeded(stack: Stack, amount: int) -> dict[str, Any]:
    response = stack.refund(stack.payment(10_000), amount)
    assert response.status_code == 201, response.text
    refund = stack.wait_status(response.json()["id"], "succeeded")
    assert refund["status"] == "succeeded", refund
    return refund


def line(refund: dict[str, Any] | None = None, *, category: str = "refund", **values: Any) -> dict[str, Any]:
    """One row as Stripe writes it: major-unit decimals, negative gross for money out."""
    amount = refund["amount"] if refund else 0
    sign = -1 if category == "refund" else 1
    row = {
        "automatic_payout_id": "po_test",
        "reporting_category": category,
        "balance_transaction_id": f"txn_{next(_serial)}_{uuid.uuid4().hex[:8]}",
        "created_utc": "2026-12-06 10:00:00",
        "currency": "eur",
        "gross": f"{sign * amount / 100:.2f}",
        "fee": "0.00",
        "net": f"{sign * amount / 100:.2f}",
        "source_id": refund["gateway_refund_id"] if refund else "",
        "charge_id": "ch_test",
        "payment_intent_id": "pi_test",
        "refund_metadata[refundwatch_refund_id]": refund["id"] if refund else "",
    }
    row.update(values)
    return row


def report(stack: Stack, rows: list[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> Path:
    """Stripe's itemized report of ``rows``; ``columns`` in another order is the same report."""
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = stack.workdir / f"payout_reconciliation_{uuid.uuid4().hex[:8]}.csv"
    path.write_text(out.getvalue())
    return path


def imported(stack: Stack, path: Path, connection: str = "stripe-test", **env: str) -> str:
    result = stack.cli("reconcile", "import", "--connection", connection, str(path), extra_env=env)
    return result.stdout.strip()
