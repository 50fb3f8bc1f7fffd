"""The gateway simulator (CONTRACT §7): a fake payment processor at the HTTP level.

It is an independent witness (STYLE rule 12): it never imports refundwatch's gateway adapters and
speaks each processor's wire protocol as written from the processor's docs and official SDK.

Processors, one package each beside the shared ``faults``, ``state`` (ledger), ``webhooks``
(delivery), ``control`` and ``asgi`` modules:

- ``stripe/``: ``/stripe`` (``POST /v1/refunds``, ``GET /v1/refunds[/{id}]``, ``GET /v1/balance``).
- ``adyen/``: ``/adyen/v72`` (``POST /payments/{paymentPspReference}/refunds``, ``POST /paymentMethods``).
  Refunds are answered ``201 received`` (ledger ``pending``); after ``settle_ms`` a ``REFUND``
  notification (``success=false`` for refunds planned pending → failed), then, for refunds failing
  after success, ``REFUND_FAILED`` or (``reversal_rate``) ``REFUNDED_REVERSED``. Notifications are
  HMAC-signed per item, batched per endpoint and retried until answered ``[accepted]``.

Control API (no authentication, JSON):

- ``POST /_control/faults`` ``{processor?, latency_ms, jitter_ms, error_rate, timeout_rate,
  reset_rate, outage, pending_rate, fail_later_rate, reversal_rate, settle_ms, timeout_ms,
  webhook_duplicate_rate, webhook_drop_rate, malformed_rate, idempotency_retention_seconds}``:
  every field optional;
  without ``processor`` it applies to all processors; fields not given keep their value. Answers
  every processor's config, as does ``GET /_control/faults``. Per request, one roll picks:
  ``error_rate`` (5xx, nothing executed), ``reset_rate`` (connection dropped; half after executing,
  half before), ``timeout_rate`` (executed, then the answer hangs ``timeout_ms``). ``outage``
  answers 503 at once. ``pending_rate`` of refunds start pending and settle after ``settle_ms``;
  ``fail_later_rate`` of refunds end up failed after ``settle_ms`` (pending → failed, or succeeded
  → failed; ``reversal_rate`` of the latter are reversed instead, where the processor tells the two
  apart); ``webhook_duplicate_rate`` of webhook events are delivered twice, and
  ``webhook_drop_rate`` of them never (lost).
  ``malformed_rate`` of successful refund creations (fresh or replayed) are executed and saved as
  usual, but the 2xx answer arrives mangled, as through a broken proxy: at random its body cut in
  half, or labelled ``Content-Encoding: gzip`` without being compressed.
  ``idempotency_retention_seconds`` is how long an idempotency key is remembered (default: the
  processor's own, Stripe 86400; Adyen 31 days, PayPal 45 days, Checkout.com and Square 1 day,
  Braintree 0, it has no keys). An older key is forgotten: the same key executes a new refund (a
  second ledger row), as the real processor would. Within it, a key that arrives again returns the
  first answer and adds no row.
- ``POST /_control/payments`` ``{processor, payment_reference, amount, currency}`` → 201 (same data
  again: 201; different data: 409). ``GET /_control/payments?processor=`` lists them with
  ``refunded`` and ``refundable``.
- ``GET /_control/ledger?processor=`` → one row per executed refund: ``{processor,
  payment_reference, gateway_refund_id, idempotency_key, amount, currency, status}``, ``status``
  being the simulator's generic one (``pending``, ``succeeded``, ``failed``, ``reversed``).
- ``GET /_control/webhooks?processor=&connection=`` → deliveries ``{event_id, type, processor,
  connection, url, status_code, attempts, state, error, duplicate, created}``.
- ``POST /_control/reset`` clears payments, refunds, ledger, idempotency keys, pending settlements,
  webhook deliveries and faults (retention back to each processor's default). ``GET /_control/health`` → 200.
"""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
