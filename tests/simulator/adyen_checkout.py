"""The simulator's Checkout answers checked against Adyen's own CheckoutService-v72 OpenAPI document
(openapi-core), as if they came from Adyen's test host."""

from __future__ import annotations

import functools
from pathlib import Path

import httpx2
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs" / "adyen" / "CheckoutService-v72.json"
_HOST = "https://checkout-test.adyen.com"


@functools.cache
def _spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC))


class _Request:
    """openapi_core.protocols.Request for a request sent to the simulator's ``/adyen`` prefix."""

    def __init__(self, request: httpx2.Request) -> None:
        self.method = request.method.lower()
        self.host_url = _HOST
        self.path = request.url.path.removeprefix("/adyen")
        self.body: bytes | None = request.content or None
        self.content_type = request.headers.get("Content-Type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )


class _Response:
    """openapi_core.protocols.Response."""

    def __init__(self, response: httpx2.Response) -> None:
        self.data = response.content
        self.status_code = response.status_code
        self.content_type = response.headers.get("Content-Type", "")
        self.headers = Headers(dict(response.headers))


def validate_answer(response: httpx2.Response) -> None:
    """Raise unless the status is one the spec declares for the operation and the body its schema."""
    _spec().validate_response(_Request(response.request), _Response(response))
