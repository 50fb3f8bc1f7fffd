"""What the pipeline bench needs to know of each processor: connection, payments, faults and floor.

Stripe answers a refund with its final status at once. Adyen answers ``received`` (the refund is
``processing``) and tells the outcome in a signed ``REFUND`` notification ``settle_ms`` later, so
its simulator runs with a connections file (its HMAC key signs the items) and a webhook URL that
reaches refundwatch's web app: a refund reaches ``succeeded`` only through that round trip.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loadgen

LATENCY_MS = 50  # every processor's answer, in the floor as in the pipeline
# Adyen: receipt -> REFUND notification. The processor's own delay, the same as its answer's latency,
# so that it adds one latency to each refund as Stripe's answer does, and a rate is a rate.
SETTLE_MS = 50

_ADYEN_KEY = "AQEbench_refundwatch_key"
_ADYEN_FLOOR_KEY = "AQEbench_floor_key"  # floor refunds: no HMAC key, so no notification is sent
_MERCHANT = "RefundwatchBenchECOM"
_HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


@dataclass(frozen=True)
class Processor:
    name: str
    connection: str

    def references(self, n: int) -> list[str]:
        if self.name == "adyen":  # a payment's pspReference: 16 characters
            return [f"{i:08X}{uuid.uuid4().hex[:8].upper()}" for i in range(n)]
        return [f"pi_bench_{i:07d}_{uuid.uuid4().hex[:6]}" for i in range(n)]

    def connection_toml(self, sim_url: str) -> str:
        """refundwatch's connection to the simulator."""
        if self.name == "adyen":
            return _adyen_table(self.connection, sim_url, _ADYEN_KEY, _HMAC_KEY)
        return (
            f'[[connection]]\nname = "{self.connection}"\nprocessor = "stripe"\n'
            f'base_url = "{sim_url}/stripe"\n'
            'api_key = "sk_test_bench"\nwebhook_secret = "whsec_bench"\nhealth_check_interval_seconds = 30\n'
        )

    def simulator_args(self, workdir: Path, sim_url: str, web_url: str) -> list[str]:
        """Adyen's simulator knows the connections (to sign notifications) and where to send them.
        Stripe's runs as before: no connections file, no webhooks (its answer is final)."""
        if self.name != "adyen":
            return []
        path = workdir / "simulator-connections.toml"
        path.write_text(
            self.connection_toml(sim_url) + _adyen_table("adyen-floor", sim_url, _ADYEN_FLOOR_KEY, None)
        )
        return ["--connections", str(path), "--webhook-url", f"{web_url}/webhooks/{{connection}}"]

    def faults(self) -> list[dict[str, Any]]:
        every = {"latency_ms": LATENCY_MS, "jitter_ms": 0}
        if self.name == "adyen":
            return [every, {"processor": "adyen", "settle_ms": SETTLE_MS}]
        return [every]

    async def floor(self, sim_url: str, refs: list[str], k: int) -> loadgen.Outcome:
        """Raw refund POSTs straight to the simulator, encoded as the adapter sends them."""
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
            {"Authorization": "Bearer sk_test_bench"},
            [{"payment_intent": r, "amount": "1000"} for r in refs],
            k,
            form=True,
            idempotency_keys=False,
        )


def _adyen_table(name: str, sim_url: str, api_key: str, hmac_key: str | None) -> str:
    hmac = f'hmac_key = "{hmac_key}"\n' if hmac_key else ""
    return (
        f'[[connection]]\nname = "{name}"\nprocessor = "adyen"\nbase_url = "{sim_url}/adyen"\n'
        f'api_key = "{api_key}"\nmerchant_account = "{_MERCHANT}"\n{hmac}'
        "health_check_interval_seconds = 30\n"
    )


PROCESSORS = {
    "stripe": Processor("stripe", "stripe-bench"),
    "adyen": Processor("adyen", "adyen-bench"),
}
