"""Finance staff screens through the real stack: amounts in major units (typed and read), approvals
that carry what a decision needs, list totals and sorting, and actions that follow the status."""

from __future__ import annotations

import contextlib
import html
import re

import httpx2
from test_staff_pages import THRESHOLD, create_via_form, csrf, post_form, refund_id_from

from stack import Stack, wait_until


def signed_in(stack: Stack, user: str) -> contextlib.closing[httpx2.Client]:
    return contextlib.closing(stack.sign_in(user))


def typed(client: httpx2.Client, reference: str, amount: str, currency: str) -> httpx2.Response:
    """The new-refund form with the amount exactly as a person types it."""
    page = client.get("/refunds/new", params={"q": reference})
    key = re.search(r'name="form_key" value="([^"]+)"', page.text)
    assert key, page.text[:500]
    return client.post(
        "/refunds/new",
        data={
            "payment_reference": reference,
            "amount": amount,
            "currency": currency,
            "reason": "return",
            "form_key": key.group(1),
            "_csrf_token": csrf(page.text),
        },
    )


def test_the_form_takes_major_units_and_converts_them_exactly(stack: Stack) -> None:
    eur = stack.payment(200_000)
    yen = stack.payment(5_000, "JPY")
    dinar = stack.payment(9_000, "KWD")
    with signed_in(stack, "ivan-initiator") as ivan:
        page = ivan.get("/refunds/new", params={"q": eur}).text
        assert "2,000.00 EUR" in page  # captured, in major units with thousands
        assert "minor units" not in page
        assert 'pattern="' not in page  # no browser pattern error: the server says what is wrong
        assert "up to 1,000.00 EUR" in page  # the initiator's limit (100000 minor units)
        assert "500.00 EUR or more wait for a second person" in page  # the approval threshold
        assert "5,000 JPY" in ivan.get("/refunds/new", params={"q": yen}).text
        assert "9.000 KWD" in ivan.get("/refunds/new", params={"q": dinar}).text

        whole = refund_id_from(typed(ivan, eur, "600", "EUR"))
        cents = refund_id_from(typed(ivan, eur, "10.05", "EUR"))
        yen_id = refund_id_from(typed(ivan, yen, "1,200", "JPY"))
        dinar_id = refund_id_from(typed(ivan, dinar, "1.250", "KWD"))
        for text, currency in (("600.005", "EUR"), ("12.5", "JPY"), ("1.2505", "KWD"), ("-5", "EUR")):
            refused = typed(ivan, {"EUR": eur, "JPY": yen, "KWD": dinar}[currency], text, currency)
            assert refused.status_code == 422, (text, currency)
            assert 'data-code="invalid_amount"' in refused.text
            message = html.unescape(re.search(r'id="form-error"[^>]*>([^<]+)<', refused.text).group(1))  # type: ignore[union-attr]
            assert ("decimal" in message) or ("like" in message), message
        assert "JPY has no decimals" in html.unescape(typed(ivan, yen, "12.5", "JPY").text)
        detail = ivan.get(f"/refunds/{dinar_id}").text
        assert "1.250 KWD" in detail
    assert stack.get(whole)["amount"] == 60_000
    assert stack.get(cents)["amount"] == 1_005
    assert stack.get(yen_id)["amount"] == 1_200
    assert stack.get(dinar_id)["amount"] == 1_250  # the API stays in minor units


def test_approvals_show_what_the_decision_needs(stack: Stack) -> None:
    reference = stack.payment(THRESHOLD * 4, order_id="ord-7731", invoice_id="inv-7731")
    earlier = stack.refund(reference, 1_000).json()
    wait_until(lambda: stack.get(earlier["id"])["status"] == "succeeded", timeout=30, what="earlier refund")
    with signed_in(stack, "amy-approver") as amy:
        waiting_id = refund_id_from(create_via_form(amy, reference, 60_000, note="parcel came back opened"))
    yen = stack.payment(2_000_000, "JPY")
    yen_waiting = stack.refund(yen, 1_200_000, currency="JPY").json()
    assert yen_waiting["status"] == "pending_approval"
    with signed_in(stack, "bob-approver") as bob:
        page = html.unescape(bob.get("/approvals").text)
        card = page[page.index(f'data-refund="{waiting_id}"') :]
        card = card[: card.index("</article>")]
        assert "600.00 EUR" in card
        assert "Goods returned" in card
        assert 'title="return"' in card
        assert "parcel came back opened" in card
        assert "user:" not in card
        requester = re.search(r'class="requester">([^<,]+)', card)
        assert requester
        assert requester.group(1).strip() == "Amy Approver"  # the name from her ID token
        yen_card = page[page.index(f'data-refund="{yen_waiting["id"]}"') :]
        assert re.search(r'class="requester">tests <small>\(api key\)</small>', yen_card)  # the key's name
        assert "2,000.00 EUR" in card  # captured
        assert "10.00 EUR" in card  # already refunded (the earlier refund)
        assert "ord-7731" in card
        assert "inv-7731" in card
        assert f"/refunds/{earlier['id']}" in card  # earlier refunds of the same payment
        assert 'class="waited"' in card
        assert 'hx-confirm="Approve the refund of 600.00 EUR' in card
        assert re.search(r'name="reason" required', card)
        totals = page[page.index('id="waiting-totals"') :][:2000]
        assert re.search(r'data-currency="JPY">1,200,000 JPY<', totals)
        assert re.search(r'data-currency="EUR">[\d,.]+ EUR<', totals)
        only_yen = bob.get("/approvals", params={"currency": "JPY"}).text
        assert yen_waiting["id"] in only_yen
        assert waiting_id not in only_yen
        newest = bob.get("/approvals", params={"sort": "newest"}).text
        assert newest.index(yen_waiting["id"]) < newest.index(waiting_id)
        oldest = bob.get("/approvals", params={"sort": "oldest"}).text
        assert oldest.index(waiting_id) < oldest.index(yen_waiting["id"])
        # Reject needs a reason; approve goes through.
        assert post_form(bob, f"/refunds/{yen_waiting['id']}/reject", {}).status_code == 422
        assert post_form(bob, f"/refunds/{waiting_id}/approve", {}, page="/approvals").status_code == 303
    wait_until(
        lambda: stack.get(waiting_id)["status"] == "succeeded", timeout=30, what="approved refund runs"
    )


