"""A local Adyen webhook endpoint for the simulator tests: it records every notification POST and
answers ``[accepted]``, or, on demand, fails the next deliveries (HTTP 500, or 200 without it)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Notification:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def items(self) -> list[dict[str, Any]]:
        return [wrapper["NotificationRequestItem"] for wrapper in self.json()["notificationItems"]]


class AdyenReceiver:
    def __init__(self) -> None:
        self.received: list[Notification] = []  # acknowledged deliveries
        self.refused: list[Notification] = []  # deliveries answered with a failure on purpose
        self.fail_next = 0
        self.fail_with = "500"  # or "unaccepted": 200 with a body other than [accepted]
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                note = Notification(self.path, dict(self.headers.items()), body)
                with receiver._lock:
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                        receiver.refused.append(note)
                    else:
                        receiver.received.append(note)
                    mode = receiver.fail_with
                status, answer = (200, b"[accepted]")
                if failing:
                    status, answer = (500, b"oops") if mode == "500" else (200, b"ok")
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self.refused.clear()
            self.fail_next = 0
            self.fail_with = "500"

    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self.received)

    def items(self, psp: str | None = None) -> list[dict[str, Any]]:
        return [i for n in self.notifications() for i in n.items() if psp is None or i["pspReference"] == psp]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
