"""Adyen under ``/adyen/v72``: ``POST /payments/{paymentPspReference}/refunds`` and ``POST /paymentMethods``.

``handlers`` holds the endpoints and the refunds' asynchronous life over the shared store and
faults; ``notifications`` the batched, HMAC-signed webhook delivery; ``wire`` the pure wire format.
"""

from .handlers import PROCESSOR, AdyenSimulator, not_found

__all__ = ["PROCESSOR", "AdyenSimulator", "not_found"]