def test_actions_follow_the_status_and_a_spent_payment_offers_no_new_refund(stack: Stack) -> None:
    reference = stack.payment(5_000)
    with signed_in(stack, "ivan-initiator") as ivan:
        part = refund_id_from(create_via_form(ivan, reference, 2_000))
        wait_until(lambda: stack.get(part)["status"] == "succeeded", timeout=30, what="first refund")
        actions = ivan.get(f"/refunds/{part}/actions")
        assert actions.status_code == 200
        assert 'id="refund-actions"' in actions.text
        assert "/cancel" not in actions.text  # nothing to cancel once it succeeded
        assert "New refund of this payment" in actions.text
        page = ivan.get(f"/refunds/{part}").text
        assert 'hx-get="/refunds/' in page
        assert 'hx-trigger="sse:timeline, rw-poll"' in page
        rest = refund_id_from(create_via_form(ivan, reference, 3_000))
        wait_until(lambda: stack.get(rest)["status"] == "succeeded", timeout=30, what="second refund")
        done = ivan.get(f"/refunds/{rest}/actions").text
        assert "New refund of this payment" not in done
        assert "nothing left to refund" in done
        form = ivan.get("/refunds/new", params={"q": reference}).text
        assert 'id="new-refund"' not in form
        assert "nothing is left to refund" in form
    with signed_in(stack, "alice-viewer") as alice:
        queued = stack.refund(stack.payment(1_000), 500).json()
        assert "<form" not in alice.get(f"/refunds/{queued['id']}/actions").text  # a viewer acts on nothing


def test_list_totals_per_currency_and_sorting_keep_keyset_paging(stack: Stack) -> None:
    reference = stack.payment(1_000_000)
    amounts = [100 * (i % 7 + 1) for i in range(53)]
    created = [stack.refund(reference, a).json()["id"] for a in amounts]
    with signed_in(stack, "alice-viewer") as alice:
        page = alice.get("/refunds", params={"q": reference}).text
        totals = page[page.index('id="list-totals"') :][:600]
        assert "<strong>53</strong> refunds" in totals
        assert f"{sum(amounts) / 100:,.2f} EUR" in totals
        assert 'title="' in page
        assert "…" in page
        seen: list[str] = []
        url: str | None = f"/refunds?q={reference}&sort=amount_desc"
        while url:
            text = alice.get(url).text
            seen += re.findall(r'href="/refunds/([0-9a-f-]{36})"', text)
            found = re.search(r'href="([^"]+)">Next page<', text)
            url = html.unescape(found.group(1)) if found else None
        assert sorted(seen) == sorted(created)  # every refund once, none twice
        by_id = dict(zip(created, amounts, strict=True))
        assert [by_id[i] for i in seen] == sorted(amounts, reverse=True)
        oldest = alice.get("/refunds", params={"q": reference, "sort": "oldest"}).text
        assert re.findall(r'href="/refunds/([0-9a-f-]{36})"', oldest)[:3] == created[:3]
        assert alice.get("/refunds", params={"sort": "sideways"}).status_code == 422


