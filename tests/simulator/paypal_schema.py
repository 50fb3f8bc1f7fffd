"""The simulator's PayPal answers and webhooks checked against PayPal's own OpenAPI documents (jsonschema):
``payments_payment_v2.json`` (refund, capture, errors) and ``notifications_webhooks_v1.json`` (events)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPECS = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs" / "paypal"
_PAYMENTS = "urn:paypal:payments_payment_v2"
_WEBHOOKS = "urn:paypal:notifications_webhooks_v1"


@functools.cache
def _registry() -> Registry[Any]:
    resources = []
    for uri, name in ((_PAYMENTS, "payments_payment_v2.json"), (_WEBHOOKS, "notifications_webhooks_v1.json")):
        document = json.loads((SPECS / name).read_text(encoding="utf-8"))
        resources.append((uri, Resource.from_contents(document, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@functools.cache
def _validator(uri: str, *schemas: str) -> Draft202012Validator:
    schema = {"allOf": [{"$ref": f"{uri}#/components/schemas/{name}"} for name in schemas]}
    return Draft202012Validator(
        schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def validate_refund(body: dict[str, Any]) -> None:
    _validator(_PAYMENTS, "refund").validate(body)


def validate_capture(body: dict[str, Any]) -> None:
    _validator(_PAYMENTS, "capture-2").validate(body)


def validate_refund_error(status: int, body: dict[str, Any]) -> None:
    """An error answer of ``captures.refund`` against the spec's schema for its status."""
    schemas = {
        400: ("error_400", "captures.refund-400"),
        401: ("error_401",),
        404: ("error_404", "404"),
        409: ("error_409", "409"),
        422: ("error_422", "captures.refund-422"),
        500: ("error_500",),
        503: ("error_503",),
    }[status]
    _validator(_PAYMENTS, *schemas).validate(body)


def validate_event(body: dict[str, Any]) -> None:
    """A webhook body: an ``event`` of the webhooks spec whose ``resource`` is a Payments v2 ``refund``."""
    _validator(_WEBHOOKS, "event").validate(body)
    validate_refund(body["resource"])


def validate_webhook(body: dict[str, Any]) -> None:
    _validator(_WEBHOOKS, "webhook").validate(body)
