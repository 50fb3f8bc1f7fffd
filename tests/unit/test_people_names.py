"""People by name: which ID token claim names a person, and what an audit actor id shows when no
sign-in recorded a name."""

from __future__ import annotations

import pytest

from refundwatch.auth.roles import Role, User, name_from
from refundwatch.refunds.people import _first_part


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (
            {"sub": "s1", "name": "Ivan Initiator", "preferred_username": "ivan", "email": "i@x.test"},
            "Ivan Initiator",
        ),
        ({"sub": "s1", "name": "  ", "preferred_username": "ivan", "email": "i@x.test"}, "ivan"),
        ({"sub": "s1", "email": "i@x.test"}, "i@x.test"),
        ({"sub": "s1"}, "s1"),
        ({"sub": "s1", "name": "x" * 300}, "x" * 128),
    ],
)
def test_the_name_claim_then_username_then_email(claims: dict[str, str], expected: str) -> None:
    assert name_from(claims) == expected


def test_pages_show_the_name_and_the_audit_log_keeps_the_email() -> None:
    user = User(subject="u-1", name="Ivan Initiator", email="ivan@x.test", role=Role.INITIATOR)
    assert user.display == "Ivan Initiator"
    assert user.audit_label == "ivan@x.test"  # "<e-mail> (<subject>)" stays the machine id


@pytest.mark.parametrize(
    ("actor_id", "shown"),
    [
        ("ivan@x.test (u-1)", "ivan@x.test"),
        ("tests (0192-ab)", "tests"),
        ("worker", "worker"),
        (" (x)", " (x)"),
    ],
)
def test_an_actor_id_without_a_recorded_name_shows_its_first_part(actor_id: str, shown: str) -> None:
    assert _first_part(actor_id) == shown
