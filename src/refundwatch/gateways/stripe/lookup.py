"""Finding the refund an attempt created: ``GET /v1/refunds`` on the payment, matched on metadata.

Checked against stripe 16.1.0: list parameters in ``stripe/params/_refund_list_params.py`` (``charge``,
``payment_intent``, ``limit`` 1-100, ``starting_after``), the list envelope in ``stripe/_list_object.py``
(``object: "list"``, ``data``, ``has_more``, ``url``), newest first.

The matching rule, per attempt (one refundwatch refund can have several Stripe refunds over its life:
re_1 failed, retried with a new key, re_2):

- candidates are the payment's refunds whose metadata carries this refundwatch refund id;
- the match is the candidate that also carries this attempt's idempotency key;
- refunds created before refundwatch sent the key in metadata carry only the refund id: such a legacy
  refund is the match only when it is the one and only candidate;
- no candidate at all, or only candidates of other attempts: Stripe confirms none exists (None);
- anything else cannot be decided safely (two refunds with this key, i.e. a re-send past the key's
  retention paid twice; or a legacy refund beside others): :class:`AmbiguousLookupError`, for a person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from refundwatch.gateways.base import RefundRequest
from refundwatch.gateways.stripe.transformers import (
    METADATA_IDEMPOTENCY_KEY,
    METADATA_REFUND_ID,
    MalformedError,
    StripeRefund,
    parse_refund,
    payment_param,
)

PAGE_LIMIT: Final = 100  # Stripe's maximum page size
MAX_PAGES: Final = 20  # past 2,000 refunds on one payment we cannot tell "none": the caller keeps waiting


class AmbiguousLookupError(ValueError):
    """Stripe holds refunds of this refund that no rule can attribute to this attempt safely."""


@dataclass(frozen=True, slots=True)
class RefundPage:
    refunds: list[StripeRefund]
    has_more: bool


def list_query(request: RefundRequest, starting_after: str | None = None) -> dict[str, str]:
    """The query of one ``GET /v1/refunds`` page over the request's payment."""
    query = {payment_param(request.payment_reference): request.payment_reference, "limit": str(PAGE_LIMIT)}
    if starting_after is not None:
        query["starting_after"] = starting_after
    return query


def parse_page(data: object) -> RefundPage:
    """Validate one list page. MalformedError with a short message when it is not one."""
    if not isinstance(data, dict) or data.get("object") != "list":
        raise MalformedError("not a Stripe list")
    items, has_more = data.get("data"), data.get("has_more")
    if not isinstance(items, list) or not isinstance(has_more, bool):
        raise MalformedError("list has no data array or has_more flag")
    refunds = [parse_refund(item) for item in items]
    if has_more and not refunds:
        raise MalformedError("list says it has more but the page is empty")
    return RefundPage(refunds, has_more)


def match_attempt(refunds: Sequence[StripeRefund], request: RefundRequest) -> StripeRefund | None:
    """The refund this attempt created, by the rule in the module docstring."""
    candidates = [r for r in refunds if r.metadata.get(METADATA_REFUND_ID) == request.refund_id]
    keyed = [r for r in candidates if r.metadata.get(METADATA_IDEMPOTENCY_KEY) == request.idempotency_key]
    legacy = [r for r in candidates if METADATA_IDEMPOTENCY_KEY not in r.metadata]
    if len(keyed) > 1:
        ids = ", ".join(r.id for r in keyed)
        raise AmbiguousLookupError(f"{len(keyed)} Stripe refunds carry this attempt's key ({ids})")
    if keyed:
        return keyed[0]
    if len(candidates) == 1 and legacy:
        return legacy[0]
    if legacy:
        ids = ", ".join(r.id for r in legacy)
        raise AmbiguousLookupError(f"Stripe refunds without an attempt key ({ids}) beside other attempts")
    return None
