"""A request answered before its body was read (401 from the guard) leaves the keep-alive connection
usable: the next request on it gets a response, not a disconnect (found by the never-a-500 fuzz)."""

from __future__ import annotations

import contextlib
import socket
from urllib.parse import urlsplit

import pytest

from stack import Stack

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head


@pytest.mark.parametrize("size", [10, 100_000, 250_000])
def test_unread_body_does_not_break_the_connection(stack: Stack, size: int) -> None:
    url = urlsplit(stack.web_url)
    body = b"x" * size
    with contextlib.closing(socket.create_connection((url.hostname, url.port), timeout=10)) as sock:
        sock.sendall(
            b"POST /api/v1/refunds HTTP/1.1\r\nHost: t\r\nAuthorization: Basic Og==\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size + body
        )
        assert _read_response(sock).startswith(b"HTTP/1.1 401")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
