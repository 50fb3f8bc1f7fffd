"""The demo's webhook receiver: what a returns system would run, showing refundwatch's events arriving.

``python -m refundwatch.demo_receiver --port P --secret-file F`` serves on 127.0.0.1:

- ``POST /hooks``: verifies the Standard Webhooks signature with the secret in ``F`` (the
  ``standardwebhooks`` library, as a receiver would), keeps the event and answers 204; a signature
  that does not verify is kept as such and answered 401, so refundwatch retries it;
- ``GET /``: the latest events, newest first (the page reloads itself every few seconds);
- ``GET /events.json``: the same as data.

It keeps only the latest events in memory, and never uses refundwatch's own signing code: like the
tests' receiver, it is an independent witness. :func:`register` (run by the demo, not by the receiver)
makes it an endpoint for every event.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import sys
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

if TYPE_CHECKING:
    from refundwatch.audit.actions import Actor
    from refundwatch.runtime import Runtime

KEPT = 500
SHOWN = 100
REFRESH_SECONDS = 3
PATH = "/hooks"
DESCRIPTION = "the demo's webhook receiver (refundwatch demo)"
SOURCE = "demo"  # audited as demo:webhook_endpoint:{verb}


@dataclass(frozen=True, slots=True)
class Arrival:
    received_at: str
    message_id: str
    verified: bool
    type: str
    subject: str  # the refund (id, status, amount) or the gateway the event is about
    sequence: int | None
    again: bool  # a message id seen before: a retry or a re-send


class Inbox:
    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.arrivals: deque[Arrival] = deque(maxlen=KEPT)
        self.seen: set[str] = set()
        self.total = 0

    def receive(self, body: bytes, headers: dict[str, str]) -> bool:
        message_id = headers.get("webhook-id", "")
        try:
            payload: Any = self.webhook.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            payload, verified = _decoded(body), False
        data = payload.get("data") if isinstance(payload, dict) else None
        data = data if isinstance(data, dict) else {}
        event_type = str(payload.get("type", "?")) if isinstance(payload, dict) else "?"
        again = message_id in self.seen
        self.seen.add(message_id)
        self.total += 1
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        sequence = data.get("sequence")
        self.arrivals.appendleft(
            Arrival(
                now,
                message_id,
                verified,
                event_type,
                _subject(data),
                sequence if isinstance(sequence, int) else None,
                again,
            )
        )
        return verified


def _decoded(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}


def _subject(data: dict[str, Any]) -> str:
    if "amount" in data and "currency" in data:
        return f"refund {data.get('id')} · {data.get('status')} · {data.get('amount')} {data.get('currency')}"
    if "connection" in data:
        return f"connection {data['connection']}"
    return str(data.get("id", ""))


def _inbox(request: Request[Any, Any, Any]) -> Inbox:
    inbox: Inbox = request.app.state.inbox
    return inbox


@post(PATH, status_code=204)
async def receive(request: Request[Any, Any, Any]) -> Response[None]:
    headers = {k.lower(): v for k, v in request.headers.items()}
    verified = _inbox(request).receive(await request.body(), headers)
    return Response(None, status_code=204 if verified else 401)


@get("/events.json")
async def events(request: Request[Any, Any, Any]) -> dict[str, Any]:
    inbox = _inbox(request)
    return {"total": inbox.total, "events": [asdict(a) for a in list(inbox.arrivals)[:SHOWN]]}


@get("/", media_type="text/html")
async def page(request: Request[Any, Any, Any]) -> str:
    inbox = _inbox(request)
    rows = "".join(_row(a) for a in list(inbox.arrivals)[:SHOWN])
    return PAGE.format(
        refresh=REFRESH_SECONDS,
        total=inbox.total,
        shown=min(SHOWN, len(inbox.arrivals)),
        url=html.escape(str(request.base_url).rstrip("/") + PATH),
        rows=rows
        or '<tr><td colspan="6">Nothing yet: refunds send their first events within seconds.</td></tr>',
    )


def _row(a: Arrival) -> str:
    check = "✓ verified" if a.verified else "✗ signature did not verify (answered 401)"
    cells = (
        a.received_at,
        a.type,
        a.subject,
        "" if a.sequence is None else str(a.sequence),
        a.message_id + (" (again)" if a.again else ""),
        check,
    )
    klass = "ok" if a.verified else "bad"
    return f'<tr class="{klass}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


EMPTY = '<tr><td colspan="6">Nothing yet: refunds send their first events within seconds.</td></tr>'
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{refresh}">
<title>Demo webhook receiver</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ padding: .3rem .5rem; border-bottom: 1px solid #8884; text-align: left; }}
tr.ok td:last-child {{ color: #1a7f37; }} tr.bad td:last-child {{ color: #cf222e; }}
</style></head>
<body><h1>Demo webhook receiver</h1>
<p>refundwatch delivers every event to <code>{url}</code>; each signature is checked with
<code>standardwebhooks</code>. {total} received; the latest {shown} below, newest first (reloads every
{refresh} s).</p>
<table><thead><tr><th>Received (UTC)</th><th>Event</th><th>About</th><th>Sequence</th>
<th>webhook-id</th><th>Signature</th></tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""


async def register(rt: Runtime, url: str, actor: Actor) -> str:
    """Make ``url`` the demo receiver's endpoint, for every event; its new secret. A database kept from
    an earlier demo has one already: it is pointed here, turned on, and given a new secret at once."""
    from refundwatch.outgoing import endpoints
    from refundwatch.outgoing.events import EVENT_TYPES

    every = list(EVENT_TYPES)
    earlier = [e for e in await endpoints.list_endpoints(rt) if e.description == DESCRIPTION]
    if not earlier:
        created = await endpoints.create_endpoint(
            rt,
            endpoints.EndpointCreate(url=url, events=every, description=DESCRIPTION),
            actor=actor,
            source=SOURCE,
            created_by=actor.id,
        )
        return created.secret
    ours = earlier[0].id
    changes = endpoints.EndpointUpdate(url=url, events=every, connection=None, enabled=True)
    await endpoints.update_endpoint(rt, ours, changes, actor=actor, source=SOURCE)
    rotated = await endpoints.rotate_secret(rt, ours, actor=actor, source=SOURCE, overlap_hours=0)
    return rotated.secret


def create_app(secret: str) -> Litestar:
    return Litestar(route_handlers=[receive, events, page], state=State({"inbox": Inbox(secret)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refundwatch.demo_receiver", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret-file", type=Path, required=True, help="holds the endpoint's whsec_ secret")
    args = parser.parse_args(argv)
    import uvicorn

    app = create_app(args.secret_file.read_text(encoding="utf-8").strip())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
