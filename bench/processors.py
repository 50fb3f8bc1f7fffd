"""What the pipeline bench needs to know of each processor: connection, payments, faults and floor.

Stripe answers a refund with its final status at once. Adyen answers ``received`` (the refund is
``processing``) and tells the outcome in a signed ``REFUND`` notification ``settle_ms`` later, so
its simulator runs with a connections file (its HMAC key signs the items) and a webhook URL that
reaches refundwatch's web app: a refund reaches ``succeeded`` only through that round trip.

PayPal answers ``Prefer: return=representation`` with the refund resource, and ``COMPLETED`` is final
(the adapter's ``first_answer_final``): like Stripe's, the refund is ``succeeded`` on the answer. So
its simulator runs as Stripe's does, with no connections file (it then takes any client id and
secret) and no webhooks: the PAYMENT.CAPTURE.REFUNDED event would confirm what refundwatch already
holds, and sending it would charge PayPal's run a second HTTP request per refund that Stripe's does
not pay. The faults are Stripe's (50 ms per answer, token calls included; tokens live PayPal's 32,400
s, so one token serves the run): what differs is only PayPal's own work, the bearer token and the
JSON amounts. The floor fetches its bearer once, under its own client id, and sends the adapter's
JSON body without PayPal-Request-Id, as the other floors send no idempotency key.

Checkout.com answers ``202`` with the action id only (accepted-only, as Adyen's ``received``) and tells
the outcome in a ``payment_refunded`` webhook signed with ``Cko-Signature`` ``settle_ms`` later. So its
simulator runs as Adyen's does: a connections file (the webhook signature key signs the events) and a
webhook URL to refundwatch's web app, the same ``settle_ms`` as Adyen's. refundwatch also reads the
payment's ``available_to_refund`` (``GET /payments/{id}``) before each first send
(Capabilities.refundable_queryable): one more call per refund, in the pipeline and not in the floor,
which sends the adapter's JSON body and Bearer key without Cko-Idempotency-Key under a key of its own
that has no webhook signature key, so its refunds raise no webhooks.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

import loadgen

LATENCY_MS = 50  # every processor's answer, in the floor as in the pipeline
# Adyen: receipt -> REFUND notification. The processor's own delay, the same as its answer's latency,
# so that it adds one latency to each refund as Stripe's answer does, and a rate is a rate.
SETTLE_MS = 50

_ADYEN_KEY = "AQEbench_refundwatch_key"
_ADYEN_FLOOR_KEY = "AQEbench_floor_key"  # floor refunds: no HMAC key, so no notification is sent
_MERCHANT = "RefundwatchBenchECOM"
_HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
_PAYPAL_CLIENT = ("AbenchRefundwatchClient", "EbenchRefundwatchSecret")
_PAYPAL_FLOOR_CLIENT = ("AbenchFloorClient", "EbenchFloorSecret")  # its own token, never refundwatch's
_PAYPAL_WEBHOOK_ID = "8PT597110X687430LBENCH"
# Checkout.com sandbox keys: sk_sbox_ + 26 of [a-z2-7] + one more (gateways/checkout DEFAULT_KEY).
_CHECKOUT_KEY = "sk_sbox_refundwatchbenchsecretkeyqq"
_CHECKOUT_FLOOR_KEY = "sk_sbox_refundwatchfloorsecretkeyqq"  # no webhook signature key: no webhooks
_CHECKOUT_SIGNING_KEY = "whsk_bench_refundwatch_signature_key"


@dataclass(frozen=True)
class Processor:
    name: str
    connection: str
    # Stripe only: its simulator sends the signed refund.created event of each refund to refundwatch,
    # as a real account with the README's webhook set-up does (one more request per refund).
    webhooks: bool = False

    @property
    def label(self) -> str:
        return f"{self.name}+webhooks" if self.webhooks else self.name

    def references(self, n: int) -> list[str]:
        if self.name == "adyen":  # a payment's pspReference: 16 characters
            return [f"{i:08X}{uuid.uuid4().hex[:8].upper()}" for i in range(n)]
        if self.name == "paypal":  # a capture id: 17 upper-case letters and digits
            return [f"{i:08d}{uuid.uuid4().hex[:9].upper()}" for i in range(n)]
        if self.name == "checkout":  # a payment id: pay_ + 26 of [a-z2-7] (128 random bits in base32)
            return [
                f"pay_{base64.b32encode(uuid.uuid4().bytes).decode().rstrip('=').lower()}" for _ in range(n)
            ]
        return [f"pi_bench_{i:07d}_{uuid.uuid4().hex[:6]}" for i in range(n)]

    def connection_toml(self, sim_url: str) -> str:
        """refundwatch's connection to the simulator."""
        if self.name == "adyen":
            return _adyen_table(self.connection, sim_url, _ADYEN_KEY, _HMAC_KEY)
        if self.name == "checkout":
            return _checkout_table(self.connection, sim_url, _CHECKOUT_KEY, _CHECKOUT_SIGNING_KEY)
        if self.name == "paypal":
            client_id, secret = _PAYPAL_CLIENT
            return (
                f'[[connection]]\nname = "{self.connection}"\nprocessor = "paypal"\n'
                f'base_url = "{sim_url}/paypal"\nclient_id = "{client_id}"\nclient_secret = "{secret}"\n'
                f'webhook_id = "{_PAYPAL_WEBHOOK_ID}"\nhealth_check_interval_seconds = 30\n'
            )
        return (
            f'[[connection]]\nname = "{self.connection}"\nprocessor = "stripe"\n'
            f'base_url = "{sim_url}/stripe"\n'
            'api_key = "sk_test_bench"\nwebhook_secret = "whsec_bench"\nhealth_check_interval_seconds = 30\n'
        )

    def simulator_args(self, workdir: Path, sim_url: str, web_url: str) -> list[str]:
        """Adyen's and Checkout.com's simulators know the connections (to sign notifications) and where
        to send them. Stripe's and PayPal's run with no connections file and no webhooks (their answer
        is final), except Stripe's with ``webhooks``."""
        if self.name == "adyen":
            floor = _adyen_table("adyen-floor", sim_url, _ADYEN_FLOOR_KEY, None)
        elif self.name == "checkout":
            floor = _checkout_table("checkout-floor", sim_url, _CHECKOUT_FLOOR_KEY, None)
        elif self.webhooks:  # the floor's key has no webhook secret: its refunds send no events
            floor = (
                f'[[connection]]\nname = "stripe-floor"\nprocessor = "stripe"\napi_key = "{self.floor_key}"\n'
            )
        else:
            return []
        path = workdir / "simulator-connections.toml"
        path.write_text(self.connection_toml(sim_url) + floor)
        return ["--connections", str(path), "--webhook-url", f"{web_url}/webhooks/{{connection}}"]

    @property
    def floor_key(self) -> str:
        return "sk_test_floor" if self.webhooks else "sk_test_bench"

    def faults(self) -> list[dict[str, Any]]:
        every = {"latency_ms": LATENCY_MS, "jitter_ms": 0}
        if self.name in ("adyen", "checkout"):
            return [every, {"processor": self.name, "settle_ms": SETTLE_MS}]
        return [every]

    async def tokens_issued(self, sim_url: str) -> int | None:
        """PayPal: the simulator's count of token calls answered so far (it outlives /_control/reset);
        None for processors without tokens."""
        if self.name != "paypal":
            return None
        async with httpx2.AsyncClient() as client:
            response = await client.get(f"{sim_url}/_control/paypal/tokens")
            response.raise_for_status()
            return int(response.json()["issued"])

    async def floor(self, sim_url: str, refs: list[str], k: int) -> loadgen.Outcome:
        """Raw refund POSTs straight to the simulator, encoded as the adapter sends them."""
        if self.name == "paypal":
            return await _paypal_floor(sim_url, refs, k)
        if self.name == "checkout":
            # gateways/checkout: Bearer key, JSON {amount, reference (the refund's id), metadata}
            return await loadgen.post_all(
                f"{sim_url}/checkout",
                {"Authorization": f"Bearer {_CHECKOUT_FLOOR_KEY}", "Accept": "application/json"},
                [_checkout_body(str(uuid.uuid4())) for _ in refs],
                k,
                idempotency_keys=False,
                paths=[f"/checkout/payments/{r}/refunds" for r in refs],
            )
        if self.name == "adyen":
            return await loadgen.post_all(
                f"{sim_url}/adyen",
                {"X-API-Key": _ADYEN_FLOOR_KEY},
                [
                    {
                        "merchantAccount": _MERCHANT,
                        "amount": {"value": 1000, "currency": "EUR"},
                        "reference": f"floor{i}",
                    }
                    for i in range(len(refs))
                ],
                k,
                idempotency_keys=False,
                paths=[f"/adyen/v72/payments/{r}/refunds" for r in refs],
            )
        return await loadgen.post_all(
            f"{sim_url}/stripe/v1/refunds",
            {"Authorization": f"Bearer {self.floor_key}"},
            [{"payment_intent": r, "amount": "1000"} for r in refs],
            k,
            form=True,
            idempotency_keys=False,
        )


