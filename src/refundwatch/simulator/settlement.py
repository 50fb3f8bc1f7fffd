"""Settlement data from the ledger, and the discrepancies injected into it (CONTRACT §7).

Shared by every processor that offers a settlement report: this module turns the store's payments and
refunds into generic :class:`Line` s (a payment captured, a refund paid out, a refund that came back),
applies the accumulated :class:`Discrepancy` s, and leaves the file format to the processor's own
``settlement`` module (registered with :meth:`Reports.register`).

What is settled: every registered payment; every refund that really succeeded (``succeeded_at`` set:
pending and refused ones are not); for a refund that succeeded and then failed or was reversed, also
the line that gives the money back. Each line keeps its time and ids, so a later report repeats an
earlier line byte for byte: reports are cumulative, "everything in the ledger so far".

Payouts: a line belongs to the payout of its day in the processor's reporting time zone (a daily
cut-off at midnight); ``shift_cutoff`` moves one refund's line to the next day's payout.

Discrepancies accumulate until ``POST /_control/reset``; each applies to every later report. They
change the settlement data only, never the refund objects or webhooks: a ``fail_after_success`` is a
failure refundwatch can learn from the report alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Final

from .state import Payment, Store

__all__ = [
    "DISCREPANCY_KINDS",
    "Discrepancy",
    "DiscrepancyError",
    "Line",
    "Reports",
    "exponent",
    "major",
    "payout_day",
    "sleep_until",
    "stable_id",
]

DISCREPANCY_KINDS: Final = (
    "drop_line",
    "change_amount",
    "foreign_refund",
    "fail_after_success",
    "duplicate_line",
    "shift_cutoff",
)
_REFUND_KINDS: Final = frozenset(DISCREPANCY_KINDS) - {"foreign_refund"}
_FIELDS: Final = frozenset({"processor", "kind", "gateway_refund_id", "amount", "payment_reference"})
# refundwatch's bound on a settlement line (its import refuses a bigger one, and the whole file with it).
MAX_AMOUNT: Final = 10**15

# ISO 4217 exponents (the simulator keeps its own table: STYLE rule 12). Anything else has two.
_ZERO_DECIMAL: Final = frozenset(
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()  # noqa: SIM905
)
_THREE_DECIMAL: Final = frozenset("BHD IQD JOD KWD LYD OMR TND".split())  # noqa: SIM905


def exponent(currency: str) -> int:
    code = currency.upper()
    return 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2


def major(amount: int, currency: str) -> str:
    """Minor units as the decimal a report prints: ``-1250`` EUR → ``-12.50``, ``1200`` JPY → ``1200``."""
    places = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def stable_id(prefix: str, *parts: str, length: int = 24, upper: bool = False) -> str:
    """An id derived from ``parts`` (the same in every report): ``prefix`` + ``length`` hex digits."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]
    return prefix + (digest.upper() if upper else digest)


def payout_day(at: int, zone: tzinfo, shift: int = 0) -> date:
    """The payout a line at ``at`` (Unix seconds) belongs to: its day in ``zone``, ``shift`` days later."""
    return datetime.fromtimestamp(at, zone).date() + timedelta(days=shift)


