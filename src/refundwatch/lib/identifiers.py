"""Identifiers people and systems send (payment references, order and invoice ids): plain text only."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from refundwatch.lib.exceptions import ValidationFailed


def refuse_control_characters(fields: Mapping[str, str | None]) -> None:
    """Raise ``ValidationFailed`` (422 ``validation_error``) naming the first field with a control
    character (Unicode category Cc: NUL, escapes, tabs, line breaks). PostgreSQL cannot store NUL, and
    the others reach tables, logs and exported files. The value is never echoed."""
    for name, value in fields.items():
        if value is not None and any(unicodedata.category(c) == "Cc" for c in value):
            raise ValidationFailed(f"{name} must not contain control characters", code="validation_error")


def whole_number(raw: str, maximum: int) -> int | None:
    """``raw`` as a whole number from 0 to ``maximum`` (a cursor, a form's setting), or None. ASCII
    digits only: ``isdigit()`` also takes "²", which ``int()`` refuses. No longer than ``maximum``
    written out, so a huge number neither overflows a database integer nor reaches ``int()``'s limit
    of 4,300 digits (a ValueError)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(maximum)):
        return None
    value = int(raw)
    return value if value <= maximum else None
