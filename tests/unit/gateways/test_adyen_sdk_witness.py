"""The official SDK (Adyen 16.0.0) as a witness: its refund request, sent to a local recording server,
has the same method, path, authentication and idempotency headers and JSON body as ours."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import Adyen
import pytest
from adyen_helpers import (
    API_KEY,
    MERCHANT,
    PAYMENT_PSP,
    REFUND_ID,
    answer,
    make_creds,
    make_request,
    received_body,
)

from refundwatch.gateways.adyen import AdyenGateway


class Recorded:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []


@pytest.fixture
def recording_server() -> Iterator[tuple[str, Recorded]]:
    recorded = Recorded()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            recorded.requests.append(("POST", self.path, dict(self.headers.items()), json.loads(body)))
            payload = json.dumps(received_body()).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorded
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_our_refund_request_has_the_sdk_shape(recording_server: tuple[str, Recorded]) -> None:
    url, recorded = recording_server
    request = make_request(reason="return")
    ady = Adyen.Adyen(xapikey=API_KEY, platform="test")
    ady.client.http_timeout = 5
    ady.checkout.modifications_api.baseUrl = url + "/v72"
    sdk_body = {
        "merchantAccount": MERCHANT,
        "amount": {"value": request.amount, "currency": request.currency},
        "reference": REFUND_ID,
        "merchantRefundReason": "RETURN",
    }
    result = ady.checkout.modifications_api.refund_captured_payment(
        sdk_body, PAYMENT_PSP, idempotency_key=request.idempotency_key
    )
    assert result.message["status"] == "received"
    ((method, path, headers, body),) = recorded.requests

    recorder = answer(201, received_body())
    async with recorder.client() as client:
        await AdyenGateway().create_refund(client, make_creds(url), request)
    ours = recorder.requests[0]
    assert (ours.method, ours.url.path) == (method, path)
    assert json.loads(ours.content) == body
    sdk_headers = {k.lower(): v for k, v in headers.items()}
    for name in ("x-api-key", "idempotency-key"):
        assert ours.headers[name] == sdk_headers[name]
    assert ours.headers["content-type"].split(";")[0] == sdk_headers["content-type"].split(";")[0]
