"""Adyen's Settlement details report, downloaded when a REPORT_AVAILABLE notification announces it.

Adyen generates ``settlement_detail_report_batch_<N>.csv`` when a merchant account's batch closes and
sends REPORT_AVAILABLE with the file's name (``pspReference``) and its download URL (``reason``):
``https://ca-test.adyen.com/reports/download/MerchantAccount/<account>/<file>`` (``ca-live`` in live).
The download authenticates with a report user's HTTP basic credentials, the connection's
``report_username`` and ``report_password`` (RECONCILIATION.md §2.1; docs.adyen.com/reporting/
automatically-get-reports).

The URL arrives in a webhook, so it is outside input even when signed: it is downloaded only when it
is ``https`` on Adyen's own report hosts (:data:`REPORT_HOSTS`, port 443), or on the connection's own
base URL (scheme, host and port alike: a test account or the simulator), and only as
``…/reports/download/MerchantAccount/<the connection's merchant account>/settlement_detail_report_
batch_<N>.csv`` with no credentials, query or fragment in it. Anything else is refused before any
request, with a reason saying why (:class:`ReportRefused`); redirects are never followed. A body
past :data:`MAX_REPORT_BYTES` is cut off and refused. Neither the password nor the Authorization
header ever reaches a message.

``due``: Adyen offers no API that lists reports, and its notification retries stop once refundwatch
has acknowledged REPORT_AVAILABLE, so a download that failed (Adyen unreachable, a wrong report password
since fixed) would never come again. The schedule therefore retries the refs whose latest pull within
``REFUNDWATCH_RECONCILE_PULL_LOOKBACK_DAYS`` failed (read from the audit log, where
``reconciliation.pulling`` records every pull) and whose file is not imported, as long as the
connection has report credentials and the ref passes the guard above: a refused URL is never retried.
Any batch can also be imported by hand (``refundwatch reconcile import``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Final
from urllib.parse import unquote, urlsplit

import httpx2
from sqlalchemy import select

from refundwatch.audit import actions
from refundwatch.connections.services import ConnectionInfo
from refundwatch.db.models import AuditEntry
from refundwatch.gateways.adyen import AdyenGateway
from refundwatch.gateways.adyen.transformers import SETTLEMENT_REPORT_FILE
from refundwatch.gateways.base import Credentials
from refundwatch.lib.http import make_client, timeout_for
from refundwatch.reconciliation.pulling import PulledReport, PullError, imported_names
from refundwatch.runtime import Runtime

__all__ = [
    "MAX_REPORT_BYTES",
    "REPORT_HOSTS",
    "AdyenSettlementPull",
    "ReportDownloadFailed",
    "ReportRefused",
    "checked_report_url",
    "download_report",
]

# Adyen's Customer Area hosts that serve report downloads (test and live). No other, regional or
# live-prefixed, report host is documented in RECONCILIATION.md or GATEWAYS.md.
REPORT_HOSTS: Final = frozenset({"ca-test.adyen.com", "ca-live.adyen.com"})
MAX_REPORT_BYTES: Final = 200 * 1024 * 1024
_MAX_URL = 2048
_DOWNLOAD_PATH: Final = re.compile(
    r"(?P<prefix>.*)/reports/download/MerchantAccount/(?P<account>[^/]+)/(?P<file>[^/]+)"
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class ReportRefused(PullError):
    """The report is not downloaded, and no request was made: the reason says why (safe to show)."""


class ReportDownloadFailed(PullError):
    """The download was tried and failed (refused credentials, not found, too large, unreachable)."""


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme, -1)


def checked_report_url(creds: Credentials, ref: str) -> tuple[str, str]:
    """(the URL to download, the file's name) when ``ref`` may be downloaded for this connection;
    :class:`ReportRefused` otherwise. Nothing is sent anywhere."""
    if (
        not ref
        or len(ref) > _MAX_URL
        or not ref.isascii()
        or not ref.isprintable()
        or re.search(r"[\s\\]", ref)
    ):
        raise ReportRefused("the report URL is empty, too long or not a plain URL")
    try:
        parts = urlsplit(ref)
        port = parts.port
    except ValueError:
        raise ReportRefused("the report URL cannot be read") from None
    host = parts.hostname or ""
    if parts.scheme not in _DEFAULT_PORTS or not host:
        raise ReportRefused("the report URL is not an http(s) URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ReportRefused("the report URL carries credentials of its own")
    if parts.query or parts.fragment or "?" in ref or "#" in ref:
        raise ReportRefused("the report URL carries a query or fragment")
    origin = _origin(parts.scheme, host, port)
    base = urlsplit(AdyenGateway().base_url(creds))
    own = _origin(base.scheme, base.hostname or "", base.port)
    prefix = base.path.rstrip("/") if origin == own else ""
    if origin != own and origin not in {("https", h, 443) for h in REPORT_HOSTS}:
        where = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
        raise ReportRefused(
            f"the report URL points to {where}: reports are downloaded only from Adyen's report hosts "
            f"({', '.join(sorted(REPORT_HOSTS))}, https) or the connection's own base URL"
        )
    found = _DOWNLOAD_PATH.fullmatch(parts.path)
    if found is None or found["prefix"] != prefix:
        raise ReportRefused(
            "the report URL is not a report download path (/reports/download/MerchantAccount/…)"
        )
    account, name = unquote(found["account"]), found["file"]
    merchant = creds.options.get("merchant_account", "")
    if account != merchant:
        raise ReportRefused(f"the report belongs to merchant account {account!r}, not this connection's")
    if not SETTLEMENT_REPORT_FILE.fullmatch(name):
        raise ReportRefused(
            f"{name!r} is not a Settlement details report (settlement_detail_report_batch_<N>.csv)"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path}", name


def _report_user(creds: Credentials) -> tuple[str, str]:
    user = creds.options.get("report_username")
    password = creds.secrets.get("report_password")
    if not user or password is None or not password.reveal():
        raise ReportRefused(
            f"connection {creds.connection_name!r} has no report_username and report_password: "
            "add the report user's credentials to download Adyen's reports"
        )
    return user, password.reveal()


async def download_report(
    client: httpx2.AsyncClient, creds: Credentials, ref: str, *, limit: int = MAX_REPORT_BYTES
) -> PulledReport:
    """Download the Settlement details report at ``ref`` in the report user's basic auth.
    :class:`ReportRefused` (no request made) or :class:`ReportDownloadFailed`."""
    url, name = checked_report_url(creds, ref)
    user, password = _report_user(creds)
    chunks: list[bytes] = []
    size = 0
    # ``from None``: httpx2 exceptions hold the request, and the request holds the credentials.
    try:
        async with client.stream(
            "GET",
            url,
            auth=httpx2.BasicAuth(user, password),
            headers={"Accept": "text/csv"},
            timeout=timeout_for(creds.timeout_seconds),
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise ReportDownloadFailed(_refusal(name, response.status_code))
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ReportDownloadFailed(_too_large(name, limit))
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ReportDownloadFailed(_too_large(name, limit))
                chunks.append(chunk)
    except httpx2.HTTPError as exc:
        raise ReportDownloadFailed(f"could not download {name} from Adyen ({type(exc).__name__})") from None
    return PulledReport(name=name, content=b"".join(chunks), source="file")


def _too_large(name: str, limit: int) -> str:
    return f"{name} is larger than {limit // (1024 * 1024)} MB: not imported"


def _refusal(name: str, status: int) -> str:
    if status in (401, 403):
        return (
            f"Adyen refused the report user's credentials for {name} (HTTP {status}): "
            "check report_username and report_password"
        )
    if status == 404:
        return f"Adyen has no report {name} (HTTP 404)"
    if 300 <= status < 400:
        return f"Adyen answered {name} with a redirect (HTTP {status}): not followed"
    return f"Adyen answered HTTP {status} for {name}"


class AdyenSettlementPull:
    """The Adyen side of settlement pulls (reconciliation.pulling): REPORT_AVAILABLE's file, and the
    failed downloads again on the schedule."""

    processor = "adyen"

    async def fetch(self, rt: Runtime, conn: ConnectionInfo, ref: str) -> PulledReport:
        if rt.http is not None:
            return await download_report(rt.http, conn.credentials, ref)
        async with make_client() as client:
            return await download_report(client, conn.credentials, ref)

    async def due(self, rt: Runtime, conn: ConnectionInfo) -> list[str]:
        """Refs whose latest pull in the lookback window failed, not imported since (module docstring)."""
        try:
            _report_user(conn.credentials)
        except ReportRefused:
            return []  # nothing can be downloaded until the report user is configured
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=rt.settings.reconcile_pull_lookback_days)
        names: dict[str, str] = {}
        for ref in await _failed_refs(rt, conn.name, since):
            try:
                names[ref] = checked_report_url(conn.credentials, ref)[1]
            except ReportRefused:
                continue  # refused once, refused again: never retried
        done = await imported_names(rt, conn.id, set(names.values()))
        return [ref for ref, name in names.items() if name not in done]


async def _failed_refs(rt: Runtime, connection: str, since: dt.datetime) -> list[str]:
    """The refs of ``connection`` whose latest pull since ``since`` failed, oldest first: the audit
    log holds every pull, done (``RECONCILIATION_PULL``) or failed (``RECONCILIATION_PULL_FAILED``)."""
    async with rt.db.read_session() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.details)
            .where(
                AuditEntry.target_type == "connection",
                AuditEntry.target_id == connection,
                AuditEntry.action.in_([actions.RECONCILIATION_PULL, actions.RECONCILIATION_PULL_FAILED]),
                AuditEntry.at >= since,
            )
            .order_by(AuditEntry.id)
        )
        latest: dict[str, bool] = {}
        for action, details in rows:
            try:
                ref = json.loads(details).get("ref")
            except (ValueError, AttributeError):
                continue
            if isinstance(ref, str):
                latest.pop(ref, None)  # re-inserted: the order is the latest attempt's
                latest[ref] = action == actions.RECONCILIATION_PULL_FAILED
    return [ref for ref, failed in latest.items() if failed]
