"""When a failed delivery is tried again (pure).

The wait after failed attempt ``n`` is ``base · 3^(n-1)``, capped, times a random factor between 0.8
and 1.2 (jitter: endpoints that fail together do not retry in lock-step). With the defaults (base 5 s,
cap 12 h, 15 attempts) the attempts go out at about:

    0 s, 5 s, 20 s, 1 min, 3 min, 10 min, 30 min, 1.5 h, 4.5 h, 13.7 h, 25.7 h, 37.7 h, 49.7 h,
    61.7 h, 73.7 h

— the first retries within seconds, the last about three days after the change. After the last
attempt fails the delivery is given up (``failed``); an operator can re-send it.
"""

from __future__ import annotations

import random

GROWTH = 3.0
JITTER = 0.2


def nominal_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds between failed attempt ``attempt`` (1-based) and the next, before jitter."""
    return min(cap, base * GROWTH ** min(attempt - 1, 64))


def next_delay(
    attempt: int, *, base: float, cap: float, max_attempts: int, rand: random.Random | None = None
) -> float | None:
    """Seconds until the next attempt after failed attempt ``attempt``; ``None``: give up."""
    if attempt >= max_attempts:
        return None
    factor = 1 - JITTER + 2 * JITTER * (rand or random).random()
    return nominal_delay(attempt, base=base, cap=cap) * factor


def nominal_schedule(*, base: float, cap: float, max_attempts: int) -> list[float]:
    """Seconds from the change to each attempt, before jitter (what the docstring above lists)."""
    at, schedule = 0.0, [0.0]
    for attempt in range(1, max_attempts):
        at += nominal_delay(attempt, base=base, cap=cap)
        schedule.append(at)
    return schedule
