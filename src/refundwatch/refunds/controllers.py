"""HTTP API for refunds and payments (CONTRACT §4). Handlers parse, call one service, render."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.openapi.spec import Example
from litestar.params import Parameter

from refundwatch.auth.apikeys import Principal
from refundwatch.db.models import Payment, Refund
from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.payments.ledger import GroupLedger, payment_view
from refundwatch.payments.services import PaymentInput, create_payment
from refundwatch.refunds import services
from refundwatch.refunds.execution import sync_refund
from refundwatch.refunds.intake import create_refund
from refundwatch.refunds.queries import MAX_PAGE, RefundFilter, list_refunds
from refundwatch.refunds.schemas import (
    GroupLedgerOut,
    PaymentCreate,
    PaymentDetail,
    PaymentOut,
    RefundCreate,
    RefundList,
    RefundOut,
)
from refundwatch.refunds.states import Source, Status, Trigger
from refundwatch.refunds.syncing import stamp_synced
from refundwatch.refunds.views import refund_out
from refundwatch.runtime import Runtime
from refundwatch.web.auth import api_actor, principal, require_idempotency_key, require_scopes
from refundwatch.web.state import runtime_of
from refundwatch.web.strict import require_integer_amount, require_rfc3339_captured_at

# An RFC 3339 time. Taken as text and parsed strictly: lenient decoding would read "0.5" as a Unix time.
Moment = Annotated[str | None, Parameter(schema_extra={"format": "date-time"})]


def _moment(name: str, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = msgspec.convert(value, dt.datetime)
        # Compared in UTC: an offset that takes it before year 1 or past 9999 there cannot be.
        return moment.astimezone(dt.UTC) if moment.tzinfo is not None else moment
    except (msgspec.ValidationError, OverflowError):
        raise ValidationFailed(f"{name} must be an RFC 3339 time such as 2026-12-01T00:00:00Z") from None


READ, WRITE, PAY = {"scopes": ["refunds:read"]}, {"scopes": ["refunds:write"]}, {"scopes": ["payments:write"]}


async def _name(rt: Runtime, connection_id: UUID) -> str:
    info = await rt.connections.by_id(connection_id)
    return info.name if info else "?"


async def _out(rt: Runtime, refund: Refund) -> RefundOut:
    refund, events = await services.get_refund(rt, refund.id)
    return refund_out(refund, events, await _name(rt, refund.connection_id))


def _groups(found: list[GroupLedger] | None) -> list[GroupLedgerOut] | None:
    if found is None:
        return None
    return [GroupLedgerOut(**dataclasses.asdict(g)) for g in found]


class RefundController(Controller):
    path = "/api/v1"
    dependencies = {"who": Provide(principal)}
    guards = [require_scopes]
    tags = ["refunds"]

    @post("/refunds", opt=WRITE, status_code=201, guards=[require_idempotency_key, require_integer_amount])
    async def create(
        self,
        request: Request[Any, Any, Any],
        who: Principal,
        data: RefundCreate,
        idempotency_key: Annotated[
            str,
            Parameter(
                header="Idempotency-Key",
                min_length=1,
                max_length=255,
                pattern=r"\S",  # not blank
                description="The same key with the same body returns the same refund and creates "
                "nothing; with a different body it is 409 idempotency_key_reused. Scoped per API client.",
                examples=[Example(value="return-4711")],
            ),
        ],
    ) -> Response[RefundOut]:
        rt = runtime_of(request)
        intake = await create_refund(
            rt,
            data,
            scope=who.scope_key,
            created_by=who.identity,
            idempotency_key=idempotency_key,
            actor=api_actor(request, who),
            source=Source.API,
        )
        headers = {} if intake.created else {"Idempotent-Replayed": "true"}
        if intake.events is not None:  # just created: everything is in hand, no need to read it back
            out = refund_out(intake.refund, intake.events, await _name(rt, intake.refund.connection_id))
        else:
            out = await _out(rt, intake.refund)
        return Response(out, status_code=201 if intake.created else 200, headers=headers)

    @get("/refunds/{refund_id:uuid}", opt=READ)
    async def read(self, request: Request[Any, Any, Any], who: Principal, refund_id: UUID) -> RefundOut:
        rt = runtime_of(request)
        refund, events = await services.get_refund(rt, refund_id)
        return refund_out(refund, events, await _name(rt, refund.connection_id))

    @get("/refunds", opt=READ)
    async def index(
        self,
        request: Request[Any, Any, Any],
        who: Principal,
        status: Status | None = None,
        connection: str | None = None,
        payment_reference: str | None = None,
        created_after: Moment = None,
        created_before: Moment = None,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> RefundList:
        rt = runtime_of(request)
        page = await list_refunds(
            rt,
            RefundFilter(
                status,
                connection,
                payment_reference,
                _moment("created_after", created_after),
                _moment("created_before", created_before),
                cursor,
                limit,
            ),
        )
        data = [
            refund_out(r, page.events.get(r.id, []), await _name(rt, r.connection_id)) for r in page.refunds
        ]
        return RefundList(data=data, next_cursor=page.next_cursor, has_more=page.next_cursor is not None)

    @post("/refunds/{refund_id:uuid}/cancel", opt=WRITE, status_code=200)
    async def cancel(self, request: Request[Any, Any, Any], who: Principal, refund_id: UUID) -> RefundOut:
        rt = runtime_of(request)
        refund = await services.command(
            rt, refund_id, Trigger.CANCEL, actor=api_actor(request, who), source=Source.API
        )
        return await _out(rt, refund)

    @post("/refunds/{refund_id:uuid}/retry", opt=WRITE, status_code=200)
    async def retry(self, request: Request[Any, Any, Any], who: Principal, refund_id: UUID) -> RefundOut:
        rt = runtime_of(request)
        refund = await services.command(
            rt, refund_id, Trigger.RETRY, actor=api_actor(request, who), source=Source.API
        )
        return await _out(rt, refund)

    @post("/refunds/{refund_id:uuid}/sync", opt=WRITE, status_code=200)
    async def sync(self, request: Request[Any, Any, Any], who: Principal, refund_id: UUID) -> RefundOut:
        rt = runtime_of(request)
        refund, _ = await services.get_refund(rt, refund_id)  # 404 before touching the processor
        await stamp_synced(rt, refund_id)
        await sync_refund(rt, refund_id, source=Source.SYNC, forced=True)
        return await _out(rt, refund)


def payment_out(payment: Payment, connection: str) -> PaymentOut:
    return PaymentOut(
        id=str(payment.id),
        connection=connection,
        payment_reference=payment.payment_reference,
        amount=payment.amount,
        currency=payment.currency,
        captured_at=payment.captured_at,
        order_id=payment.order_id,
        invoice_id=payment.invoice_id,
        refunded_amount=payment.refunded_amount,
        refundable_amount=payment.amount - payment.reserved_amount,
        created_at=payment.created_at,
    )


class PaymentController(Controller):
    path = "/api/v1"
    dependencies = {"who": Provide(principal)}
    guards = [require_scopes]
    tags = ["payments"]

    @post("/payments", opt=PAY, status_code=201, guards=[require_integer_amount, require_rfc3339_captured_at])
    async def create(
        self, request: Request[Any, Any, Any], who: Principal, data: PaymentCreate
    ) -> Response[PaymentOut]:
        rt = runtime_of(request)
        captured = data.captured_at if data.captured_at.tzinfo else data.captured_at.replace(tzinfo=dt.UTC)
        payment, created = await create_payment(
            rt.db,
            rt.connections,
            PaymentInput(
                data.connection,
                data.payment_reference,
                data.amount,
                data.currency.upper(),
                captured,
                data.order_id,
                data.invoice_id,
            ),
            api_actor(request, who),
        )
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(
            payment_out(payment, data.connection), status_code=201 if created else 200, headers=headers
        )

    @get("/payments/{payment_reference:str}", opt=READ)
    async def read(
        self,
        request: Request[Any, Any, Any],
        who: Principal,
        payment_reference: str,
        connection: Annotated[
            str | None,
            Parameter(description="the payment's connection; needed when the reference exists on several"),
        ] = None,
    ) -> PaymentDetail:
        rt = runtime_of(request)
        view = await payment_view(rt, payment_reference, connection)
        p, ledger = view.payment, view.ledger
        return PaymentDetail(
            id=str(p.id),
            connection=view.connection,
            payment_reference=p.payment_reference,
            amount=p.amount,
            currency=p.currency,
            captured_at=p.captured_at,
            order_id=p.order_id,
            invoice_id=p.invoice_id,
            created_at=p.created_at,
            captured=ledger.captured,
            refunded=ledger.refunded,
            in_flight=ledger.in_flight,
            reversed=ledger.reversed,
            refundable=ledger.refundable,
            refunds=[refund_out(r, view.events.get(r.id, []), view.connection) for r in view.refunds],
            order_ledger=_groups(view.order),
            invoice_ledger=_groups(view.invoice),
        )
