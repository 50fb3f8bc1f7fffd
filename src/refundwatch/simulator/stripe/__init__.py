"""Stripe under ``/stripe``: ``POST /v1/refunds``, ``GET /v1/refunds[/{id}]``, ``GET /v1/balance``.

``handlers`` holds the endpoints over the shared store, faults and webhook sender; ``wire`` the pure
wire format (form parameters in, Stripe's JSON objects, errors and webhook signatures out).
"""

from .handlers import PROCESSOR, StripeSimulator, unrecognized_url

__all__ = ["PROCESSOR", "StripeSimulator", "unrecognized_url"]
