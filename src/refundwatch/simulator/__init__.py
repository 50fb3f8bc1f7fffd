"""The gateway simulator (CONTRACT §7): a fake payment processor at the HTTP level.

It is an independent witness (STYLE rule 12): it never imports refundwatch's gateway adapters and
speaks each processor's wire protocol as written from the processor's docs and official SDK.

Processors, one package each beside the shared ``faults``, ``state`` (ledger), ``webhooks``
(delivery), ``control`` and ``asgi`` modules:

- ``stripe/``: ``/stripe`` (``POST /v1/refunds``, ``GET /v1/refunds[/{id}]``, ``GET /v1/balance``;
  ``GET /v1/payouts[/{id}]`` and ``GET /v1/balance_transactions[?payout=]`` over the settlement lines,
  ``payout.paid`` webhooks: ``stripe/payouts.py``, ``stripe/payout_api.py``).
- ``adyen/``: ``/adyen/v72`` (``POST /payments/{paymentPspReference}/refunds``, ``POST /paymentMethods``).
  Refunds are answered ``201 received`` (ledger ``pending``); after ``settle_ms`` a ``REFUND``
  notification (``success=false`` for refunds planned pending → failed), then, for refunds failing
  after success, ``REFUND_FAILED`` or (``reversal_rate``) ``REFUNDED_REVERSED``. Notifications are
  HMAC-signed per item, batched per endpoint and retried until answered ``[accepted]``, on Adyen's
  documented schedule: 9, 18 and 27 s after the first attempt, then after 2, 5, 10, 15, 30 minutes,
  1, 2, 4, 8 hours, then every 8 hours until 30 days have passed (100 attempts); unacknowledged by
  then, the delivery has ``failed``.
- ``paypal/``: ``/paypal`` (``POST /v1/oauth2/token``; ``POST /v2/payments/captures/{id}/refund``,
  ``GET /v2/payments/refunds/{id}``, ``GET /v2/payments/captures/{id}``, ``GET /v2/checkout/orders/{id}``
  (the capture's order, listing its refunds); ``GET
  /v1/notifications/webhooks/{id}`` for health checks, ``POST /v1/notifications/verify-webhook-signature``,
  the signing certificate at ``GET /v1/notifications/certs/CERT-360caa42-fca2a594-<8 hex>``). Every call
  but the token call needs a live bearer token (``token_ttl_seconds``). Refunds answer ``COMPLETED`` or
  (``pending_rate``) ``PENDING`` with reason ``ECHECK``; events PAYMENT.CAPTURE.REFUNDED,
  PAYMENT.REFUND.PENDING, PAYMENT.REFUND.FAILED, PAYMENT.CAPTURE.REVERSED, signed with RSA-SHA256 by a
  certificate of a test CA (``--paypal-cert-dir``, ``--public-url``), each attempt a new transmission,
  re-sent 25 times over 72 hours (``webhook_retry_scale``). ``/_control/paypal``: ``GET tokens``
  (``{issued, active}``), ``POST tokens/expire``, ``GET ca.pem``, ``POST captures/{id}/issue``
  (``{"issue": <a captures.refund-422 issue or null>}``). Details in ``paypal/handlers.py``.
- ``checkout/``: ``/checkout`` (``POST /payments/{id}/refunds`` answered ``202 {action_id, reference,
  _links}``, accepted only; ``GET /payments/{id}`` with its balances, ``GET /payments/{id}/actions``,
  ``GET /event-types`` and ``GET /workflows/event-types``), ``Authorization: Bearer sk_…`` or the bare
  key. ``Cko-Idempotency-Key`` keeps only a 202 that reached the client (Checkout.com keeps keys only
  for 2xx answers): after a timeout, a reset after executing or an executed 5xx
  (``executed_error_share``) the same key executes again. 403 (no body) when nothing is left to
  refund, 422 ``refund_amount_exceeds_balance`` beyond it, 409 while the same key is in flight. After
  ``settle_ms`` ``payment_refunded`` or ``payment_refund_declined`` (``payment_refund_pending`` first for
  ``pending_rate``), signed ``Cko-Signature`` (hex HMAC-SHA256 of the body with the connection's
  ``webhook_signature_key``), with ``Authorization: <webhook_authorization>`` when the connection has
  one, re-sent 10 times over about 16.5 hours (``webhook_retry_scale``). Payment references are
  ``pay_`` ids. Details in ``checkout/handlers.py``.

Control API (no authentication, JSON):

- ``POST /_control/faults`` ``{processor?, latency_ms, jitter_ms, error_rate, timeout_rate,
  reset_rate, outage, pending_rate, fail_later_rate, reversal_rate, settle_ms, timeout_ms,
  webhook_duplicate_rate, webhook_drop_rate, malformed_rate, idempotency_retention_seconds,
  webhook_retry_scale, token_ttl_seconds, executed_error_share}``:
  every field optional;
  without ``processor`` it applies to all processors; fields not given keep their value. Answers
  every processor's config, as does ``GET /_control/faults``. Per request, one roll picks:
  ``error_rate`` (5xx, nothing executed), ``reset_rate`` (connection dropped; half after executing,
  half before), ``timeout_rate`` (executed, then the answer hangs ``timeout_ms``). ``outage``
  answers 503 at once. ``pending_rate`` of refunds start pending and settle after ``settle_ms``;
  ``fail_later_rate`` of refunds end up failed after ``settle_ms`` (pending → failed, or succeeded
  → failed; ``reversal_rate`` of the latter are reversed instead, where the processor tells the two
  apart); ``webhook_duplicate_rate`` of webhook events are delivered twice, and
  ``webhook_drop_rate`` of them never (lost). ``executed_error_share`` (default 0) of the ``error_rate``
  5xx answers come after the request executed, for processors that keep no idempotent result for a
  5xx (only Checkout.com takes it).
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
  ``webhook_retry_scale`` (0 to 1, default 1) runs a processor's documented webhook retry schedule
  (Adyen's, PayPal's, above) at that fraction of real time: 0.001 turns Adyen's 9 s into 9 ms and its
  8 hours into 29 s, 0 retries at once; it applies from the next wait. Stripe keeps its short test
  schedule (0.5, 1, 2, 4 s). ``token_ttl_seconds`` (default 32400, PayPal's ``expires_in``) is how long
  an OAuth token lives, for processors that issue them.
- ``GET /_control/webhooks?processor=&connection=`` → deliveries ``{event_id, type, processor,
  connection, url, status_code, attempts, state, error, duplicate, created, attempt_log,
  next_attempt_at}``; ``state`` is ``pending`` (being sent or waiting to retry), ``delivered`` or
  ``failed`` (schedule ended); ``attempt_log`` lists every POST ``{attempt, at, waited, status_code,
  error, acknowledged}`` (``at`` Unix time, ``waited`` the scaled seconds slept before it);
  ``next_attempt_at`` is when a waiting retry goes out.
- ``GET /_control/reports/{processor}`` (``stripe``, ``adyen``, ``paypal``; others: 404 ``no_report``) →
  the processor's settlement report for everything in its ledger so far, as a CSV in its own format
  (``settlement`` beside each processor's package, shared code in ``settlement.py``): Stripe's itemized
  payout reconciliation report (charges with their fee, refunds with a negative gross in major units,
  ``source_id`` the refund id, ``refund_metadata[refundwatch_refund_id]``, ``refund_failure`` rows for
  refunds failed after success, automatic payouts per currency, cut off at midnight UTC and at each
  ``payouts/pay``); Adyen's Settlement details report (Settled, Refunded, RefundedReversed, a Fee and a
  MerchantPayout line per batch, daily batches cut off at midnight Europe/Amsterdam and at each
  ``reports/adyen/publish``, times in CET/CEST); PayPal's Settlement report, STL (T0006 payments, T1107
  refunds with invoice_id and custom_id, T1106 reversals giving a refund's money back, amounts x100 in
  every currency, a section per day of America/Los_Angeles: ``paypal/reports.py``). Only refunds that
  succeeded are settled. Reports are cumulative and stable: a line comes again, byte for byte, in
  every later report.
- ``POST /_control/reports/adyen/publish`` ``{connection?, batch?}`` closes an Adyen merchant account's
  current batch before midnight and announces ``settlement_detail_report_batch_<N>.csv`` with a signed
  ``REPORT_AVAILABLE`` (``batch``: announce a published one again); the file downloads from
  ``GET /adyen/reports/download/MerchantAccount/{account}/{file}`` in basic auth with the connection's
  ``report_username``/``report_password``; ``GET /_control/reports/adyen/batches?connection=`` lists
  the published batches (``adyen/reports.py``).
- ``POST /_control/discrepancies`` ``{processor, kind, gateway_refund_id?, amount?,
  payment_reference?}`` → 201 ``{processor, kind, gateway_refund_id, amount, payment_reference,
  created}``; ``GET /_control/discrepancies?processor=`` lists them. Kinds: ``drop_line`` (the refund's
  line is left out), ``change_amount`` (its line reports ``amount``), ``foreign_refund`` (a refund of
  ``amount`` on ``payment_reference`` made outside refundwatch; the answer names its new refund id),
  ``fail_after_success`` (a refund failure line, booked now), ``duplicate_line`` (its line twice),
  ``shift_cutoff`` (its line in the next day's payout or batch). They accumulate and apply to every
  later report; they change the settlement data only, not the refund objects or webhooks. Refused with
  400 and a ``code`` (``invalid_body``, ``unknown_field``, ``invalid_processor``, ``invalid_kind``,
  ``missing_gateway_refund_id``, ``missing_amount``, ``missing_payment_reference``, ``invalid_amount``,
  ``unexpected_field``), 404 (``unknown_refund``, ``unknown_payment``) or 409 (``refund_not_settled``: the
  refund never succeeded, it has no line).
- ``POST /_control/payouts/pay`` ``{processor: "stripe"}`` → 200 ``{processor, cut_off, paid: [{connections,
  payout}]}``: cuts Stripe's running payout period at the next whole second (every line booked before
  the call is in it), pays its payouts and sends ``payout.paid`` to each connection of each account
  (webhook faults apply). Periods also close at midnight UTC, with the same webhooks. One payout per
  account (API key), period and currency; it exists once its period closed and is ``paid`` at once,
  ``created`` = ``arrival_date`` = the cut-off (a real one is ``in_transit`` until arrival). The report's
  ``automatic_payout_id`` and ``automatic_payout_effective_at_utc`` name the same payout. Other
  processors: 404 ``no_payouts``.
- ``POST /_control/reset`` clears payments, refunds, ledger, idempotency keys, pending settlements,
  discrepancies, payout cut-offs, webhook deliveries and faults (retention back to each processor's default).
  ``GET /_control/health`` → 200.
"""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
