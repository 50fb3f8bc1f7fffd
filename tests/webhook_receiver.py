"""A real HTTP receiver for refundwatch's outgoing webhooks, on 127.0.0.1 in the test process.

Each path is one endpoint's receiver. A path answers 200 unless told otherwise: ``plan(path, ...)``
queues answers for its next requests (a status code; ``HANG``: hold the request until ``release()``,
as a receiver that stopped answering; ``SLOW``: answer too late); ``together(path, n)`` answers its
next ``n`` requests only once all ``n`` are in flight at the same time (proof that they were sent side
by side). Every request is kept, answered or not.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
from standardwebhooks import Webhook

HANG = "hang"
SLOW = "slow"  # answers 200, but only after refundwatch's webhook timeout in the tests has passed
SLOW_SECONDS = 4.5
TOGETHER = "together"
TOGETHER_SECONDS = 2.5  # within the tests' webhook timeout: a request that waited in vain answers 500


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | None  # the status answered; None while held

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> dict[str, Any]:
        """The payload, if the signature verifies with ``secret`` (the Standard Webhooks witness)."""
        payload: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return payload

    def json(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.body)
        return decoded


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, deque[int | str]] = defaultdict(deque)
        self._received: list[Received] = []
        self._held = 0
        self._release = threading.Event()
        self._barriers: dict[str, threading.Barrier] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = receiver._next(self.path)
                if answer == SLOW:
                    time.sleep(SLOW_SECONDS)
                    answer = 200
                if answer == TOGETHER:
                    answer = receiver._meet(self.path)
                if answer == HANG:
                    receiver._hold(Received(self.path, headers, body, None))
                    receiver._release.wait(60)
                    return  # the client gave up (or was killed) long ago: no answer
                receiver._keep(Received(self.path, headers, body, int(answer)))
                self.send_response(int(answer))
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, *answers: int | str) -> None:
        with self._lock:
            self._plans[path].extend(answers)

    def together(self, path: str, n: int) -> None:
        with self._lock:
            self._barriers[path] = threading.Barrier(n)
            self._plans[path].extend([TOGETHER] * n)

    def _meet(self, path: str) -> int:
        try:
            self._barriers[path].wait(TOGETHER_SECONDS)
        except threading.BrokenBarrierError:
            return 500
        return 200

    def release(self) -> None:
        self._release.set()

    def _next(self, path: str) -> int | str:
        with self._lock:
            plan = self._plans[path]
            return plan.popleft() if plan else 200

    def _hold(self, request: Received) -> None:
        with self._lock:
            self._received.append(request)
            self._held += 1

    def _keep(self, request: Received) -> None:
        with self._lock:
            self._received.append(request)

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self._received if r.path == path]

    def delivered(self, path: str) -> list[Received]:
        """The requests answered 2xx, in the order they arrived."""
        return [r for r in self.received(path) if r.answered is not None and 200 <= r.answered < 300]

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
