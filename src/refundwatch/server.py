"""The web server: granian running the Litestar app."""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces


def serve(host: str, port: int, workers: int = 1) -> None:
    Granian(
        "refundwatch.app:create_asgi",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        # Dashboards keep SSE connections open; granian's default caps near 1,024 per worker.
        backlog=4096,
        backpressure=4096,
        log_access=False,
    ).serve()
