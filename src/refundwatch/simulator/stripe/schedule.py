"""Stripe's payout periods in the simulator: which automatic payout a settlement line belongs to.

Each UTC day is one payout period, cut off at midnight; ``POST /_control/payouts/pay`` cuts the current
period short at that moment (the cut-offs are the processor's, the same for every account). A line
belongs to the period it was booked in; ``shift_cutoff`` moves it to the period after. A period is
closed once its end has passed: its payouts exist from then on, and are paid (see ``payouts``).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ..settlement import stable_id

__all__ = ["Period", "Schedule"]


def _midnight(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), UTC).timestamp())


@dataclass(frozen=True, slots=True)
class Period:
    day: date  # UTC
    seq: int  # 0 for the period that starts at midnight, then one more per cut-off that day
    start: int  # Unix seconds, inclusive
    end: int  # Unix seconds, exclusive: the cut-off, when its payouts are created and paid

    def closed(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.end


class Schedule:
    """The cut-offs made so far (``reset`` forgets them) and the periods they make."""

    def __init__(self) -> None:
        self._cuts: list[int] = []  # sorted Unix seconds

    def reset(self) -> None:
        self._cuts.clear()

    def cut(self, at: int) -> Period:
        """Cut the period running at ``at`` there; returns the period that ends at ``at``."""
        if at not in self._cuts:
            bisect.insort(self._cuts, at)
        return self.period_of(at - 1)

    def _cuts_on(self, day: date) -> list[int]:
        start, end = _midnight(day), _midnight(day + timedelta(days=1))
        return self._cuts[bisect.bisect_left(self._cuts, start) : bisect.bisect_left(self._cuts, end)]

    def _period(self, day: date, seq: int) -> Period:
        cuts = self._cuts_on(day)
        start = _midnight(day) if seq == 0 else cuts[seq - 1]
        end = cuts[seq] if seq < len(cuts) else _midnight(day + timedelta(days=1))
        return Period(day, seq, start, end)

    def period_of(self, at: int, shift: int = 0) -> Period:
        """The period a line booked at ``at`` belongs to, ``shift`` periods later."""
        day = datetime.fromtimestamp(at, UTC).date()
        period = self._period(day, bisect.bisect_right(self._cuts_on(day), at))
        for _ in range(shift):
            following = period.seq + 1
            if following <= len(self._cuts_on(period.day)):
                period = self._period(period.day, following)
            else:
                period = self._period(period.day + timedelta(days=1), 0)
        return period

    @staticmethod
    def payout_id(period: Period, currency: str) -> str:
        """The automatic payout of ``period`` in ``currency`` (one per currency, as Stripe pays them)."""
        parts = [period.day.isoformat()] + ([str(period.seq)] if period.seq else []) + [currency.upper()]
        return stable_id("po_", "stripe payout", *parts)
