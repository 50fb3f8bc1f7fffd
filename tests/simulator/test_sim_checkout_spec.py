"""The Checkout.com simulator's answers checked against the API reference's schemas in ``specs/checkout``.

The copies there leave out the shared components they point at (``ActionId``, ``Link``): written here
from the refund path's own patterns. ``PaymentResponseBalances.yaml`` lists ``id`` as required, which no
balances object in Checkout.com's examples carries (the payment has the id): that line is not applied.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from .checkout_kit import (
    checkout_receiver,
    checkout_simulator_process,
    csim,
    payment,
    read,
    refund,
)
from .conftest import Simulator

__all__ = ["checkout_receiver", "checkout_simulator_process", "csim"]

SPECS = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs" / "checkout"
_COMPONENTS = {
    "ActionId": {"type": "string", "pattern": r"^(act)_(\w{26})$"},
    "Link": {"type": "object", "properties": {"href": {"type": "string"}}, "required": ["href"]},
}


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema: dict[str, Any] = yaml.safe_load((SPECS / name).read_text(encoding="utf-8"))
    if name == "PaymentResponseBalances.yaml":
        schema.pop("required", None)
        schema["additionalProperties"] = False
    schema["components"] = {"schemas": _COMPONENTS}
    return Draft202012Validator(schema)


def test_the_202_balances_and_event_types_match_the_spec(csim: Simulator) -> None:
    payment_id = payment(csim, 6_540)
    assert payment_id.startswith("pay_")
    accepted = refund(csim, payment_id, {"amount": 1_000, "reference": "ORD-5023-4E89"}, key="spec-1")
    assert accepted.status_code == 202
    _validator("RefundAcceptedResponse.yaml").validate(accepted.json())
    balances = read(csim, f"/payments/{payment_id}").json()["balances"]
    _validator("PaymentResponseBalances.yaml").validate(balances)
    for item in read(csim, "/event-types").json():
        _validator("EventTypesObject.yaml").validate(item)


def test_the_spec_validator_rejects_a_wrong_answer() -> None:
    assert not _validator("RefundAcceptedResponse.yaml").is_valid({"action_id": "re_123", "_links": {}})
    assert not _validator("PaymentResponseBalances.yaml").is_valid({"available_to_refund": "10"})
