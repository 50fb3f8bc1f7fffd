"""Words people read for the machine words the data holds: statuses, reasons, error codes, ids, times.

The machine word stays on the page in a ``title`` (and in filters and exports), so a label can be
matched back to the API and the logs.
"""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup

STATUS_LABELS = {
    "pending_approval": "Waiting for approval",
    "rejected": "Rejected",
    "queued": "Queued",
    "submitting": "Sending to processor",
    "processing": "Processor is working on it",
    "succeeded": "Refunded",
    "failed": "Failed",
    "canceled": "Canceled",
    "reversed": "Reversed by processor",
    "manual_review": "Needs manual review",
}
REASON_LABELS = {
    "requested_by_customer": "Customer asked",
    "duplicate": "Duplicate payment",
    "fraudulent": "Fraud",
    "return": "Goods returned",
    "other": "Other",
}
ERROR_LABELS = {
    "amount_exceeds_refundable": "More than is left to refund",
    "already_refunded": "Already refunded",
    "charge_already_refunded": "Already refunded",
    "payment_not_found": "Processor does not know the payment",
    "unknown_payment": "Unknown payment",
    "currency_mismatch": "Wrong currency",
    "invalid_request": "Processor refused the request",
    "auth_failed": "Processor refused our credentials",
    "rate_limited": "Processor asked us to slow down",
    "gateway_unavailable": "Processor unavailable",
    "timeout": "Processor did not answer in time",
    "connection_error": "Could not reach the processor",
    "declined": "Declined by processor",
    "idempotency_conflict": "Processor is still handling the same request",
    "response_mismatch": "Processor reported a different amount",
    "processor_error": "Processor error",
    "outcome_unknown": "Outcome unknown",
    "invalid_amount": "Amount not accepted",
    "amount_not_supported": "Amount the processor cannot take",
    "amount_over_role_limit": "Over your role's limit",
    "amount_too_large": "Amount too large",
    "connection_disabled": "Connection disabled",
    "unknown_connection": "Unknown connection",
}

BREAK_LABELS = {
    "amount_mismatch": "Different amount",
    "currency_mismatch": "Different currency",
    "missing_local": "Unknown to refundwatch",
    "missing_settlement": "Missing from settlement",
    "reversed_after_success": "Reversed after success",
    "duplicate_line": "Duplicate line",
    "unmapped": "Unknown line type",
    "over_refunded": "Payment over-refunded",
    "invoice_over_refunded": "Invoice over-refunded",
}
RESOLUTION_LABELS = {
    "accepted": "Accepted",
    "linked": "Linked to a refund",
    "written_off": "Written off",
    "matched": "Matched later",
}
AGE_LABELS = {
    "under_1d": "Under a day",
    "1d_to_7d": "1 to 7 days",
    "7d_to_30d": "7 to 30 days",
    "over_30d": "Over 30 days",
}


def _humanise(word: str) -> str:
    return word.replace("_", " ").capitalize()


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, _humanise(status))


def reason_label(reason: str) -> str:
    return REASON_LABELS.get(reason, _humanise(reason))


def error_label(code: str) -> str:
    return ERROR_LABELS.get(code, _humanise(code))


def break_label(kind: str) -> str:
    return BREAK_LABELS.get(kind, _humanise(kind))


def resolution_label(resolution: str) -> str:
    return RESOLUTION_LABELS.get(resolution, _humanise(resolution))


def age_label(bucket: str) -> str:
    return AGE_LABELS.get(bucket, _humanise(bucket))


def labelled(text: str, machine: str) -> Markup:
    """A label with its machine word on hover."""
    return Markup('<span title="{}">{}</span>').format(machine, text)


def status_badge(status: str) -> Markup:
    return Markup('<span class="status status-{}" title="{}">{}</span>').format(
        status, status, status_label(status)
    )


def short_id(full: object) -> str:
    """The last 8 hex digits: a UUIDv7 starts with a millisecond timestamp, which refunds made close
    together share, while its end is random."""
    return str(full).replace("-", "")[-8:]


def id_chip(full: object) -> Markup:
    """A short id people can read and copy, with the full id on hover and in ``data-copy``."""
    text = str(full)
    return Markup('<code class="id" title="{}" data-copy="{}">…{}</code>').format(text, text, short_id(text))


def when(moment: dt.datetime | str | None, part: str = "full", hover: str = "") -> Markup:
    """A time in UTC, which static/js/localtime.js rewrites into the viewer's own zone; UTC on hover.

    ``part`` picks a compact form, without the zone (which goes to the tooltip): ``"time"``
    (``12:34:56``), ``"hm"`` (``12:34``) or ``"date-hm"`` (``2026-12-06 12:34``). ``hover`` is put
    before the UTC time in the tooltip. An ISO 8601 string (the audit chain's checkpoints) is read as
    one; a string that is not a time is shown as it is.
    """
    if moment is None:
        return Markup("—")
    if isinstance(moment, str):
        try:
            moment = dt.datetime.fromisoformat(moment)
        except ValueError:
            return Markup("{}").format(moment)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
    utc = moment.astimezone(dt.UTC)
    full = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    part = part if part in _COMPACT else ""
    text = utc.strftime(_COMPACT[part]) + " UTC" if part else full
    return Markup('<time datetime="{}" title="{}" data-local="{}">{}</time>').format(
        utc.isoformat().replace("+00:00", "Z"), f"{hover}{full}", part, text
    )


_COMPACT = {"time": "%H:%M:%S", "hm": "%H:%M", "date-hm": "%Y-%m-%d %H:%M"}
