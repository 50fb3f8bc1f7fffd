"""Processor name -> adapter. Adding a processor is one package plus one line here."""

from __future__ import annotations

from refundwatch.gateways.adyen import AdyenGateway
from refundwatch.gateways.base import Gateway
from refundwatch.gateways.checkout import CheckoutGateway
from refundwatch.gateways.paypal import PayPalGateway
from refundwatch.gateways.stripe import StripeGateway

_GATEWAYS: dict[str, Gateway] = {
    "stripe": StripeGateway(),
    "adyen": AdyenGateway(),
    "paypal": PayPalGateway(),
    "checkout": CheckoutGateway(),
}

KNOWN_PROCESSORS = ("stripe", "adyen", "paypal", "checkout", "square", "braintree")


def get_gateway(processor: str) -> Gateway:
    try:
        return _GATEWAYS[processor]
    except KeyError:
        raise LookupError(f"processor {processor!r} is not supported yet") from None


def supported_processors() -> tuple[str, ...]:
    return tuple(_GATEWAYS)
