"""``refundwatch connections import`` for PayPal connections (CONTRACT §6): client_id, client_secret,
webhook_id, the optional webhook_verification, the adapter's own field checks, each refusal in one line."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from test_cli import Offline, offline, one_line_error

__all__ = ["offline"]  # the module-scoped fixture, shared with test_cli

CLIENT_SECRET = "ECYYrrSHdKfk_Q0EdvzdGkzj58a66kKaUQ5dZAEv4HvvtDId2_DpSuYDB088BZxGuMBiRGAgLOGWT4V2"


def paypal_block(name: str, **fields: Any) -> str:
    values: dict[str, Any] = {
        "name": name,
        "processor": "paypal",
        "base_url": "https://api-m.sandbox.paypal.com",
        "client_id": "AeA1QIZXiflr1_-r0U2UbWTziOWX1GRQer5jkUq4ZfWT5qwb6qQRPq7jDtv57TL4POEEezGLdutcxnkJ",
        "client_secret": CLIENT_SECRET,
        "webhook_id": "8PT597110X687430LKGECATA",
        **fields,
    }
    lines = ["[[connection]]"]
    lines += [f'{key} = "{value}"' for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"client_id": None}, "client_id"),
        ({"client_secret": None}, "client_secret"),
        ({"webhook_id": None}, "webhook_id"),
        ({"client_id": "with:colon"}, "client_id must be"),
        ({"webhook_id": "WH-not-an-id"}, "webhook_id must be"),
        ({"webhook_verification": "offline"}, "webhook_verification must be"),
        ({"webhook_verification": ""}, "webhook_verification"),
        ({"webhook_secret": "whsec_x"}, "unknown field"),
    ],
)
def test_paypal_connection_refusals(offline: Offline, fields: dict[str, Any], needle: str) -> None:
    before = offline.count("connections")
    path = offline.write(paypal_block(f"paypal-{uuid.uuid4().hex[:8]}", **fields), ".toml")
    line = one_line_error(offline.cli("connections", "import", str(path)), needle)
    assert CLIENT_SECRET not in line
    assert offline.count("connections") == before


@pytest.mark.parametrize("mode", [None, "certificate", "api"])
def test_paypal_connection_imports(offline: Offline, mode: str | None) -> None:
    block = paypal_block(f"paypal-{uuid.uuid4().hex[:8]}", webhook_verification=mode)
    result = offline.cli("connections", "import", str(offline.write(block, ".toml")))
    assert result.returncode == 0, result.stderr
    assert "1 created" in result.stdout
    assert CLIENT_SECRET not in result.stdout + result.stderr
