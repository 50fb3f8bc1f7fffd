"""The control API under ``/_control`` (CONTRACT §7): faults, payments, ledger, webhooks, settlement
reports and their discrepancies, reset.

No authentication: the simulator is a loopback test tool.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.exceptions import ValidationException
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from .connections import Connections
from .faults import PROCESSORS, FaultConfigError, Faults
from .settlement import DiscrepancyError, Reports
from .state import PaymentConflictError, Store
from .webhooks import WebhookSender

__all__ = ["build_control_router"]


_CHECKOUT_PAYMENT_ID = re.compile(r"^pay_[A-Za-z0-9_]{26}$")
# refundwatch's own bound (its API and its settlement import): a bigger payment's report line could
# never be imported, and with it no later report of that processor.
MAX_AMOUNT = 10**15


class _BadRequestError(ValueError):
    pass


def _error(status: int, message: str, code: str | None = None) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"error": message}
    if code is not None:
        body["code"] = code
    return Response(body, status_code=status)


async def _json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise _BadRequestError(f"body is not valid JSON: {exc}") from exc
    except RecursionError:  # msgspec's answer to nesting deeper than it follows
        raise _BadRequestError("body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise _BadRequestError("body must be a JSON object")
    return data


def _payment_fields(data: dict[str, Any]) -> tuple[str, str, int, str, float]:
    unknown = set(data) - {"processor", "payment_reference", "amount", "currency", "settle_after_seconds"}
    if unknown:
        raise _BadRequestError(f"unknown field(s): {', '.join(sorted(unknown))}")
    processor = data.get("processor")
    reference = data.get("payment_reference")
    amount = data.get("amount")
    currency = data.get("currency")
    if processor not in PROCESSORS:
        raise _BadRequestError(f"processor must be one of {', '.join(PROCESSORS)}")
    if not isinstance(reference, str) or not reference or len(reference) > 255:
        raise _BadRequestError("payment_reference must be a non-empty string of at most 255 characters")
    if processor == "checkout" and not _CHECKOUT_PAYMENT_ID.match(reference):
        # Checkout.com's refund path takes only ``pay_`` ids (paths-payments-id-refunds.yaml).
        raise _BadRequestError("a checkout payment_reference is a payment id: pay_ and 26 letters or digits")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise _BadRequestError(f"amount must be a positive integer in minor units, at most {MAX_AMOUNT}")
    if (
        not isinstance(currency, str)
        or len(currency) != 3
        or not currency.isalpha()
        or not currency.isascii()
    ):
        raise _BadRequestError("currency must be a three-letter ISO 4217 code")
    settle_after = data.get("settle_after_seconds", 0)
    if (
        isinstance(settle_after, bool)
        or not isinstance(settle_after, int | float)
        or not 0 <= settle_after <= 1e9
    ):
        raise _BadRequestError("settle_after_seconds must be a number of seconds, 0 or more")
    return str(processor), reference, amount, currency, float(settle_after)


def build_control_router(
    store: Store, faults: Faults, webhooks: WebhookSender, reports: Reports, connections: Connections
) -> Router:
    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/faults")
    async def get_faults() -> dict[str, dict[str, Any]]:
        return faults.snapshot()

    @post("/faults", status_code=HTTP_200_OK)
    async def set_faults(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            return Response(faults.update(await _json_object(request)))
        except (_BadRequestError, FaultConfigError) as exc:
            return _error(400, str(exc), "invalid_body")

    @post("/payments", status_code=HTTP_201_CREATED)
    async def register_payment(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            payment = store.register_payment(*_payment_fields(await _json_object(request)))
        except _BadRequestError as exc:
            return _error(400, str(exc), "invalid_body")
        except PaymentConflictError as exc:
            return _error(409, str(exc), "payment_conflict")
        return Response(payment.as_dict(), status_code=HTTP_201_CREATED)

    @get("/payments")
    async def list_payments(processor: str | None = None) -> list[dict[str, Any]]:
        return [p.as_dict() for p in store.payments.values() if processor is None or p.processor == processor]

    @get("/ledger")
    async def ledger(processor: str | None = None) -> Response[Any]:
        if processor is not None and processor not in PROCESSORS:
            return _error(404, f"unknown processor {processor!r}", "unknown_processor")
        return Response(store.ledger_rows(processor))

    @get("/webhooks")
    async def deliveries(processor: str | None = None, connection: str | None = None) -> list[dict[str, Any]]:
        return webhooks.list(connection=connection, processor=processor)

    @get("/reports/{processor:str}")
    async def report(
        processor: str, connection: str | None = None, since: int | None = None
    ) -> Response[Any]:
        if processor not in reports.processors:
            if processor in PROCESSORS:
                message = (
                    f"{processor} offers no settlement report here (only {', '.join(reports.processors)})"
                )
                return _error(404, message, "no_report")
            return _error(404, f"unknown processor {processor!r}", "unknown_processor")
        credential = None
        if connection is not None:  # one connection's (merchant account's) report: its refunds only
            found = next((c for c in connections.for_processor(processor) if c.name == connection), None)
            # The credential its refunds were made with: an API key, PayPal's OAuth client id, or
            # Checkout.com's secret key.
            credential = (
                (found.get("api_key") or found.get("client_id") or found.get("secret_key"))
                if found is not None
                else None
            )
            if not credential:
                return _error(
                    404,
                    f"no {processor} connection {connection!r} in the connections file",
                    "unknown_connection",
                )
        body, media_type, filename = reports.report(processor, credential, since)
        return Response(
            body,
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @post("/discrepancies", status_code=HTTP_201_CREATED)
    async def add_discrepancy(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            found = reports.inject(await _json_object(request))
        except _BadRequestError as exc:
            return _error(400, str(exc), "invalid_body")
        except DiscrepancyError as exc:
            return _error(exc.status, str(exc), exc.code)
        return Response(found.as_dict(), status_code=HTTP_201_CREATED)

    @get("/discrepancies")
    async def list_discrepancies(processor: str | None = None) -> list[dict[str, Any]]:
        return [d.as_dict() for d in reports.discrepancies if processor is None or d.processor == processor]

    @post("/reset", status_code=HTTP_200_OK)
    async def reset() -> dict[str, bool]:
        store.reset()
        reports.reset()
        faults.reset()
        await webhooks.reset()
        return {"reset": True}

    return Router(
        path="/_control",
        route_handlers=[
            health,
            get_faults,
            set_faults,
            register_payment,
            list_payments,
            ledger,
            deliveries,
            report,
            add_discrepancy,
            list_discrepancies,
            reset,
        ],
        exception_handlers={ValidationException: _bad_parameter},
    )


def _bad_parameter(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """A query parameter of the wrong type (``?since=abc``): 400 with a code, as every other refusal."""
    return _error(400, str(exc.detail), "invalid_parameter")
