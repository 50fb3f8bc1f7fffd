"""The demo's mail catcher: the alerts refundwatch e-mails to the IT team, caught and shown.

``python -m refundwatch.demo_mail --smtp-port S --port P`` runs on 127.0.0.1:

- an SMTP server (``aiosmtpd``) on ``S`` that accepts every message and keeps the latest in memory;
- ``GET /`` on ``P``: the caught messages, newest first (the page reloads itself every few seconds);
- ``GET /mail.json``: the same as data.

The demo points ``REFUNDWATCH_ALERT_URLS`` at it (:func:`alert_url`), so an alert (a gateway down, a
refund stuck, a money contradiction) and its recovery arrive here as the e-mails a team would get.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import html
import sys
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State

KEPT = 200
REFRESH_SECONDS = 3
SENDER = "refundwatch@demo.invalid"
RECIPIENT = "it-team@demo.invalid"


def alert_url(smtp_port: int) -> str:
    """The Apprise URL that sends alerts to the catcher: plain SMTP on loopback, no TLS, no login."""
    return f"mailto://127.0.0.1:{smtp_port}?mode=insecure&from={SENDER}&to={RECIPIENT}"


@dataclass(frozen=True, slots=True)
class Caught:
    received_at: str
    sender: str
    to: str
    subject: str
    body: str


class Mailbox:
    """aiosmtpd's handler: every message is accepted and kept (the latest :data:`KEPT`)."""

    def __init__(self) -> None:
        self.caught: deque[Caught] = deque(maxlen=KEPT)
        self.total = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it so
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.caught.appendleft(
            Caught(
                now, str(message["From"] or ""), str(message["To"] or ""), str(message["Subject"] or ""), body
            )
        )
        self.total += 1
        return "250 OK"


def _mailbox(request: Request[Any, Any, Any]) -> Mailbox:
    mailbox: Mailbox = request.app.state.mailbox
    return mailbox


@get("/mail.json")
async def mail_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    mailbox = _mailbox(request)
    return {"total": mailbox.total, "mail": [asdict(c) for c in list(mailbox.caught)]}


@get("/", media_type="text/html")
async def page(request: Request[Any, Any, Any]) -> str:
    mailbox = _mailbox(request)
    rows = "".join(_row(c) for c in list(mailbox.caught))  # a copy: the SMTP thread appends meanwhile
    empty = '<tr><td colspan="3">No alert yet: stop a gateway in the simulator to see one.</td></tr>'
    return PAGE.format(refresh=REFRESH_SECONDS, total=mailbox.total, to=RECIPIENT, rows=rows or empty)


def _row(c: Caught) -> str:
    cells = (html.escape(c.received_at), html.escape(c.subject), f"<pre>{html.escape(c.body)}</pre>")
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{refresh}">
<title>Demo mail catcher</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ padding: .3rem .5rem; border-bottom: 1px solid #8884; text-align: left; vertical-align: top; }}
pre {{ margin: 0; white-space: pre-wrap; }}
</style></head>
<body><h1>Demo mail catcher</h1>
<p>The alerts refundwatch e-mails to <code>{to}</code>: {total} caught, newest first (reloads every
{refresh} s).</p>
<table><thead><tr><th>Received (UTC)</th><th>Subject</th><th>Message</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>
"""


def create_app(mailbox: Mailbox) -> Litestar:
    return Litestar(route_handlers=[page, mail_json], state=State({"mailbox": mailbox}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refundwatch.demo_mail", description=__doc__)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvicorn
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=args.smtp_port)
    smtp.start()  # its own thread and event loop
    try:
        uvicorn.run(create_app(mailbox), host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        smtp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
