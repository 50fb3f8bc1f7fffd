"""Stripe's payouts under ``/stripe``: ``GET /v1/payouts[/{id}]``, ``GET /v1/balance_transactions``, the
``payout.paid`` webhook, and ``POST /_control/payouts/pay``.

Parameters as stripe-python 16.1 sends them (``_payout_list_params.py``,
``_balance_transaction_list_params.py``): ``limit`` 1-100, ``starting_after``/``ending_before``, ranges as
``created[gte]=``; lists are ``{"object": "list", "data", "has_more", "url"}``, newest first. The same
authentication and faults as the refund reads; ``malformed_rate`` also mangles these 2xx answers.

When a period closes (midnight UTC, or ``POST /_control/payouts/pay``, which cuts the current period at
the next whole second), every account's payouts of that period are paid and announced with a signed
``payout.paid`` event to each connection of the account (dropped and duplicated as the webhook faults say).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.types import ASGIApp

from ..asgi import decode_json, random_id
from ..settlement import Reports, sleep_until
from .handlers import PROCESSOR, StripeSimulator
from .payouts import Payout, payout_object, payout_transactions, payouts_of
from .schedule import Schedule
from .wire import DEFAULT_API_VERSION, StripeError, event_object, signature_header

__all__ = ["StripePayouts"]

_WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
_RANGES = frozenset({"created", "arrival_date", "available_on"})
_PAYOUT_PARAMS = frozenset({"arrival_date", "created", "destination", "status", "payout_method"})
_TRANSACTION_PARAMS = frozenset({"created", "currency", "payout", "source", "type"})
_PAGING = frozenset({"limit", "starting_after", "ending_before", "expand"})
_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "": lambda value, bound: value == bound,
    "gt": lambda value, bound: value > bound,
    "gte": lambda value, bound: value >= bound,
    "lt": lambda value, bound: value < bound,
    "lte": lambda value, bound: value <= bound,
}
_encode = msgspec.json.Encoder().encode
_Pairs = list[tuple[str, str]]


def _invalid(message: str, *, code: str | None = None, param: str | None = None) -> StripeError:
    return StripeError(400, message, code=code, param=param, saved=False)


@dataclass(slots=True)
class _Query:
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    ranges: list[tuple[str, str, int]] = field(default_factory=list)  # (field, operator, bound)

    def keeps(self, obj: dict[str, Any]) -> bool:
        return all(_OPERATORS[op](int(obj[name]), bound) for name, op, bound in self.ranges)


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _invalid(f"Invalid integer: {value}", code="parameter_invalid_integer", param=name) from None


def _parse(pairs: _Pairs, allowed: frozenset[str]) -> _Query:
    query = _Query()
    for name, value in pairs:
        base, _, rest = name.partition("[")
        operator = rest.removesuffix("]")
        if base not in allowed | _PAGING or (rest and base not in _RANGES and base != "expand"):
            raise _invalid(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
        if base == "expand":
            continue  # nothing here expands; the ids stay ids
        if base in _RANGES:
            if operator not in _OPERATORS:
                raise _invalid(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
            query.ranges.append((base, operator, _integer(name, value)))
        elif base == "limit":
            query.limit = _integer("limit", value)
            if not 1 <= query.limit <= 100:
                raise _invalid(
                    "This value must be greater than or equal to 1 and less than or equal to 100.",
                    code="parameter_invalid_integer",
                    param="limit",
                )
        elif base == "starting_after":
            query.starting_after = value
        elif base == "ending_before":
            query.ending_before = value
        else:
            query.values[base] = value
    if query.starting_after and query.ending_before:
        raise _invalid("You may only specify one of these parameters: ending_before, starting_after.")
    return query


def _page(items: list[dict[str, Any]], query: _Query, url: str, noun: str) -> dict[str, Any]:
    """One page of ``items`` (newest first). A page never ends inside a run of one id (a duplicated
    line), so ``starting_after`` that id continues after the whole run."""
    ids = [item["id"] for item in items]
    start, end = 0, len(items)
    cursor = query.starting_after or query.ending_before
    if cursor is not None:
        if cursor not in ids:
            param = "starting_after" if query.starting_after else "ending_before"
            raise StripeError(404, f"No such {noun}: '{cursor}'", code="resource_missing", param=param)
        if query.starting_after:
            start = len(ids) - ids[::-1].index(cursor)
        else:
            end = ids.index(cursor)
            start = max(0, end - query.limit)
    stop = min(end, start + query.limit)
    while query.ending_before is None and 0 < stop < end and ids[stop] == ids[stop - 1]:
        stop += 1
    has_more = start > 0 if query.ending_before else stop < end
    return {"object": "list", "data": items[start:stop], "has_more": has_more, "url": url}


def _next_midnight(now: float) -> int:
    day = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp())


class StripePayouts:
    """Stripe's automatic payouts over the settlement lines of ``reports``, cut by ``schedule``."""

    def __init__(self, stripe: StripeSimulator, reports: Reports, schedule: Schedule) -> None:
        self.stripe = stripe
        self.reports = reports
        self.schedule = schedule
        self._announced: set[tuple[str, str]] = set()  # (api key, payout id)
        self._clock: asyncio.Task[None] | None = None
        stripe.webhooks.on_reset(self.reset)

    def reset(self) -> None:
        self.schedule.reset()
        self._announced.clear()

    # -- reads ------------------------------------------------------------------------------------
    def _payouts(self, api_key: str) -> list[Payout]:
        """The account's payouts, newest first."""
        return payouts_of(self.reports.lines(PROCESSOR, api_key), self.schedule)[::-1]

    def _find(self, api_key: str, payout_id: str, param: str) -> Payout:
        found = next((p for p in self._payouts(api_key) if p.id == payout_id), None)
        if found is None:
            raise StripeError(404, f"No such payout: '{payout_id}'", code="resource_missing", param=param)
        return found

    def list_payouts(self, api_key: str, pairs: _Pairs) -> dict[str, Any]:
        query = _parse(pairs, _PAYOUT_PARAMS)
        status = query.values.get("status")
        livemode = api_key.startswith("sk_live_")
        objects = [payout_object(p, livemode=livemode) for p in self._payouts(api_key)]
        kept = [o for o in objects if query.keeps(o) and status in (None, o["status"])]
        return _page(kept, query, "/v1/payouts", "payout")

    def retrieve_payout(self, api_key: str, payout_id: str, pairs: _Pairs) -> dict[str, Any]:
        _parse(pairs, frozenset())
        return payout_object(self._find(api_key, payout_id, "id"), livemode=api_key.startswith("sk_live_"))

    def list_transactions(self, api_key: str, pairs: _Pairs) -> dict[str, Any]:
        query = _parse(pairs, _TRANSACTION_PARAMS)
        payout_id = query.values.get("payout")
        if payout_id is not None:
            items = payout_transactions(self._find(api_key, payout_id, "payout"))
        else:  # every paid-out balance transaction of the account
            items = [item for p in self._payouts(api_key) for item in payout_transactions(p)]
        wanted = {name: query.values[name] for name in ("currency", "source", "type") if name in query.values}
        kept = [
            item
            for item in items
            if query.keeps(item) and all(str(item[name]) == value for name, value in wanted.items())
        ]
        return _page(kept, query, "/v1/balance_transactions", "balance transaction")

    def router(self) -> Router:
        sim, stripe = self, self.stripe

        @get("/v1/payouts")
        async def list_payouts(request: Request[Any, Any, Any]) -> ASGIApp:
            return await stripe.read(request, sim.list_payouts, mangle=True)

        @get("/v1/payouts/{payout_id:str}")
        async def retrieve_payout(request: Request[Any, Any, Any], payout_id: str) -> ASGIApp:
            return await stripe.read(
                request, lambda key, pairs: sim.retrieve_payout(key, payout_id, pairs), mangle=True
            )

        @get("/v1/balance_transactions")
        async def list_transactions(request: Request[Any, Any, Any]) -> ASGIApp:
            return await stripe.read(request, sim.list_transactions, mangle=True)

        return Router(path="/stripe", route_handlers=[list_payouts, retrieve_payout, list_transactions])

    # -- paying -----------------------------------------------------------------------------------
    def _accounts(self) -> dict[str, list[str]]:
        """API key -> the names of the connections that use it (none without a connections file)."""
        connections = self.stripe.connections
        if connections.from_file:
            accounts: dict[str, list[str]] = {}
            for connection in connections.for_processor(PROCESSOR):
                key = connection.get("api_key")
                if key:
                    accounts.setdefault(key, []).append(connection.name)
            return accounts
        return {r.credential: [] for r in self.stripe.store.ledger if r.processor == PROCESSOR}

    def announce(self, cut_off: int) -> list[dict[str, Any]]:
        """Pay every account's payouts of the period that ended at ``cut_off``; send ``payout.paid``."""
        paid: list[dict[str, Any]] = []
        for api_key, names in self._accounts().items():
            for payout in self._payouts(api_key)[::-1]:
                if payout.period.end != cut_off:
                    continue
                obj = payout_object(payout, livemode=api_key.startswith("sk_live_"))
                paid.append({"connections": names, "payout": obj})
                if (api_key, payout.id) not in self._announced:
                    self._announced.add((api_key, payout.id))
                    self._send_paid(api_key, obj)
        return paid

    def _send_paid(self, api_key: str, payout: dict[str, Any]) -> None:
        stripe = self.stripe
        if not stripe.webhooks.enabled:
            return
        config = stripe.faults.get(PROCESSOR)
        for connection in stripe.connections.for_processor(PROCESSOR):
            secret = connection.get("webhook_secret")
            if connection.get("api_key") != api_key or not secret:
                continue
            event = event_object(
                event_id=random_id("evt_"),
                event_type="payout.paid",
                data_object=payout,
                api_version=DEFAULT_API_VERSION,
                livemode=payout["livemode"],
                request_id=None,
                idempotency_key=None,
            )

            def signer(body: bytes, secret: str = secret) -> dict[str, str]:
                return {
                    "Stripe-Signature": signature_header(secret, body, int(time.time())),
                    "User-Agent": _WEBHOOK_USER_AGENT,
                }

            if config.drops_webhook():
                continue  # lost: never delivered
            body = _encode(event)
            duplicate = config.duplicates_webhook()
            stripe.webhooks.send(connection, event["id"], "payout.paid", body, signer, duplicate=duplicate)

    async def pay_now(self) -> tuple[int, list[dict[str, Any]]]:
        """Cut the running period at the next whole second (every line booked before this call is in
        it, every later one books after the cut), then pay and announce its payouts."""
        cut_off = int(time.time()) + 1
        await sleep_until(cut_off)
        self.schedule.cut(cut_off)
        return cut_off, self.announce(cut_off)

    async def _midnights(self) -> None:
        while True:
            midnight = _next_midnight(time.time())
            await sleep_until(midnight + 0.5)
            self.announce(midnight)

    async def start(self) -> None:
        if self._clock is None:
            self._clock = asyncio.get_running_loop().create_task(self._midnights())

    async def close(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None

    def control_router(self) -> Router:
        sim = self

        @post("/pay", status_code=200)
        async def pay(request: Request[Any, Any, Any]) -> Response[Any]:
            body = await request.body()
            try:
                data = decode_json(body) if body.strip() else {}
            except msgspec.DecodeError:
                data = None
            if not isinstance(data, dict):
                message = "body must be a JSON object"
                return Response({"error": message, "code": "invalid_body"}, status_code=400)
            unknown = set(data) - {"processor"}
            if unknown:
                message = f"unknown field(s): {', '.join(sorted(unknown))}"
                return Response({"error": message, "code": "unknown_field"}, status_code=400)
            processor = data.get("processor", PROCESSOR)
            if processor != PROCESSOR:
                message = f"{processor!r} has no payouts here (only {PROCESSOR})"
                return Response({"error": message, "code": "no_payouts"}, status_code=404)
            cut_off, paid = await sim.pay_now()
            return Response({"processor": PROCESSOR, "cut_off": cut_off, "paid": paid})

        return Router(path="/_control/payouts", route_handlers=[pay])
