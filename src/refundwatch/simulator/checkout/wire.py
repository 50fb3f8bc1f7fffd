"""Checkout.com's wire format for refunds, written from Checkout.com's API reference (the files in
``specs/checkout/``), its documentation pages and checkout-sdk 4.8.1. Pure functions and types only;
nothing here comes from refundwatch's Checkout.com adapter (STYLE rule 12).

Where the sources are silent, the simulator's choices are marked "ours" below.
"""

from __future__ import annotations

import datetime
import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVENT_TYPES",
    "MAX_REFERENCE",
    "CheckoutError",
    "RefundAsk",
    "new_id",
    "now_time",
    "parse_refund_request",
    "request_id",
    "time_of",
]

# Checkout.com ids: a prefix and 26 lower-case base32 characters (``pay_y3oqhf46pyzuxjbcn2giaqnb44``);
# the refund path's ``id`` must match ``^(pay)_(\w{26})$`` (paths-payments-id-refunds.yaml).
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
PAYMENT_ID = re.compile(r"^pay_[A-Za-z0-9_]{26}$")
MAX_REFERENCE = 50  # RefundRequest.yaml: reference maxLength 50
# checkout-sdk's RefundRequest also has ``amount_allocations``, ``capture_action_id``, ``destination`` and
# ``items`` ("not available on Previous"): accepted and not modelled, as any other field (ours).
_MAX_AMOUNT = 9_999_999_999  # the SDK's documented upper bound for payment action amounts

# EventTypesObject.yaml's example list, as ``GET /event-types`` answers it per version.
EVENT_TYPES: tuple[str, ...] = (
    "card_verification_declined",
    "card_verified",
    "dispute_canceled",
    "dispute_evidence_required",
    "dispute_expired",
    "dispute_lost",
    "dispute_resolved",
    "dispute_won",
    "payment_approved",
    "payment_risk_matched",
    "payment_pending",
    "payment_declined",
    "payment_expired",
    "payment_cancelled",
    "payment_voided",
    "payment_void_declined",
    "payment_captured",
    "payment_capture_declined",
    "payment_capture_pending",
    "payment_refunded",
    "payment_refund_declined",
    "payment_refund_pending",
    "payment_chargeback",
    "payment_retrieval",
)

# Response codes of a refund's action (Checkout.com's response-code list): 10000 Approved; the
# declines a refund may get (ours to pick among the documented card decline codes).
APPROVED = ("10000", "Approved")
DECLINES: tuple[tuple[str, str], ...] = (
    ("20005", "Declined - Do Not Honour"),
    ("20012", "Invalid Transaction"),
    ("20057", "Transaction not permitted to cardholder"),
)


class CheckoutError(Exception):
    """An error answer: ``status`` with, for 422, ``{request_id, error_type, error_codes}``.

    Checkout.com answers 401, 403 ("Refund not allowed") and 404 ("Payment not found") without a body.
    """

    def __init__(self, status: int, error_type: str | None = None, *codes: str) -> None:
        super().__init__(f"{status} {error_type or ''} {' '.join(codes)}".strip())
        self.status = status
        self.error_type = error_type
        self.codes = codes

    def body(self, request: str) -> dict[str, Any] | None:
        if self.error_type is None:
            return None
        return {"request_id": request, "error_type": self.error_type, "error_codes": list(self.codes)}


def invalid(*codes: str) -> CheckoutError:
    return CheckoutError(422, "request_invalid", *codes)


UNAUTHORIZED = CheckoutError(401)
NOT_ALLOWED = CheckoutError(403)  # "Refund not allowed": nothing left to refund
NOT_FOUND = CheckoutError(404)  # "Payment not found"
IN_PROGRESS = CheckoutError(409)  # the same Cko-Idempotency-Key is being processed


def new_id(prefix: str) -> str:
    """``pay_``, ``act_`` or ``evt_`` and 26 base32 characters."""
    return prefix + "".join(random.choices(_BASE32, k=26))


def request_id() -> str:
    """A ``Cko-Request-Id`` (a UUID, as the API reference's examples show)."""
    return str(uuid.uuid4())


def time_of(unix: float) -> str:
    """ISO 8601 UTC as Checkout.com writes it: ``2026-12-06T18:30:00Z``."""
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_time() -> str:
    return time_of(datetime.datetime.now(datetime.UTC).timestamp())


@dataclass(frozen=True, slots=True)
class RefundAsk:
    """A refund request as read: ``amount`` None for "the whole rest of the payment"."""

    amount: int | None
    reference: str | None
    metadata: Mapping[str, Any]


def parse_refund_request(data: object) -> RefundAsk:
    """The refund in decoded JSON ``data`` (``None``: an empty body, a full refund), or a 422.

    The codes for a malformed field are ours: Checkout.com documents ``amount_invalid``,
    ``reference_invalid`` and ``metadata_invalid`` style codes without saying which field check gives which.
    """
    if data is None:
        return RefundAsk(None, None, {})
    if not isinstance(data, dict):
        raise invalid("request_body_malformed")
    amount = data.get("amount")
    if amount is not None and (
        isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= _MAX_AMOUNT
    ):
        raise invalid("amount_invalid")
    reference = data.get("reference")
    if reference is not None and (not isinstance(reference, str) or len(reference) > MAX_REFERENCE):
        raise invalid("reference_invalid")
    metadata = data.get("metadata")
    if metadata is None:
        metadata = {}
    # "this object only allows one level of depth, so cannot accept non-primitive data types such as
    # objects or arrays" (RefundRequest.yaml).
    if not isinstance(metadata, dict) or any(isinstance(value, dict | list) for value in metadata.values()):
        raise invalid("metadata_invalid")
    return RefundAsk(amount, reference, dict(metadata))
