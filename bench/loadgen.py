"""A lean HTTP/1.1 load generator for the benches: K keep-alive connections, h11 for the protocol.

Why not httpx2 here: the load generator shares the machine's two cores with the server it measures.
httpx2's client costs about 1 ms of CPU per request on this machine (0.7 ms even against a trivial
Litestar app), which is as much as refundwatch itself spends, so it capped what it measured (1,395
req/s against a hello-world app that serves 5,500 req/s to this client). h11 is the HTTP/1.1 state
machine httpcore is built on; driving it directly costs about 0.14 ms per request. Tools like wrk or
oha would cost less still, but would add a non-Python dependency to a bench anyone should be able
to run.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11


class Connection:
    """One keep-alive HTTP/1.1 connection; requests on it run one after another."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> tuple[int, bytes]:
        if self._writer is None or self._h11.our_state is h11.CLOSED:
            await self.close()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._h11 = h11.Connection(h11.CLIENT)
        assert self._reader is not None
        assert self._writer is not None
        conn = self._h11
        head = [("Host", f"{self.host}:{self.port}"), ("Content-Length", str(len(body))), *headers]
        self._writer.write(
            conn.send(h11.Request(method=method, target=target, headers=head))
            + conn.send(h11.Data(data=body))
            + conn.send(h11.EndOfMessage())
        )
        status, chunks = 0, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self._reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection mid-response")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        return status, b"".join(chunks)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@dataclass
class Outcome:
    seconds: float
    latencies_ms: list[float]
    errors: int  # answers other than 2xx, and requests that failed outright


async def post_all(
    url: str,
    headers: Mapping[str, str],
    bodies: list[dict[str, Any]],
    k: int,
    *,
    form: bool = False,
    idempotency_keys: bool = True,
    paths: list[str] | None = None,
) -> Outcome:
    """POST every body (JSON, or form-encoded) over k connections, each as soon as the last answered.

    ``paths``, one per body, replace the URL's path where the resource is in it (Adyen's payment)."""
    target = urlsplit(url).path
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    fixed = [*headers.items(), ("Content-Type", content_type)]
    queue = iter(zip(paths or [target] * len(bodies), bodies, strict=True))
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        conn = Connection(url)
        try:
            for path, body in queue:  # a shared iterator: each body is taken by exactly one client
                encoded = urlencode(body).encode() if form else json.dumps(body).encode()
                extra = [("Idempotency-Key", uuid.uuid4().hex)] if idempotency_keys else []
                started = time.perf_counter()
                try:
                    status, _ = await conn.request("POST", path, [*fixed, *extra], encoded)
                except (OSError, h11.ProtocolError):
                    status = 0
                    await conn.close()
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not 200 <= status < 300
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(k)))
    return Outcome(time.perf_counter() - started, latencies, errors)