class DiscrepancyError(ValueError):
    """A discrepancy that cannot be injected: ``status`` and a machine-readable ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Discrepancy:
    processor: str
    kind: str
    gateway_refund_id: str | None
    amount: int | None
    payment_reference: str | None
    created: int
    line_refund_id: str | None = None  # foreign_refund: the refund id the processor gave it

    def as_dict(self) -> dict[str, Any]:
        refund_id = self.line_refund_id if self.kind == "foreign_refund" else self.gateway_refund_id
        return {
            "processor": self.processor,
            "kind": self.kind,
            "gateway_refund_id": refund_id,
            "amount": self.amount,
            "payment_reference": self.payment_reference,
            "created": self.created,
        }


@dataclass(slots=True)
class Line:
    """One settlement line, before a processor writes it in its format."""

    kind: str  # "payment" | "refund" | "refund_failure"
    at: int  # Unix seconds: when it was booked
    payment: Payment
    amount: int  # positive minor units; the direction follows from the kind
    currency: str
    refund_id: str | None = None  # the processor's refund id (refund and refund_failure lines)
    metadata: dict[str, str] = field(default_factory=dict)  # the refund's (Stripe)
    extra: dict[str, Any] = field(default_factory=dict)  # the refund's processor-specific fields
    shift: int = 0  # days past its own payout (shift_cutoff)
    injected: bool = False  # made by a discrepancy, not by a refund of the ledger


Renderer = Callable[[list[Line]], str]


@dataclass(frozen=True, slots=True)
class _Format:
    render: Renderer
    new_refund_id: Callable[[], str]
    media_type: str
    filename: str


class Reports:
    """The processors' settlement reports and the discrepancies injected into them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._formats: dict[str, _Format] = {}
        self.discrepancies: list[Discrepancy] = []

    def register(
        self, processor: str, render: Renderer, new_refund_id: Callable[[], str], *, filename: str
    ) -> None:
        self._formats[processor] = _Format(render, new_refund_id, "text/csv; charset=utf-8", filename)

    @property
    def processors(self) -> tuple[str, ...]:
        return tuple(self._formats)

    def reset(self) -> None:
        self.discrepancies.clear()

    # -- reports ----------------------------------------------------------------------------------
    def report(
        self, processor: str, credential: str | None = None, since: int | None = None
    ) -> tuple[str, str, str]:
        """(body, media type, file name) of ``processor``'s report; KeyError if it offers none.
        ``credential``: one merchant account's report (the refunds made with that API credential);
        ``since``: only the lines booked at or after that Unix second (a later period's report)."""
        fmt = self._formats[processor]
        lines = self.lines(processor, credential)
        if since is not None:
            lines = [line for line in lines if line.at >= since]
        return fmt.render(lines), fmt.media_type, fmt.filename

    def lines(self, processor: str, credential: str | None = None) -> list[Line]:
        """Every settlement line of ``processor`` so far, discrepancies applied, in booking order.
        Payments are not tied to an account here, so every account's report lists them all."""
        lines: list[Line] = [
            Line("payment", p.created, p, p.amount, p.currency)
            for p in self.store.payments.values()
            if p.processor == processor
        ]
        for refund in self.store.ledger:
            if refund.processor != processor or refund.succeeded_at is None:
                continue
            if credential is not None and refund.credential != credential:
                continue
            for kind, at in (("refund", refund.succeeded_at), ("refund_failure", refund.undone_at)):
                if at is not None:
                    line = Line(kind, at, refund.payment, refund.amount, refund.currency, refund.id)
                    line.metadata, line.extra = refund.metadata, refund.extra
                    lines.append(line)
        for found in self.discrepancies:
            if found.processor == processor:
                lines = self._apply(found, lines)
        lines.sort(key=lambda line: line.at)  # stable: equal times keep the ledger's order
        return lines

    # -- discrepancies ----------------------------------------------------------------------------
    def inject(self, data: dict[str, Any]) -> Discrepancy:
        """Validate and keep one discrepancy (DiscrepancyError otherwise)."""
        unknown = set(data) - _FIELDS
        if unknown:
            raise DiscrepancyError(400, "unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
        processor, kind = data.get("processor"), data.get("kind")
        if not isinstance(processor, str) or processor not in self._formats:
            raise DiscrepancyError(
                400, "invalid_processor", f"processor must be one of {', '.join(self._formats)}"
            )
        if kind not in DISCREPANCY_KINDS:
            raise DiscrepancyError(400, "invalid_kind", f"kind must be one of {', '.join(DISCREPANCY_KINDS)}")
        refund_id, amount, reference = (
            data.get("gateway_refund_id"),
            data.get("amount"),
            data.get("payment_reference"),
        )
        if amount is not None and (
            isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT
        ):
            message = f"amount must be a positive integer in minor units, at most {MAX_AMOUNT}"
            raise DiscrepancyError(400, "invalid_amount", message)
        if kind == "foreign_refund":
            return self._foreign(processor, amount, reference, data)
        if not isinstance(refund_id, str) or not refund_id:
            raise DiscrepancyError(400, "missing_gateway_refund_id", f"{kind} needs gateway_refund_id")
        if reference is not None:
            raise DiscrepancyError(400, "unexpected_field", "payment_reference is only for foreign_refund")
        if kind == "change_amount" and amount is None:
            raise DiscrepancyError(400, "missing_amount", "change_amount needs amount: what is reported now")
        if kind != "change_amount" and amount is not None:
            raise DiscrepancyError(
                400, "unexpected_field", "amount is only for change_amount and foreign_refund"
            )
        refund = self.store.get_refund(processor, refund_id)
        if refund is None:
            raise DiscrepancyError(404, "unknown_refund", f"{processor} has no refund {refund_id!r}")
        if refund.succeeded_at is None:
            raise DiscrepancyError(
                409,
                "refund_not_settled",
                f"refund {refund_id} is {refund.status} and never succeeded: it has no settlement line",
            )
        found = Discrepancy(processor, str(kind), refund_id, amount, None, int(time.time()))
        self.discrepancies.append(found)
        return found

    def _apply(self, found: Discrepancy, lines: list[Line]) -> list[Line]:
        if found.kind == "foreign_refund":
            payment = self.store.find_payment(found.processor, found.payment_reference or "")
            if payment is None or found.amount is None:
                return lines
            made = Line(
                "refund", found.created, payment, found.amount, payment.currency, found.line_refund_id
            )
            made.injected = True
            return [*lines, made]
        out: list[Line] = []
        for line in lines:
            if line.kind != "refund" or line.refund_id != found.gateway_refund_id:
                out.append(line)
            elif found.kind == "drop_line":
                continue
            elif found.kind == "change_amount":
                out.append(replace(line, amount=found.amount or line.amount))
            elif found.kind == "duplicate_line":
                out += [line, replace(line)]
            elif found.kind == "shift_cutoff":
                out.append(replace(line, shift=line.shift + 1))
            else:  # fail_after_success: the money comes back, booked when the discrepancy was injected
                out += [line, replace(line, kind="refund_failure", at=found.created, shift=0, injected=True)]
        return out

    def _foreign(
        self, processor: str, amount: object, reference: object, data: dict[str, Any]
    ) -> Discrepancy:
        if data.get("gateway_refund_id") is not None:
            raise DiscrepancyError(
                400, "unexpected_field", "foreign_refund takes no gateway_refund_id: the processor gives one"
            )
        if not isinstance(amount, int):
            raise DiscrepancyError(400, "missing_amount", "foreign_refund needs amount")
        if not isinstance(reference, str) or not reference:
            raise DiscrepancyError(400, "missing_payment_reference", "foreign_refund needs payment_reference")
        if self.store.find_payment(processor, reference) is None:
            raise DiscrepancyError(404, "unknown_payment", f"{processor} has no payment {reference!r}")
        new_id = self._formats[processor].new_refund_id()
        found = Discrepancy(processor, "foreign_refund", None, amount, reference, int(time.time()), new_id)
        self.discrepancies.append(found)
        return found


async def sleep_until(moment: float) -> None:
    """Sleep until ``time.time()`` has reached ``moment``. uvloop may wake a sleep up to a millisecond
    early, and a period cut at a whole second must not be read before that second has begun."""
    while (left := moment - time.time()) > 0:  # noqa: ASYNC110 — waiting on the clock, not an event
        await asyncio.sleep(left)
