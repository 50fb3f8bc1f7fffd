"""What the end-to-end tests need to know about each processor, so one test body serves all of them.

The stack's one simulator serves every processor (CONTRACT §7); refundwatch gets a processor's test
connection when a test first registers a payment for it (``Stack.payment(..., processor=...)``), so
modules that never use Adyen see one connection, as before.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STRIPE_KEY = "sk_test_refundwatch_tests"
STRIPE_SECRET = "whsec_refundwatch_tests"
ADYEN_KEY = "AQEadyen_refundwatch_tests_key"
ADYEN_MERCHANT = "RefundwatchTestsECOM"
ADYEN_HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
# The report user that downloads Adyen's settlement reports (REPORT_AVAILABLE).
ADYEN_REPORT_USER = "report_000001@Company.RefundwatchTests"
ADYEN_REPORT_PASSWORD = "report-password-for-tests"
PAYPAL_CLIENT_ID = "AbRefundwatchTestsClientId0001"
PAYPAL_CLIENT_SECRET = "EFrefundwatch_tests_client_secret"
PAYPAL_WEBHOOK_ID = "8PT597110X687430LKGECATA"  # letters and digits, as PayPal's webhook ids are
# Checkout.com: a key of the shape its SDK checks (current platform, sandbox).
CHECKOUT_SECRET_KEY = "sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e"
CHECKOUT_SIGNATURE_KEY = "refundwatch-tests-cko-signature-key"


@dataclass(frozen=True)
class Kit:
    """One processor as the tests drive it."""

    name: str
    connection: str
    new_reference: Callable[[], str]
    # The connection's own fields (strings) beside name, processor and base_url.
    fields: dict[str, str]
    # Fault values every test starts from, on top of "no faults" (how fast refunds settle).
    fault_defaults: dict[str, Any] = field(default_factory=dict)
    # Whether the first answer is already the outcome (Stripe) or only "received" (Adyen: processing
    # until a notification says how it went).
    answers_outcome: bool = True
    # The webhook event that announces settlement data to pull (its ``event_type``), and the form the
    # pull imports it in (the settlement file's ``source``: an API answer or a report file).
    settlement_notice: str = ""
    settlement_source: str = ""

    def connection_toml(self, sim_url: str) -> str:
        lines = [
            "[[connection]]",
            f'name = "{self.connection}"',
            f'processor = "{self.name}"',
            f'base_url = "{sim_url}/{self.name}"',
            *(f'{key} = "{value}"' for key, value in self.fields.items()),
            "health_check_interval_seconds = 1",
            "timeout_seconds = 2",
        ]
        return "\n".join(lines) + "\n"


KITS: dict[str, Kit] = {
    "stripe": Kit(
        name="stripe",
        connection="stripe-test",
        new_reference=lambda: f"pi_{uuid.uuid4().hex[:20]}",
        fields={"api_key": STRIPE_KEY, "webhook_secret": STRIPE_SECRET},
        settlement_notice="payout.paid",  # the payout's balance transactions, by API
        settlement_source="api",
    ),
    "adyen": Kit(
        name="adyen",
        connection="adyen-test",
        new_reference=lambda: secrets.token_hex(8).upper(),  # a 16-character pspReference
        fields={
            "api_key": ADYEN_KEY,
            "merchant_account": ADYEN_MERCHANT,
            "hmac_key": ADYEN_HMAC_KEY,
            "report_username": ADYEN_REPORT_USER,
            "report_password": ADYEN_REPORT_PASSWORD,
        },
        # The simulator's default is 2 s from "received" to the REFUND notification; tests wait less.
        # A notification refundwatch does not acknowledge comes back on Adyen's schedule (first retry
        # after 9 s, then minutes, hours): at 0.01 of real time, 90 ms, 1.2 s, 3 s...
        fault_defaults={"settle_ms": 300, "webhook_retry_scale": 0.01},
        answers_outcome=False,
        settlement_notice="REPORT_AVAILABLE",  # the Settlement details report, downloaded
        settlement_source="file",
    ),
    "paypal": Kit(
        name="paypal",
        connection="paypal-test",
        new_reference=lambda: secrets.token_hex(9).upper()[:17],  # a 17-character capture id
        fields={
            "client_id": PAYPAL_CLIENT_ID,
            "client_secret": PAYPAL_CLIENT_SECRET,
            "webhook_id": PAYPAL_WEBHOOK_ID,
        },
        # The simulator's default is 2 s from a pending refund to its outcome; re-sends of a webhook
        # refundwatch did not acknowledge come at 0.01 of PayPal's spacing.
        fault_defaults={"settle_ms": 300, "webhook_retry_scale": 0.01},
    ),
    "checkout": Kit(
        name="checkout",
        connection="checkout-test",
        new_reference=lambda: (
            "pay_" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(26))
        ),
        fields={"secret_key": CHECKOUT_SECRET_KEY, "webhook_signature_key": CHECKOUT_SIGNATURE_KEY},
        # 202 is "accepted" only: the outcome comes in a signed webhook settle_ms later; re-sends of one
        # refundwatch did not acknowledge come at 0.01 of the simulator's spacing (first after 0.6 s).
        fault_defaults={"settle_ms": 300, "webhook_retry_scale": 0.01},
        answers_outcome=False,
    ),
}

PROCESSORS = list(KITS)


def kit(processor: str) -> Kit:
    return KITS[processor]


def connections_toml(sim_url: str, *processors: str) -> str:
    return "\n".join(KITS[p].connection_toml(sim_url) for p in processors or PROCESSORS)
