"""Lean ASGI answers for the processor endpoints, the connection abort, and the fault gates.

Processor handlers return these ASGI callables directly (Litestar passes them through), which
keeps the hot path free of response rendering machinery.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any, cast

import msgspec
from litestar.types import ASGIApp, Receive, Scope, Send

from .faults import FaultConfig, Outcome

__all__ = [
    "ABORT",
    "RAW_SEND_KEY",
    "AbortConnection",
    "BodyTooLargeError",
    "Reply",
    "back_faults",
    "decode_json",
    "front_faults",
    "json_reply",
    "mangled",
    "maybe_mangled",
    "random_id",
    "read_body",
]

# The server's own ``send`` for this request, stored in the scope by ``SimulatorApp`` before
# Litestar wraps it: the only handle on the connection some servers (uvicorn) expose.
RAW_SEND_KEY = "refundwatch.simulator.raw_send"

_encode = msgspec.json.Encoder().encode


def random_id(prefix: str, length: int = 24) -> str:
    """A Stripe-style id: ``prefix`` + ``length`` random alphanumeric characters (``re_3f9a...``)."""
    return "%s%0*x" % (prefix, length, random.getrandbits(length * 4))  # noqa: UP031 - fastest here


class BodyTooLargeError(ValueError):
    pass


def decode_json(raw: bytes) -> Any:
    """``msgspec.json.decode``, with nesting deeper than it follows (it raises RecursionError there)
    turned into the ``msgspec.DecodeError`` every handler already answers as an unreadable body."""
    try:
        return msgspec.json.decode(raw)
    except RecursionError:
        raise msgspec.DecodeError("JSON is nested too deeply") from None


async def read_body(receive: Receive, limit: int = 1 << 20) -> bytes:
    """The request body, read straight from ASGI ``receive`` (lighter than Litestar's ``Request.body``).

    Raises :class:`BodyTooLargeError` past ``limit`` bytes; a client that disconnects mid-body
    leaves what arrived so far.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class Reply:
    """A complete HTTP answer with a body, sent in one go."""

    __slots__ = ("body", "extra", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = b"application/json",
    ) -> None:
        self.status = status
        self.body = body
        self.extra = headers or []
        self.headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if headers:
            self.headers.extend(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def mangled(reply: Reply) -> Reply:
    """The answer as a misbehaving proxy would pass it on (``malformed_rate``), at random one of:
    the body cut in half (a complete HTTP message, so the client reads it and finds no JSON), or the
    body labelled ``Content-Encoding: gzip`` without being compressed (the client cannot decode it)."""
    if random.random() < 0.5:
        return Reply(reply.status, reply.body[: len(reply.body) // 2], reply.extra)
    return Reply(reply.status, reply.body, [*reply.extra, (b"content-encoding", b"gzip")])


def maybe_mangled(config: FaultConfig, answer: ASGIApp) -> ASGIApp:
    """``malformed_rate``: the request executed (and its answer was saved) all the same, only a 2xx
    answer reaches the client mangled."""
    if isinstance(answer, Reply) and 200 <= answer.status < 300 and config.mangles():
        return mangled(answer)
    return answer


def json_reply(status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
    return Reply(status, _encode(payload), headers)


class AbortConnection:
    """Drop the connection without an answer, as a reset between client and processor would.

    Under uvicorn the request's transport is aborted: the client sees the connection close with
    no HTTP response at all. Servers that expose no transport (granian) cannot drop a connection
    before sending a status line, so there the answer is cut short instead: a status line and
    headers announcing a body that never arrives, which non-streaming clients (httpx2, the
    official SDKs) also report as a connection error.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_send = cast("Mapping[str, Any]", scope).get(RAW_SEND_KEY)
        transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
        abort = getattr(transport, "abort", None)
        if callable(abort):
            abort()
            # Let the server notice the disconnect before the ASGI call returns, so it neither
            # tries to answer nor logs a missing response.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})


ABORT = AbortConnection()


async def front_faults(
    config: FaultConfig,
    server_error: Callable[[int], ASGIApp],
    outage: Callable[[], ASGIApp],
) -> tuple[Outcome, ASGIApp | None]:
    """Faults "in front of" the processor: outage, latency, 5xx, resets before execution.

    Returns the rolled outcome and, when the request must not reach the processor, the answer.
    """
    if config.outage:
        return Outcome.ERROR, outage()
    outcome = config.roll()
    await config.sleep_latency()
    if outcome is Outcome.ERROR:
        return outcome, server_error(random.choice((500, 502, 503)))
    if outcome is Outcome.RESET_BEFORE:
        return outcome, ABORT
    return outcome, None


async def back_faults(config: FaultConfig, outcome: Outcome, answer: ASGIApp) -> ASGIApp:
    """Faults after the processor executed the request: reset, or hang ``timeout_ms`` then answer."""
    if outcome is Outcome.RESET_AFTER:
        return ABORT
    if outcome is Outcome.TIMEOUT:
        await asyncio.sleep(config.timeout_ms / 1000.0)
    return answer
