"""Injected faults, per processor, and the refund outcome plan they imply.

Everything here is generic over the processor: a processor module asks :class:`Faults` for the
config of its processor, rolls an :class:`Outcome` for each request and a :class:`Plan` for each
refund it executes.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = [
    "DEFAULT_RETENTION_SECONDS",
    "PROCESSORS",
    "FaultConfig",
    "FaultConfigError",
    "Faults",
    "Outcome",
    "Plan",
    "plan_refund",
]

PROCESSORS: tuple[str, ...] = ("stripe", "adyen", "paypal", "checkout", "square", "braintree")

_DAY = 86_400.0
# How long each processor remembers an idempotency key (GATEWAYS.md): Stripe at least 24 h, Adyen 31
# days, PayPal 45 days, Checkout.com 24 h, Square unstated (24 h assumed), Braintree has no keys at all.
DEFAULT_RETENTION_SECONDS: Mapping[str, float] = {
    "stripe": _DAY,
    "adyen": 31 * _DAY,
    "paypal": 45 * _DAY,
    "checkout": _DAY,
    "square": _DAY,
    "braintree": 0.0,
}

_RATE_FIELDS = frozenset(
    {
        "error_rate",
        "timeout_rate",
        "reset_rate",
        "pending_rate",
        "fail_later_rate",
        "webhook_duplicate_rate",
        "webhook_drop_rate",
        "malformed_rate",
        "reversal_rate",
        "executed_error_share",
    }
)
_MS_FIELDS = frozenset({"latency_ms", "jitter_ms", "settle_ms", "timeout_ms"})
_SECONDS_FIELDS = frozenset({"idempotency_retention_seconds", "token_ttl_seconds"})
_SCALE_FIELDS = frozenset({"webhook_retry_scale"})
_MAX_SECONDS = 10 * 366 * _DAY
_BOOL_FIELDS = frozenset({"outage"})


class FaultConfigError(ValueError):
    """A fault configuration that cannot be applied (unknown field, bad type or range)."""


@dataclass(slots=True)
class FaultConfig:
    """The faults injected in front of one processor, and how its refunds settle."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    outage: bool = False
    pending_rate: float = 0.0
    fail_later_rate: float = 0.0
    settle_ms: float = 2000.0
    timeout_ms: float = 35000.0
    webhook_duplicate_rate: float = 0.0
    # Events never delivered (an endpoint misconfigured at the processor): only a look-up can tell.
    webhook_drop_rate: float = 0.0
    malformed_rate: float = 0.0  # executed, answered 2xx, but the body arrives mangled
    idempotency_retention_seconds: float = _DAY  # a key older than this is forgotten: it executes again
    # Of the refunds that fail after succeeding, the share that is reversed rather than failed (only
    # Adyen tells the two apart: REFUNDED_REVERSED instead of REFUND_FAILED).
    reversal_rate: float = 0.0
    # The processor's documented webhook retry schedule (Adyen: 9 s ... 8 h, for 30 days) runs at this
    # fraction of real time: 1 is the real pace, 0.001 turns hours into seconds, 0 retries at once.
    webhook_retry_scale: float = 1.0
    # How long an OAuth access token lives (PayPal: its token answer's ``expires_in``, 32400 s = 9 h);
    # shorten it to see tokens expire mid-run. Processors without tokens ignore it.
    token_ttl_seconds: float = 32_400.0
    # Of the injected 5xx answers (``error_rate``), the share that come after the processor executed
    # the request (its edge lost the answer), for processors whose 5xx may have executed and is not
    # remembered for its idempotency key (Checkout.com). 0: every 5xx executed nothing. Only the
    # Checkout.com simulator takes it; the others ignore it.
    executed_error_share: float = 0.0

    @classmethod
    def for_processor(cls, processor: str) -> FaultConfig:
        return cls(idempotency_retention_seconds=DEFAULT_RETENTION_SECONDS.get(processor, _DAY))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def delay_seconds(self) -> float:
        """The injected latency for one answer: ``latency_ms`` ± uniform ``jitter_ms``, never negative."""
        delay = self.latency_ms
        if self.jitter_ms:
            delay += random.uniform(-self.jitter_ms, self.jitter_ms)
        return max(delay, 0.0) / 1000.0

    async def sleep_latency(self) -> None:
        delay = self.delay_seconds()
        if delay > 0:
            await asyncio.sleep(delay)

    def mangles(self) -> bool:
        """Whether this successful answer reaches the client mangled (``malformed_rate``)."""
        return self.malformed_rate > 0 and random.random() < self.malformed_rate

    def drops_webhook(self) -> bool:
        """Whether this event is lost, never delivered (``webhook_drop_rate``)."""
        return self.webhook_drop_rate > 0 and random.random() < self.webhook_drop_rate

    def duplicates_webhook(self) -> bool:
        """Whether this delivery goes out twice (``webhook_duplicate_rate``)."""
        return self.webhook_duplicate_rate > 0 and random.random() < self.webhook_duplicate_rate

    def reverses(self) -> bool:
        """Whether a refund failing after its success is reversed rather than failed (``reversal_rate``)."""
        return self.reversal_rate > 0 and random.random() < self.reversal_rate

    def error_executes(self) -> bool:
        """Whether this injected 5xx comes after the request executed (``executed_error_share``)."""
        return self.executed_error_share > 0 and random.random() < self.executed_error_share

    def roll(self) -> Outcome:
        """Decide what happens to one request (rates are exclusive slices of one roll)."""
        if not (self.error_rate or self.reset_rate or self.timeout_rate):
            return Outcome.NORMAL
        r = random.random()
        if r < self.error_rate:
            return Outcome.ERROR
        r -= self.error_rate
        if r < self.reset_rate:
            # Half of the resets happen after the processor executed the request, half before.
            return Outcome.RESET_AFTER if r < self.reset_rate / 2 else Outcome.RESET_BEFORE
        r -= self.reset_rate
        if r < self.timeout_rate:
            return Outcome.TIMEOUT
        return Outcome.NORMAL


