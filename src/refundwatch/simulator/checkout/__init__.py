"""The Checkout.com simulator: ``/checkout`` (``handlers``), its wire format (``wire``), resources
(``resources``) and signed webhooks (``notifications``)."""

from .handlers import PROCESSOR, CheckoutSimulator

__all__ = ["PROCESSOR", "CheckoutSimulator"]
