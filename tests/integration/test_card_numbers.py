"""Payment card numbers are refused wherever free text enters (issue 3 §5), through the real web
server, CLI and databases: a 422 ``card_number_refused`` naming the field, and no trace of the number
in the answer, the logs or the database."""

from __future__ import annotations

import random
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from refundwatch.lib.cards import luhn_valid
from stack import Stack, db_rows


def make_card() -> str:
    """A fresh Luhn-valid 16-digit number, so a trace of it can only come from this test."""
    body = "4" + "".join(random.choice("0123456789") for _ in range(14))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def traces(card: str) -> list[str]:
    """The forms a leak could take: whole, grouped, and long enough pieces of it."""
    groups = [card[i : i + 4] for i in range(0, 16, 4)]
    return [card, " ".join(groups), "-".join(groups), card[:12], card[4:]]


@pytest.fixture(scope="module")
def cards() -> list[str]:
    return []  # every number this module sends, checked for traces at the end


@pytest.fixture
def card(cards: list[str]) -> str:
    number = make_card()
    cards.append(number)
    return number


@pytest.fixture(autouse=True)
def _no_faults(stack: Stack) -> None:
    stack.faults()


def assert_refused(response: httpx2.Response, field: str, card: str) -> None:
    text = response.text
    assert response.status_code == 422, text
    body = response.json()
    assert body["code"] == "card_number_refused", body
    assert body["message"].startswith(f"{field} looks like it contains a payment card number"), body
    for trace in traces(card):
        assert trace not in text, f"the answer echoes {trace}"


@pytest.mark.parametrize(
    ("field", "build"),
    [
        ("order_id", lambda c: {"order_id": c}),
        ("invoice_id", lambda c: {"invoice_id": f"INV {c[:4]} {c[4:8]} {c[8:12]} {c[12:]}"}),
        ("metadata.note", lambda c: {"metadata": {"source": "returns", "note": f"refund to card {c} pls"}}),
        (
            "metadata.card",
            lambda c: {"metadata": {"card": f"{c[:4]}-{c[4:8]}-{c[8:12]}-{c[12:]}"}},
        ),
        ("a metadata key", lambda c: {"metadata": {f"k{c}": "x"}}),
    ],
)
def test_refund_intake_refuses_card_numbers(
    stack: Stack, card: str, field: str, build: Callable[[str], dict[str, Any]]
) -> None:
    reference = stack.payment(1_000)
    key = f"card-{uuid.uuid4().hex}"
    response = stack.refund(reference, 100, key=key, **build(card))
    assert_refused(response, field, card)
    assert db_rows(stack, "SELECT count(*) FROM refunds WHERE idempotency_key = ?", key) == [(0,)]
    # The same payment still takes an ordinary refund: nothing was reserved by the refused one.
    ok = stack.refund(reference, 1_000, metadata={"note": "order 12345, 4242424242424241 (not Luhn)"})
    assert ok.status_code == 201, ok.text


def test_payments_api_refuses_card_numbers(stack: Stack, card: str) -> None:
    reference = f"pi_{uuid.uuid4().hex[:20]}"
    with stack.api() as client:
        response = client.post(
            "/api/v1/payments",
            json={
                "connection": "stripe-test",
                "payment_reference": reference,
                "amount": 1_000,
                "currency": "EUR",
                "captured_at": "2026-11-01T10:00:00Z",
                "order_id": f"order for {card}",
            },
        )
    assert_refused(response, "order_id", card)
    assert db_rows(stack, "SELECT count(*) FROM payments WHERE payment_reference = ?", reference) == [(0,)]


def test_payments_csv_refuses_card_numbers_whole(stack: Stack, card: str) -> None:
    refs = [f"pi_{uuid.uuid4().hex[:20]}" for _ in range(3)]
    lines = ["connection,payment_reference,amount,currency,captured_at,order_id,invoice_id"]
    lines += [f"stripe-test,{refs[0]},1000,EUR,2026-11-01T10:00:00Z,ORD-1,"]
    lines += [f"stripe-test,{refs[1]},1000,EUR,2026-11-01T10:00:00Z,ORD-2,{card}"]
    lines += [f"stripe-test,{refs[2]},1000,EUR,2026-11-01T10:00:00Z,ORD-3,"]
    path = stack.workdir / f"payments-{uuid.uuid4().hex[:8]}.csv"
    path.write_text("\n".join(lines) + "\n")
    result: subprocess.CompletedProcess[str] = stack.cli("payments", "import", str(path), check=False)
    assert result.returncode != 0
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert f"{path}:3: invoice_id looks like it contains a payment card number" in line, line
    for trace in traces(card):
        assert trace not in result.stderr + result.stdout
    path.unlink()  # the file itself held the number; the check below is of what refundwatch keeps
    placeholders = ",".join("?" * len(refs))
    query = f"SELECT count(*) FROM payments WHERE payment_reference IN ({placeholders})"
    assert db_rows(stack, query, *refs) == [(0,)]


def _database_bytes(stack: Stack) -> bytes:
    if stack.backend == "sqlite":
        db_file = Path(stack.database_url.split("///", 1)[1])
        parts = [db_file.read_bytes()]
        for suffix in ("-wal", "-journal", "-shm"):
            extra = db_file.with_name(db_file.name + suffix)
            if extra.exists():
                parts.append(extra.read_bytes())
        return b"".join(parts)
    url = stack.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    dump = subprocess.run(["pg_dump", "--no-owner", url], capture_output=True, timeout=120, check=False)
    assert dump.returncode == 0, dump.stderr.decode(errors="replace")
    return dump.stdout


def test_zz_no_trace_in_logs_or_database(stack: Stack, cards: list[str]) -> None:
    """Runs last in the module: every number sent above, in any form, is nowhere."""
    assert len(cards) >= 7
    raw = _database_bytes(stack)
    assert b"stripe-test" in raw  # positive control: this is the database the server used
    logs = {name: (stack.workdir / name).read_text(errors="replace") for name in ("web.log", "worker.log")}
    for number in cards:
        for trace in traces(number):
            assert trace.encode() not in raw, f"{trace} is in the database"
            for name, text in logs.items():
                assert trace not in text, f"{trace} is in {name}"
