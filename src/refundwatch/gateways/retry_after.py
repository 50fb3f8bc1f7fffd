"""``Retry-After`` as every processor sends it (RFC 9110 §10.2.3): delta-seconds or an HTTP date."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds from now, or None when absent or invalid."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