def test_people_are_shown_by_name_with_their_machine_id_on_hover(stack: Stack) -> None:
    """The header, a refund's audit entries and /audit name people (the ID token's name, the key's name);
    the actor id stays on hover, in the filter links and in the exports."""
    with signed_in(stack, "ivan-initiator") as ivan:
        page = ivan.get("/refunds/new").text
        header = page[page.index("<header") : page.index("</header>")]
        assert '<span class="who-name" title="ivan-initiator@example.test">Ivan Initiator</span>' in header
        by_ivan = refund_id_from(create_via_form(ivan, stack.payment(9_000), 1_000))
        trail = ivan.get(f"/refunds/{by_ivan}").text
        trail = html.unescape(trail[trail.index("audit-trail") :])
        row = re.search(
            r'<td title="user: (ivan-initiator@example\.test \(u-[0-9a-f]+\))">Ivan Initiator<', trail
        )
        assert row, trail[:2000]
        ivan_actor = row.group(1)
    by_key = stack.refund(stack.payment(9_000), 1_000).json()["id"]
    with signed_in(stack, "ada-admin") as ada:
        trail = html.unescape(ada.get(f"/refunds/{by_key}").text)
        assert re.search(
            r'<td title="api_key: tests \([0-9a-f-]{36}\)">tests <small>\(api key\)</small>', trail
        )
        audit = html.unescape(ada.get("/audit", params={"target": by_ivan}).text)
        link = re.search(r'<a class="cut" href="([^"]+)" title="user: ([^"]+)">Ivan Initiator</a>', audit)
        assert link, audit[-4000:]
        assert link.group(2) == ivan_actor
        filtered = ada.get(link.group(1))  # the row's link filters by the machine id, not the name
        assert filtered.status_code == 200
        assert "Ivan Initiator" in filtered.text
        exported = ada.get("/audit/export.csv", params={"actor": ivan_actor}).text
        assert ivan_actor in exported
        assert ",Ivan Initiator," not in exported


def test_the_role_limit_reads_in_major_units_before_and_after_a_payment_is_chosen(stack: Stack) -> None:
    """REFUNDWATCH_ROLE_LIMITS is one figure of minor units for every currency: before a payment is
    chosen, the form shows what it is in one currency of each number of decimals; then in the payment's."""
    with signed_in(stack, "ivan-initiator") as ivan:
        blank = html.unescape(ivan.get("/refunds/new").text)
        limit = re.search(r'id="role-limit">([^<]+)<', blank)
        assert limit, blank[-3000:]
        assert limit.group(1).startswith(
            "Your role may start refunds of up to 1,000.00 EUR, 100,000 JPY or 100.000 KWD"
        )
        assert "minor units" not in blank
        yen = stack.payment(500_000, "JPY")
        chosen = html.unescape(ivan.get("/refunds/new", params={"q": yen}).text)
        assert re.search(r'id="role-limit">Your role may start refunds of up to 100,000 JPY\.<', chosen)
        over = typed(ivan, yen, "100,001", "JPY")
        assert over.status_code == 422
        assert "at most 100,000 JPY; ask an approver" in html.unescape(over.text)
    with signed_in(stack, "ada-admin") as ada:  # an admin has no limit: nothing to say
        assert 'id="role-limit"' not in ada.get("/refunds/new").text


def test_approvals_beyond_the_first_page_are_found_by_filter_sort_and_totals(stack: Stack) -> None:
    """More refunds waiting than the page shows (200): the page took the oldest 200 and filtered and
    sorted only those, so a later USD refund was in no view ("Nothing is waiting" for USD, absent from
    "newest first") and the totals counted 200. The filters, the sort and the totals are the
    database's, and the page says that it shows only the first 200."""
    many = 201
    reference = stack.payment(THRESHOLD * many)
    eur = [stack.refund(reference, THRESHOLD).json() for _ in range(many)]
    assert {r["status"] for r in eur} == {"pending_approval"}
    dollars = stack.payment(THRESHOLD, "USD")
    usd = stack.refund(dollars, THRESHOLD, currency="USD").json()
    assert usd["status"] == "pending_approval"
    try:
        with signed_in(stack, "bob-approver") as bob:
            only_usd = bob.get("/approvals", params={"currency": "USD"})
            assert only_usd.status_code == 200
            assert f'data-refund="{usd["id"]}"' in only_usd.text
            assert '<option value="USD"' in bob.get("/approvals").text
            newest = bob.get("/approvals", params={"sort": "newest"}).text
            assert f'data-refund="{usd["id"]}"' in newest
            page = bob.get("/approvals").text
            assert page.count('class="waiting"') == 200
            assert 'id="waiting-truncated"' in page
            totals = page[page.index('id="waiting-totals"') :][:2000]
            counts = {
                cur: int(n)
                for cur, n in re.findall(
                    r'data-currency="(\w+)">[^<]+</strong> <small>in (\d+) refund', totals
                )
            }
            assert counts["USD"] == 1
            assert counts["EUR"] >= many
    finally:  # the module's other tests see an approvals queue of their own size
        with stack.api() as client:
            for refund in [*eur, usd]:
                client.post(f"/api/v1/refunds/{refund['id']}/cancel")
