"""The staff payment page on a running refundwatch, on both databases: the payment, its ledger, its order's
and invoice's ledgers, its refunds with what reconciliation made of them (from a Stripe report in
Stripe's own format), its errors as pages, who may see it, and the links that lead to it."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from test_payments_api import _payment as registered
from test_staff_pages import THRESHOLD, signed_in

from processors import kit
from stack import Stack, db_rows
from stripe_reports import imported, line, report


def section(page: str, element_id: str) -> str:
    """The element with this id, up to the end of its first table, list or definition list."""
    start = page.index(f'id="{element_id}"')
    ends = [i for tag in ("</table>", "</ul>", "</dl>") if (i := page.find(tag, start)) != -1]
    return page[start : min(ends)]


def figures(part: str) -> dict[str, str]:
    return {name: html.unescape(text) for name, text in re.findall(r'data-figure="(\w+)">([^<]*)<', part)}


def row(part: str, currency: str) -> str:
    start = part.index(f'data-currency="{currency}"')
    return part[start : part.index("</tr>", start)]


def refund_row(page: str, refund_id: str) -> str:
    start = page.index(f'id="refund-{refund_id}"')
    return page[start : page.index("</tr>", start)]


@dataclass(frozen=True)
class World:
    reference: str  # a payment whose order and invoice it shares with ``sibling``
    sibling: str
    order: str
    invoice: str
    settled: str  # succeeded, matched by the report
    bounced: str  # succeeded, then reversed by the report's refund failure
    waiting: str  # in flight: waits for an approver
    sibling_refund: str


def _created(response: httpx2.Response) -> str:
    assert response.status_code == 201, response.text
    refund_id: str = response.json()["id"]
    return refund_id


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    tag = uuid.uuid4().hex[:8]
    order, invoice = f"ord-{tag}", f"inv-{tag}"
    reference = stack.payment(100_000, order_id=order, invoice_id=invoice)
    sibling = stack.payment(50_000, order_id=order, invoice_id=invoice)
    stack.payment(5_000, currency="JPY", invoice_id=invoice)  # the invoice, in a second currency
    settled = _created(stack.refund(reference, 1_000))
    bounced = _created(stack.refund(reference, 2_000))
    sibling_refund = _created(stack.refund(sibling, 5_000))
    done: list[dict[str, Any]] = [
        stack.wait_status(i, "succeeded") for i in (settled, bounced, sibling_refund)
    ]
    waiting = stack.refund(reference, THRESHOLD + 10_000).json()  # over the threshold: waits for a person
    assert waiting["status"] == "pending_approval", waiting
    rows = [line(done[0]), line(done[1]), line(done[1], category="refund_failure")]
    imported(stack, report(stack, rows))
    assert stack.get(bounced)["status"] == "reversed"
    return World(reference, sibling, order, invoice, settled, bounced, waiting["id"], sibling_refund)


def test_the_page_shows_the_payment_its_ledgers_and_its_refunds(stack: Stack, world: World) -> None:
    with signed_in(stack, "alice-viewer") as alice:
        response = alice.get(f"/payments/{world.reference}")
    assert response.status_code == 200, response.text[:500]
    page = response.text
    facts = html.unescape(section(page, "payment-facts"))
    assert world.reference in facts
    assert "stripe-test" in facts
    assert "1,000.00 EUR" in facts  # in major units, with the currency's exponent
    assert "2026-11-01 10:00:00 UTC" in facts  # captured_at
    assert world.order in facts
    assert world.invoice in facts
    assert figures(section(page, "payment-ledger")) == {
        "captured": "1,000.00 EUR",
        "refunded": "10.00 EUR",  # the reversed refund no longer counts
        "in_flight": "600.00 EUR",
        "reversed": "20.00 EUR",
        "refundable": "390.00 EUR",
    }
    both = {
        "payments": "2",
        "captured": "1,500.00 EUR",
        "refunded": "60.00 EUR",
        "in_flight": "600.00 EUR",
        "reversed": "20.00 EUR",
        "refundable": "840.00 EUR",
    }
    assert figures(row(section(page, "order-ledger"), "EUR")) == both
    invoice = section(page, "invoice-ledger")
    assert figures(row(invoice, "EUR")) == both
    assert figures(row(invoice, "JPY"))["captured"] == "5,000 JPY"  # no decimals
    assert 'data-currency="JPY"' not in section(page, "order-ledger")

    refunds = section(page, "payment-refunds")
    ids = re.findall(r'id="refund-([0-9a-f-]{36})"', refunds)
    assert ids == [world.waiting, world.bounced, world.settled]  # newest first; the sibling's are not here
    settled = refund_row(page, world.settled)
    assert f'href="/refunds/{world.settled}"' in settled
    assert 'class="status status-succeeded"' in settled
    assert "10.00 EUR" in settled
    assert re.search(
        r'href="/reconciliation/lines/\d+" class="line-link" data-match="matched">Matched<', settled
    )
    bounced = refund_row(page, world.bounced)
    assert 'class="status status-reversed"' in bounced
    (break_id,) = re.findall(r'href="/reconciliation/breaks/([0-9a-f-]{36})" class="break-link"', bounced)
    assert 'data-kind="reversed_after_success"' in bounced
    kinds = db_rows(
        stack, "SELECT kind FROM reconciliation_breaks WHERE subject = ?", f"refund:{world.bounced}"
    )
    assert kinds == [("reversed_after_success",)]
    waiting = refund_row(page, world.waiting)
    assert 'class="status status-pending_approval"' in waiting
    assert "line-link" not in waiting
    assert "break-link" not in waiting
    assert 'id="new-refund-link"' not in page  # a viewer starts no refunds
    with signed_in(stack, "alice-viewer") as alice:
        assert alice.get(f"/reconciliation/breaks/{break_id}").status_code == 200
    with signed_in(stack, "ivan-initiator") as ivan:
        mine = ivan.get(f"/payments/{world.reference}").text
    assert f'href="/refunds/new?q={world.reference}" id="new-refund-link"' in mine


def test_errors_are_pages_that_say_what_to_do(stack: Stack) -> None:
    stack.connect("adyen")
    adyen = kit("adyen").connection
    shared = f"shared-{uuid.uuid4().hex[:12]}"
    registered(stack, "stripe-test", shared, 5_000)
    registered(stack, adyen, shared, 7_000)
    with signed_in(stack, "alice-viewer") as alice:
        missing = alice.get(f"/payments/pi_missing_{uuid.uuid4().hex}", headers={"accept": "text/html"})
        assert missing.status_code == 404
        assert 'data-code="payment_not_found"' in missing.text
        ambiguous = alice.get(f"/payments/{shared}")
        assert ambiguous.status_code == 422
        assert 'data-code="ambiguous_payment"' in ambiguous.text
        choices = re.findall(r'<a href="(/payments/[^"]+)">', section(ambiguous.text, "connection-choices"))
        assert sorted(html.unescape(c) for c in choices) == sorted(
            f"/payments/{shared}?connection={name}" for name in ("stripe-test", adyen)
        )
        chosen = alice.get(html.unescape(choices[0]))
        assert chosen.status_code == 200
        assert 'id="payment-ledger"' in chosen.text
        assert (
            figures(section(alice.get(f"/payments/{shared}?connection={adyen}").text, "payment-ledger"))[
                "captured"
            ]
            == "70.00 EUR"
        )
        unknown = alice.get(f"/payments/{shared}", params={"connection": "nope"})
        assert unknown.status_code == 422
        assert 'data-code="unknown_connection"' in unknown.text
        only_stripe = stack.payment(1_000)
        elsewhere = alice.get(f"/payments/{only_stripe}", params={"connection": adyen})
        assert elsewhere.status_code == 404
        assert 'data-code="payment_on_other_connection"' in elsewhere.text
        assert f'href="/payments/{only_stripe}?connection=stripe-test"' in elsewhere.text
        boosted = alice.get(f"/payments/{shared}", headers={"hx-request": "true"})
        assert boosted.status_code == 200  # htmx swaps the refusal in, as the other pages' refusals
        assert 'data-code="ambiguous_payment"' in boosted.text
        for refused in (missing, ambiguous, unknown, elsewhere):
            assert "Traceback" not in refused.text
            assert '<header class="top">' in refused.text  # the house layout, with its menu


@pytest.mark.parametrize(
    ("user", "expected"), [("ada-admin", 200), ("amy-approver", 200), ("oscar-outsider", 403)]
)
def test_every_staff_role_that_reads_refunds_reads_payments(
    stack: Stack, world: World, user: str, expected: int
) -> None:
    with signed_in(stack, user) as client:
        assert client.get(f"/payments/{world.reference}").status_code == expected


def test_anonymous_is_sent_to_sign_in(stack: Stack, world: World) -> None:
    with httpx2.Client(base_url=stack.web_url, timeout=30) as anonymous:
        response = anonymous.get(f"/payments/{world.reference}")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/auth/login")


def test_the_refund_page_the_list_and_the_break_link_to_it(stack: Stack, world: World) -> None:
    target = f'href="/payments/{world.reference}?connection=stripe-test"'
    with signed_in(stack, "alice-viewer") as alice:
        refund_page = alice.get(f"/refunds/{world.settled}").text
        assert target in refund_page
        listed = alice.get("/refunds", params={"q": world.reference}).text
        assert target in listed
        page = alice.get(f"/payments/{world.reference}").text
        (break_id,) = re.findall(r'href="/reconciliation/breaks/([0-9a-f-]{36})" class="break-link"', page)
        assert target in alice.get(f"/reconciliation/breaks/{break_id}").text
        order = re.search(r'href="(/refunds\?q=[^"]+)">' + re.escape(world.order), page)
        assert order
        assert world.sibling in alice.get(html.unescape(order.group(1))).text  # the order's refunds