async def _paypal_floor(sim_url: str, refs: list[str], k: int) -> loadgen.Outcome:
    """One token call, then the adapter's refund requests (gateways/paypal: headers and JSON body,
    amount as a decimal string, invoice_id and custom_id of refundwatch's lengths) with that bearer."""
    basic = base64.b64encode(":".join(_PAYPAL_FLOOR_CLIENT).encode()).decode("ascii")
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            f"{sim_url}/paypal/v1/oauth2/token",
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            data={"grant_type": "client_credentials"},
        )
        response.raise_for_status()
        token = response.json()["access_token"]
    return await loadgen.post_all(
        f"{sim_url}/paypal",
        {"Authorization": f"Bearer {token}", "Accept": "application/json", "Prefer": "return=representation"},
        [
            {
                "amount": {"currency_code": "EUR", "value": "10.00"},
                "invoice_id": f"rw_{uuid.uuid4().hex}",
                "custom_id": str(uuid.uuid4()),
                "note_to_payer": "Refund for your returned items",
            }
            for _ in refs
        ],
        k,
        idempotency_keys=False,
        paths=[f"/paypal/v2/payments/captures/{r}/refund" for r in refs],
    )


def _adyen_table(name: str, sim_url: str, api_key: str, hmac_key: str | None) -> str:
    hmac = f'hmac_key = "{hmac_key}"\n' if hmac_key else ""
    return (
        f'[[connection]]\nname = "{name}"\nprocessor = "adyen"\nbase_url = "{sim_url}/adyen"\n'
        f'api_key = "{api_key}"\nmerchant_account = "{_MERCHANT}"\n{hmac}'
        "health_check_interval_seconds = 30\n"
    )


def _checkout_body(refund_id: str) -> dict[str, Any]:
    return {
        "amount": 1000,
        "reference": refund_id,
        "metadata": {"refund_id": refund_id, "idempotency_key": f"rw_{uuid.uuid4().hex}"},
    }


def _checkout_table(name: str, sim_url: str, secret_key: str, signing_key: str | None) -> str:
    signing = f'webhook_signature_key = "{signing_key}"\n' if signing_key else ""
    return (
        f'[[connection]]\nname = "{name}"\nprocessor = "checkout"\nbase_url = "{sim_url}/checkout"\n'
        f'secret_key = "{secret_key}"\n{signing}health_check_interval_seconds = 30\n'
    )


PROCESSORS = {
    "stripe": Processor("stripe", "stripe-bench"),
    # Not a processor of its own: Stripe with its webhooks on, for comparison (see pipeline.py).
    "stripe+webhooks": Processor("stripe", "stripe-bench", webhooks=True),
    "adyen": Processor("adyen", "adyen-bench"),
    "paypal": Processor("paypal", "paypal-bench"),
    "checkout": Processor("checkout", "checkout-bench"),
}
