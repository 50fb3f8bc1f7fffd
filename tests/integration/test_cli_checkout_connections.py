"""``refundwatch connections import`` for Checkout.com connections (CONTRACT §6): secret_key,
webhook_signature_key, the optional platform (default | previous) and webhook_authorization, the adapter's
own field checks (secret keys shaped as checkout-sdk 4.8.1 accepts them), each refusal in one line."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from test_cli import Offline, offline, one_line_error

__all__ = ["offline"]  # the module-scoped fixture, shared with test_cli

SECRET_KEY = "sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e"
PREVIOUS_KEY = "sk_test_fde517a8-3f01-41ef-b4bd-4282384b0a64"
SIGNATURE_KEY = "5a8f1c4e-2b7d-4e8a-9c31-webhooksignkey"


def checkout_block(name: str, **fields: Any) -> str:
    values: dict[str, Any] = {
        "name": name,
        "processor": "checkout",
        "base_url": "https://api.sandbox.checkout.com",
        "secret_key": SECRET_KEY,
        "webhook_signature_key": SIGNATURE_KEY,
        **fields,
    }
    lines = ["[[connection]]"]
    lines += [f'{key} = "{value}"' for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"secret_key": None}, "secret_key"),
        ({"webhook_signature_key": None}, "webhook_signature_key"),
        ({"secret_key": "pk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e"}, "secret_key must be"),
        ({"secret_key": PREVIOUS_KEY}, "secret_key must be"),
        ({"platform": "previous"}, "previous-platform secret key"),
        ({"platform": "nas"}, "platform must be"),
        ({"platform": ""}, "platform"),
        ({"webhook_signature_key": "with space"}, "webhook_signature_key must be"),
        ({"webhook_authorization": ""}, "webhook_authorization"),
        ({"api_key": "sk_x"}, "unknown field"),
    ],
)
def test_checkout_connection_refusals(offline: Offline, fields: dict[str, Any], needle: str) -> None:
    before = offline.count("connections")
    path = offline.write(checkout_block(f"checkout-{uuid.uuid4().hex[:8]}", **fields), ".toml")
    line = one_line_error(offline.cli("connections", "import", str(path)), needle)
    assert SECRET_KEY not in line
    assert PREVIOUS_KEY not in line
    assert SIGNATURE_KEY not in line
    assert offline.count("connections") == before


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"platform": "default"},
        {"platform": "previous", "secret_key": PREVIOUS_KEY},
        {"webhook_authorization": "Bearer shared-webhook-secret"},
    ],
)
def test_checkout_connection_imports(offline: Offline, fields: dict[str, Any]) -> None:
    block = checkout_block(f"checkout-{uuid.uuid4().hex[:8]}", **fields)
    result = offline.cli("connections", "import", str(offline.write(block, ".toml")))
    assert result.returncode == 0, result.stderr
    assert "1 created" in result.stdout
    assert SECRET_KEY not in result.stdout + result.stderr
    assert PREVIOUS_KEY not in result.stdout + result.stderr
