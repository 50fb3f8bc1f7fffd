"""The notify bench's webhook receiver: a lean HTTP/1.1 server on 127.0.0.1, in a process of its own.

Every request is verified with the ``standardwebhooks`` verifier (the same witness as the tests) and
recorded with its arrival time: ``(arrival, webhook-id, refund id, sequence, type, timestamp)``. It
answers 200 at once, on keep-alive connections. Why not an HTTP framework: the receiver shares the
two cores with what it measures, and a bare asyncio protocol costs a few tens of microseconds per
request, so its CPU (its own role in the bench) stays small next to the sender's.

Control paths (the bench's, not refundwatch's): ``POST /_secret`` sets the signing secret,
``GET /_count`` answers how many requests verified, ``POST /_dump`` writes the records as JSON lines
to ``--out`` and forgets them.

Usage:  python bench/receiver.py --port PORT --out PATH
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class State:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.verifier: Webhook | None = None
        self.records: list[tuple[Any, ...]] = []
        self.rejected = 0

    def control(self, path: str, body: bytes) -> bytes:
        if path == "/_secret":
            self.verifier = Webhook(body.decode())
            return b"ok"
        if path == "/_count":
            return msgspec.json.encode({"verified": len(self.records), "rejected": self.rejected})
        if path == "/_dump":
            with self.out.open("ab") as f:
                for record in self.records:
                    f.write(msgspec.json.encode(record) + b"\n")
            count, self.records = len(self.records), []
            return str(count).encode()
        return b"?"

    def delivery(self, headers: dict[str, str], body: bytes) -> None:
        arrival = time.time()
        try:
            assert self.verifier is not None
            # json_parse=False: msgspec reads the payload below, several times faster than json.
            self.verifier.verify(body, headers, json_parse=False)
        except (AssertionError, WebhookVerificationError):
            self.rejected += 1
            return
        payload = msgspec.json.decode(body)
        data = payload.get("data") or {}
        self.records.append(
            (
                arrival,
                headers["webhook-id"],
                data.get("id"),
                data.get("sequence"),
                payload["type"],
                payload["timestamp"],
            )
        )


class Http(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            path = head[0].split(" ")[1]
            assert self.transport is not None
            if path.startswith("/_"):
                answer = self.state.control(path, body)
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer)
                )
            else:
                self.state.delivery(headers, body)
                self.transport.write(_OK)


async def serve(port: int, out: Path) -> None:
    state = State(out)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(state), "127.0.0.1", port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.out))


if __name__ == "__main__":
    main()
