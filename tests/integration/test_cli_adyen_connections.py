"""``refundwatch connections import`` for Adyen connections (CONTRACT §6): required fields, the
adapter's own field checks (a hex hmac_key), optional fields, each refusal in one line."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from test_cli import Offline, offline, one_line_error

__all__ = ["offline"]  # the module-scoped fixture, shared with test_cli

HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


def adyen_block(name: str, **fields: Any) -> str:
    values: dict[str, Any] = {
        "name": name,
        "processor": "adyen",
        "base_url": "http://127.0.0.1:9/adyen",
        "api_key": "AQEyhmfxK4LIYhZGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8",
        "merchant_account": "RefundwatchECOM",
        "hmac_key": HMAC_KEY,
        **fields,
    }
    lines = ["[[connection]]"]
    lines += [f'{key} = "{value}"' for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"merchant_account": None}, "merchant_account"),
        ({"hmac_key": None}, "hmac_key"),
        ({"api_key": None}, "api_key"),
        ({"hmac_key": "not-hex-at-all"}, "hmac_key must be hex"),
        ({"hmac_key": HMAC_KEY[:-1]}, "hmac_key must be hex"),  # odd length: not whole bytes
        ({"live_prefix": "has spaces/slash"}, "live_prefix"),
        ({"webhook_username": "adyen"}, "webhook_password"),
        ({"webhook_password": ""}, "webhook_password"),
        ({"report_user": "typo"}, "report_user"),
        ({"report_username": "report@Company.Refundwatch"}, "report_password go together"),
        ({"report_password": "r3port-secret"}, "report_password go together"),
    ],
)
def test_adyen_connection_refusals(offline: Offline, fields: dict[str, Any], needle: str) -> None:
    before = offline.count("connections")
    path = offline.write(adyen_block(f"adyen-{uuid.uuid4().hex[:8]}", **fields), ".toml")
    line = one_line_error(offline.cli("connections", "import", str(path)), needle)
    assert HMAC_KEY not in line
    assert offline.count("connections") == before


def test_adyen_connection_with_optional_fields_imports(offline: Offline) -> None:
    name = f"adyen-{uuid.uuid4().hex[:8]}"
    block = adyen_block(
        name,
        live_prefix="1797a841fbb37ca7-AdyenDemo",
        webhook_username="adyen",
        webhook_password="s3cret",
        report_username="report@Company.Refundwatch",
        report_password="r3port",
    )
    result = offline.cli("connections", "import", str(offline.write(block, ".toml")))
    assert result.returncode == 0, result.stderr
    assert "1 created" in result.stdout