class Outcome(enum.Enum):
    """What the fault injector decided for one request."""

    NORMAL = "normal"
    ERROR = "error"  # 5xx in front of the processor, nothing executed
    RESET_BEFORE = "reset_before"  # connection aborted, nothing executed
    RESET_AFTER = "reset_after"  # executed, then the connection is aborted
    TIMEOUT = "timeout"  # executed, then the answer hangs timeout_ms

    @property
    def executes(self) -> bool:
        return self in _EXECUTES


_EXECUTES = frozenset({Outcome.NORMAL, Outcome.RESET_AFTER, Outcome.TIMEOUT})


@dataclass(frozen=True, slots=True)
class Plan:
    """How an executed refund moves: its first status and, maybe, a later one after ``delay`` seconds."""

    initial: str  # "pending" | "succeeded"
    final: str | None  # "succeeded" | "failed" | None (stays as it is)
    delay: float


def plan_refund(config: FaultConfig) -> Plan:
    """Roll the lifecycle of a new refund.

    ``pending_rate`` of refunds start pending and settle after ``settle_ms``; ``fail_later_rate`` of
    all refunds end up failed after ``settle_ms`` (a pending one settles to failed, a succeeded one
    flips to failed), the others succeed.
    """
    delay = config.settle_ms / 1000.0
    fails = config.fail_later_rate > 0 and random.random() < config.fail_later_rate
    if config.pending_rate > 0 and random.random() < config.pending_rate:
        return Plan("pending", "failed" if fails else "succeeded", delay)
    if fails:
        return Plan("succeeded", "failed", delay)
    return Plan("succeeded", None, 0.0)


_FIELD_NAMES = frozenset(f.name for f in fields(FaultConfig))


def _validated(name: str, value: object) -> float | bool:
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise FaultConfigError(f"{name} must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultConfigError(f"{name} must be a number")
    number = float(value)
    if name in _RATE_FIELDS and not 0.0 <= number <= 1.0:
        raise FaultConfigError(f"{name} must be between 0 and 1")
    if name in _MS_FIELDS and not 0.0 <= number <= 3_600_000.0:
        raise FaultConfigError(f"{name} must be between 0 and 3600000 milliseconds")
    if name in _SECONDS_FIELDS and not 0.0 <= number <= _MAX_SECONDS:
        raise FaultConfigError(f"{name} must be between 0 and {_MAX_SECONDS:.0f} seconds")
    if name in _SCALE_FIELDS and not 0.0 <= number <= 1.0:
        raise FaultConfigError(f"{name} must be between 0 (no waiting) and 1 (the real schedule)")
    return number


class Faults:
    """The fault configuration of every processor."""

    def __init__(self) -> None:
        self._configs: dict[str, FaultConfig] = {p: FaultConfig.for_processor(p) for p in PROCESSORS}

    def get(self, processor: str) -> FaultConfig:
        return self._configs[processor]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: config.as_dict() for name, config in self._configs.items()}

    def update(self, payload: Mapping[str, object]) -> dict[str, dict[str, Any]]:
        """Apply ``payload`` to one processor (``processor`` key) or all; absent fields keep their value.

        Validates everything before changing anything.
        """
        processor = payload.get("processor")
        if processor is not None and (not isinstance(processor, str) or processor not in self._configs):
            raise FaultConfigError(
                f"unknown processor {processor!r}; expected one of {', '.join(PROCESSORS)}"
            )
        changes: dict[str, float | bool] = {}
        for name, value in payload.items():
            if name == "processor":
                continue
            if name not in _FIELD_NAMES:
                raise FaultConfigError(f"unknown fault field {name!r}")
            changes[name] = _validated(name, value)
        targets = [self._configs[processor]] if isinstance(processor, str) else list(self._configs.values())
        for config in targets:
            for name, value in changes.items():
                setattr(config, name, value)
        return self.snapshot()

    def reset(self) -> None:
        self._configs = {p: FaultConfig.for_processor(p) for p in PROCESSORS}
