"""Adyen's notifications checked against Adyen's own Webhooks v1 OpenAPI document (jsonschema)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).parent / "specs" / "adyen" / "Webhooks-v1.json"
_URI = "urn:adyen:webhooks-v1"


@functools.cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SPEC.read_text(encoding="utf-8"))
    return document


@functools.cache
def _validator(event_code: str) -> Draft202012Validator:
    """The validator of the request body Adyen's spec declares for the ``/{event_code}`` webhook."""
    body = _document()["webhooks"][f"/{event_code}"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    registry: Registry[Any] = Registry().with_resource(
        _URI, Resource.from_contents(_document(), default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": _URI + ref}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def validate_notification(body: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless every item of ``body`` is valid for its event code.

    Items of different event codes may travel in one batch, so each is checked, within a request of
    the same ``live`` flag, against the schema of its own event code.
    """
    assert set(body) == {"live", "notificationItems"}
    assert body["notificationItems"], "a notification carries at least one item"
    for wrapper in body["notificationItems"]:
        event_code = wrapper["NotificationRequestItem"]["eventCode"]
        _validator(event_code).validate({"live": body["live"], "notificationItems": [wrapper]})
