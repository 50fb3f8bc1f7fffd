"""Adyen's Settlement details report as files: a batch is closed and published, announced with a signed
``REPORT_AVAILABLE`` notification, and downloaded with the report user's HTTP basic credentials.

Adyen generates ``settlement_detail_report_batch_<N>.csv`` when a merchant account's batch closes and
sends ``REPORT_AVAILABLE`` (``pspReference`` the file name, ``reason`` the download URL
``https://ca-test.adyen.com/reports/download/MerchantAccount/<account>/<file>``); the file is fetched
with a report user's credentials (docs.adyen.com/reporting/automatically-get-reports;
RECONCILIATION.md §2.1). Here:

- ``POST /_control/reports/adyen/publish`` ``{connection?, batch?}`` closes the current batch of the
  connection's merchant account (without ``connection``: of every Adyen connection's account) and
  announces its file to every connection of that account; with ``batch``, a batch published before is
  announced again (a redelivery: nothing closes). 201 ``[{merchant_account, batch, file, url, closed_at,
  published_at, connections}]``; 400 (``invalid_body``, ``unknown_field``), 404 (``unknown_connection``,
  ``unknown_batch``).
- ``GET /_control/reports/adyen/batches?connection=`` lists the published batches. Adyen itself offers
  no such list: it is for tests and demos.
- ``GET /adyen/reports/download/MerchantAccount/{merchantAccount}/{file}``: the file, in basic auth
  with the ``report_username`` and ``report_password`` of a connection of that merchant account (401
  otherwise, before anything else is told), 404 for a file not published. Its content is rendered at
  download time from the ledger, discrepancies applied, and is byte for byte that merchant account's
  rows of that batch in ``GET /_control/reports/adyen`` (``settlement.batch_file``). An ``outage``
  fault answers 503; other faults leave downloads alone.

Closing a batch waits for the current second to end, so every line booked in it belongs to the closed
batch and none booked later does (lines carry whole seconds).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.status_codes import HTTP_201_CREATED

from ..asgi import decode_json
from ..connections import Connection, Connections
from ..faults import Faults
from ..settlement import Reports, sleep_until
from .notifications import PROCESSOR, Notifier
from .settlement import batch_file, batch_filename, batch_of
from .wire import report_item

__all__ = ["DOWNLOAD_PATH", "Publications", "Published"]

DOWNLOAD_PATH = "/adyen/reports/download/MerchantAccount"
_FIELDS = frozenset({"connection", "batch"})


@dataclass(slots=True)
class Published:
    merchant_account: str
    number: int
    file: str
    url: str
    closed_at: int  # Unix seconds: the batch's last second
    published_at: float
    connections: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "merchant_account": self.merchant_account,
            "batch": self.number,
            "file": self.file,
            "url": self.url,
            "closed_at": self.closed_at,
            "published_at": self.published_at,
            "connections": list(self.connections),
        }


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> Response[dict[str, str]]:
    return Response({"error": message, "code": code}, status_code=status)


class Publications:
    """The closed batches of each merchant account, their cut-off times, and their announcements."""

    def __init__(
        self, reports: Reports, connections: Connections, notifier: Notifier, faults: Faults
    ) -> None:
        self.reports = reports
        self.connections = connections
        self.notifier = notifier
        self.faults = faults
        # Shared with the report's renderer (settlement.register): mutated in place, never replaced.
        self.cuts: dict[str, list[int]] = {}
        self.published: dict[str, dict[int, Published]] = {}
        self._lock = asyncio.Lock()
        notifier.webhooks.on_reset(self.reset)

    def reset(self) -> None:
        self.cuts.clear()
        self.published.clear()

    # -- publishing -------------------------------------------------------------------------------
    def _accounts(self, name: str | None) -> dict[str, list[Connection]]:
        """Merchant account -> its Adyen connections: the named connection's account, or every one."""
        adyen = [c for c in self.connections.for_processor(PROCESSOR) if c.get("merchant_account")]
        if name is not None:
            named = next((c for c in adyen if c.name == name), None)
            if named is None:
                raise _Refused(
                    404, "unknown_connection", f"no Adyen connection {name!r} with a merchant_account"
                )
            adyen = [c for c in adyen if c.get("merchant_account") == named.get("merchant_account")]
        accounts: dict[str, list[Connection]] = {}
        for connection in adyen:
            accounts.setdefault(str(connection.get("merchant_account")), []).append(connection)
        return accounts

    async def publish(self, data: object, base_url: str) -> list[Published]:
        if not isinstance(data, dict):
            raise _Refused(400, "invalid_body", "body must be a JSON object")
        unknown = set(data) - _FIELDS
        if unknown:
            raise _Refused(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
        name, number = data.get("connection"), data.get("batch")
        if name is not None and not isinstance(name, str):
            raise _Refused(400, "invalid_body", "connection must be a string")
        if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
            raise _Refused(400, "invalid_body", "batch must be an integer")
        accounts = self._accounts(name)
        if not accounts:
            raise _Refused(404, "unknown_connection", "no Adyen connection with a merchant_account")
        done: list[Published] = []
        async with self._lock:  # one closing at a time: cut-offs stay strictly ascending
            for merchant, connections in accounts.items():
                if number is None:
                    published = await self._close(merchant, base_url)
                else:
                    found = self.published.get(merchant, {}).get(number)
                    if found is None:
                        raise _Refused(404, "unknown_batch", f"{merchant} has published no batch {number}")
                    published = found
                published.connections = [c.name for c in connections]
                self._announce(published, connections)
                done.append(published)
        return done

    async def _close(self, merchant: str, base_url: str) -> Published:
        cuts = self.cuts.setdefault(merchant, [])
        cut = max(int(time.time()) + 1, cuts[-1] + 1 if cuts else 0)
        number, closed = batch_of(cut - 1, 0, cuts)
        cuts.append(cut)
        # Lines booked until the cut still belong to this batch: wait for it before anyone downloads.
        await sleep_until(cut)
        file = batch_filename(number)
        url = f"{base_url}{DOWNLOAD_PATH}/{quote(merchant, safe='')}/{file}"
        published = Published(merchant, number, file, url, int(closed.timestamp()), time.time())
        self.published.setdefault(merchant, {})[number] = published
        return published

    def _announce(self, published: Published, connections: list[Connection]) -> None:
        for connection in connections:
            item = report_item(
                file_name=published.file, url=published.url, merchant_account=published.merchant_account
            )
            self.notifier.notify(connection, item)

    def listing(self, name: str | None) -> list[dict[str, Any]]:
        accounts = self._accounts(name) if name is not None else None
        return [
            p.as_dict()
            for merchant, batches in self.published.items()
            if accounts is None or merchant in accounts
            for p in sorted(batches.values(), key=lambda p: p.number)
        ]

    # -- downloading ------------------------------------------------------------------------------
    def _report_user(self, merchant: str, authorization: str | None) -> Connection | None:
        """The connection of ``merchant`` whose report credentials the basic auth header carries."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        for connection in self.connections.for_processor(PROCESSOR):
            user, password = connection.get("report_username"), connection.get("report_password")
            if connection.get("merchant_account") != merchant or not user or not password:
                continue
            if hmac.compare_digest(given, f"{user}:{password}".encode()):
                return connection
        return None

    def download(self, merchant: str, file: str, authorization: str | None) -> Response[Any]:
        if self.faults.get(PROCESSOR).outage:
            return Response("Service Unavailable", status_code=503, media_type="text/plain")
        if self._report_user(merchant, authorization) is None:
            return Response(
                "Unauthorized",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": 'Basic realm="Adyen"'},
            )
        found = next((p for p in self.published.get(merchant, {}).values() if p.file == file), None)
        if found is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        report, _, _ = self.reports.report(PROCESSOR)
        return Response(
            batch_file(report, merchant, found.number),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{file}"'},
        )

    # -- routes -----------------------------------------------------------------------------------
    def routers(self) -> list[Router]:
        publications = self

        @get("/{merchant:str}/{file:str}")
        async def download(request: Request[Any, Any, Any], merchant: str, file: str) -> Response[Any]:
            return publications.download(merchant, file, request.headers.get("authorization"))

        @post("/publish", status_code=HTTP_201_CREATED)
        async def publish(request: Request[Any, Any, Any]) -> Response[Any]:
            try:
                raw = await request.body()
                data = decode_json(raw) if raw.strip() else {}
                base = f"{request.url.scheme}://{request.url.netloc}"
                done = await publications.publish(data, base)
            except msgspec.DecodeError as exc:
                return _error(400, "invalid_body", f"body is not valid JSON: {exc}")
            except _Refused as exc:
                return _error(exc.status, exc.code, exc.message)
            return Response([p.as_dict() for p in done], status_code=HTTP_201_CREATED)

        @get("/batches")
        async def batches(connection: str | None = None) -> Response[Any]:
            try:
                return Response(publications.listing(connection))
            except _Refused as exc:
                return _error(exc.status, exc.code, exc.message)

        return [
            Router(path=DOWNLOAD_PATH, route_handlers=[download]),
            Router(path="/_control/reports/adyen", route_handlers=[publish, batches]),
        ]
