"""checkout-sdk 4.8.1 as a witness of the adapter's requests: for the same refund, the official SDK and
CheckoutGateway send the same method, URL, Authorization (Bearer on the current platform, bare on the
previous one), Cko-Idempotency-Key and JSON body; they read the same payment and actions URLs; and the
adapter's check_fields accepts exactly the secret keys the SDK's builders accept.

The SDK talks through a requests.Session; a recording Session stands in for the network. (checkout-sdk
is the test-only dependency co-sim pins in pyproject.toml; the module is skipped without it.)
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from checkout_adapter_helpers import (
    BASE_URL,
    KEY,
    PAYMENT_ID,
    PREVIOUS_KEY,
    REFUND_ID,
    SECRET_KEY,
    SIGNATURE_KEY,
    accepted_body,
    answer,
    capture_actions,
    make_creds,
    make_request,
    payment_body,
)

pytest.importorskip("checkout_sdk")

import requests
from checkout_sdk.checkout_sdk import CheckoutSdk
from checkout_sdk.environment import Environment
from checkout_sdk.exception import CheckoutArgumentException
from checkout_sdk.http_client_interface import HttpClientBuilderInterface
from checkout_sdk.payments.payments import RefundRequest as SdkRefundRequest

from refundwatch.gateways.checkout import CheckoutGateway

GATEWAY = CheckoutGateway()


class Recording(requests.Session):
    """A Session that records what the SDK sends and answers with a canned JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__()
        self.status, self.body = status, body
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append({"method": method, "url": url, **kwargs})
        response = requests.Response()
        response.status_code = self.status
        response._content = json.dumps(self.body).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = url
        return response


class Builder(HttpClientBuilderInterface):
    def __init__(self, session: Recording) -> None:
        self.session = session

    def get_client(self) -> requests.Session:
        return self.session


def environment() -> Environment:
    uri = BASE_URL + "/"
    return Environment(uri, uri, uri, uri, uri, uri, uri, True)


def sdk(session: Recording, *, previous: bool = False) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # use_legacy_domain(): the shared host
        if previous:
            builder: Any = CheckoutSdk.builder().previous().secret_key(PREVIOUS_KEY)
        else:
            builder = CheckoutSdk.builder().secret_key(SECRET_KEY).use_legacy_domain()
        return builder.environment(environment()).http_client_builder(Builder(session)).build()


@pytest.mark.parametrize("previous", [False, True])
async def test_the_refund_request_is_the_sdks(previous: bool) -> None:
    session = Recording(202, accepted_body())
    refund = SdkRefundRequest()  # both platforms' clients take payments.RefundRequest
    refund.amount = 1050
    refund.reference = REFUND_ID
    refund.metadata = {"refund_id": REFUND_ID, "idempotency_key": KEY}
    sdk(session, previous=previous).payments.refund_payment(PAYMENT_ID, refund, KEY)
    (theirs,) = session.sent

    mock = answer(202, accepted_body())
    creds = make_creds(platform="previous", secret_key=PREVIOUS_KEY) if previous else make_creds()
    async with mock.client() as client:
        await GATEWAY.create_refund(client, creds, make_request())
    (ours,) = mock.requests

    assert ours.method == theirs["method"]
    assert str(ours.url) == theirs["url"]
    for header in ("Authorization", "Cko-Idempotency-Key", "Content-Type", "Accept"):
        assert ours.headers[header] == theirs["headers"][header], header
    assert json.loads(ours.content) == json.loads(theirs["data"])


async def test_the_reads_are_the_sdks() -> None:
    session = Recording(200, payment_body())
    api = sdk(session)
    api.payments.get_payment_details(PAYMENT_ID)
    session.body = capture_actions()
    api.payments.get_payment_actions(PAYMENT_ID)
    details, actions = session.sent

    async with answer(200, payment_body()).client() as client:
        await GATEWAY.refundable(client, make_creds(), PAYMENT_ID)
    mock = answer(200, capture_actions())
    async with mock.client() as client:
        await GATEWAY.find_refund(client, make_creds(), make_request())
    assert ("GET", details["url"]) == ("GET", f"{BASE_URL}/payments/{PAYMENT_ID}")
    assert (mock.requests[0].method, str(mock.requests[0].url)) == (actions["method"], actions["url"])
    assert mock.requests[0].headers["Authorization"] == actions["headers"]["Authorization"]


@pytest.mark.parametrize(
    "key",
    [
        SECRET_KEY,
        "sk_m73dzbpy7cf3gfd46xr4yj5xo4e",
        "sk_m73dzbpy7cf3gfd46xr4yj5xo4#",
        "sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4",  # too short
        "sk_sbox_M73DZBPY7CF3GFD46XR4YJ5XO4E",  # upper case
        "sk_sbox_m73dzbpy7cf3gfd46xr4yj5x18e",  # 1 and 8 are not base32
        PREVIOUS_KEY,
        "sk_fde517a8-3f01-41ef-b4bd-4282384b0a64",
        "sk_test_fde517a8-3f01-41ef-b4bd",
        "pk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e",
        "",
    ],
)
@pytest.mark.parametrize("previous", [False, True])
def test_check_fields_accepts_the_keys_the_sdk_accepts(key: str, previous: bool) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            builder: Any = CheckoutSdk.builder()
            builder = builder.previous() if previous else builder.use_legacy_domain()
            builder.secret_key(key).environment(environment()).build()
        sdk_accepts = True
    except CheckoutArgumentException:
        sdk_accepts = False
    values = {"secret_key": key, "webhook_signature_key": SIGNATURE_KEY}
    if previous:
        values["platform"] = "previous"
    try:
        GATEWAY.check_fields(values)
        we_accept = True
    except ValueError:
        we_accept = False
    assert we_accept is sdk_accepts
