"""A circuit breaker per connection, per worker process: stop calling a processor that is down.

Without it, every refund in flight during an outage would burn its attempts against a processor that
cannot answer and end in manual review. After ``threshold`` calls in a row that could not reach the
processor (unavailable, timeout, connection error, refused credentials), the circuit opens: refunds for
that connection wait (their jobs are deferred, their attempts untouched). When the wait is over, one job
probes with the processor's lightweight health-check call, not with a refund; success closes the circuit
and refunds flow again, failure keeps it open for another period. A successful health check closes it
too. Opening and closing are logged (``refundwatch.breaker``), once each, with the connection's name.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

log = logging.getLogger("refundwatch.breaker")


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0  # monotonic; 0 = closed
    probe: asyncio.Lock = field(default_factory=asyncio.Lock)
    name: str = ""  # the connection's, for the log lines
    opened_at: float = 0.0  # monotonic, while open


class Breaker:
    def __init__(self, *, threshold: int, open_seconds: float) -> None:
        self.threshold, self.open_seconds = threshold, open_seconds
        self._circuits: dict[UUID, _Circuit] = {}

    @property
    def any_open(self) -> bool:
        """Cheap check for the hot path: only when something is open is the refund's connection read."""
        return any(c.open_until for c in self._circuits.values())

    def is_open(self, connection_id: UUID) -> bool:
        circuit = self._circuits.get(connection_id)
        return circuit is not None and circuit.open_until > 0

    def record(self, connection_id: UUID, *, ok: bool, name: str | None = None) -> None:
        circuit = self._circuits.setdefault(connection_id, _Circuit())
        circuit.name = name or circuit.name or str(connection_id)
        if ok:
            if circuit.open_until:
                self._log(logging.INFO, circuit, "closed", after_seconds=time.monotonic() - circuit.opened_at)
            circuit.failures, circuit.open_until = 0, 0.0
            return
        circuit.failures += 1
        if circuit.failures >= self.threshold and not circuit.open_until:
            circuit.opened_at = time.monotonic()
            circuit.open_until = circuit.opened_at + self.open_seconds
            self._log(logging.WARNING, circuit, "opened", failures=circuit.failures)

    def _log(self, level: int, circuit: _Circuit, event: str, **more: float) -> None:
        fields: dict[str, object] = {"event": f"circuit_{event}", "connection": circuit.name}
        fields.update({k: round(v, 1) for k, v in more.items()})
        if event == "opened":
            fields["retry_in_seconds"] = self.open_seconds
        text = " ".join(f"{k}={v}" for k, v in fields.items() if k != "event")
        log.log(level, "circuit %s: %s", event, text, extra={"fields": fields})

    async def wait_for(self, connection_id: UUID, probe: Callable[[], Awaitable[bool]]) -> float | None:
        """``None``: go ahead and call the processor. A number: the processor is down, come back then."""
        circuit = self._circuits.get(connection_id)
        if circuit is None or not circuit.open_until:
            return None
        remaining = circuit.open_until - time.monotonic()
        if remaining > 0 or circuit.probe.locked():
            return max(remaining, 0.5) + random.uniform(0, 1)  # spread the returns out
        async with circuit.probe:
            if not circuit.open_until:  # another job's probe closed it meanwhile
                return None
            if await probe():
                self.record(connection_id, ok=True)
                return None
            circuit.open_until = time.monotonic() + self.open_seconds
            log.info("circuit still open: connection=%s probe failed", circuit.name)
            return self.open_seconds + random.uniform(0, 1)
