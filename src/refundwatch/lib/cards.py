"""Payment card numbers in free text: found, refused at intake, masked in logs.

refundwatch never needs a card number, so none may enter through a free-text field (order and invoice
ids, refund metadata) or leave through a log line. What counts as one: a Luhn-valid run of 13 to 19
digits, written together or in groups separated by single spaces or dashes ("4242 4242 4242 4242",
"4242-4242-4242-4242", "refund for card 4111111111111111 pls").

How a text is scanned:

- A *run* is a maximal stretch of ASCII digits in which neighbouring digits are separated by at most
  one space, tab, no-break space or dash. Its digit groups are the pieces between separators.
- Every stretch of consecutive whole groups holding 13 to 19 digits is a candidate, so a card number
  is found when other numbers are written next to it ("qty 2 4111 1111 1111 1111 exp 12 25").
- A single unbroken stretch of more than 19 digits is not searched for windows inside it: any window
  is Luhn-valid one time in ten, so a 25-digit reference would hold a "card number" almost always, and
  such a number is not how anyone writes a card.
- Digits inside a UUID, digits glued to a hexadecimal word (``a716…``, ``…deadbeef``: hashes,
  tokens) and ISO dates (``2024-01-15``) are left out, so they never pass for card numbers. A card
  number glued to such a word (``cafe4111…``) is missed; glued to any other word (``ORD4111…``) it is
  found.

Order or invoice ids that happen to be Luhn-valid numbers of 13 to 19 digits are refused too: one
such id in ten is. That is accepted for these fields: a number that looks exactly like a card number
cannot be told apart from one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from refundwatch.lib.exceptions import ValidationFailed

MIN_DIGITS, MAX_DIGITS = 13, 19
CARD_MASK = "[card number]"
REFUSED_CODE = "card_number_refused"

_RUN = re.compile(r"[0-9](?:[ \t\u00a0-]?[0-9])*")
_GROUP = re.compile(r"[0-9]+")
_HEX_WORD = re.compile(r"[0-9A-Fa-f]+")
_ASCII_ALNUM = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_UUID = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])"
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _word_around(text: str, start: int, end: int) -> str:
    """The ASCII letters and digits glued to ``text[start:end]`` on both sides, with it."""
    while start > 0 and text[start - 1] in _ASCII_ALNUM:
        start -= 1
    while end < len(text) and text[end] in _ASCII_ALNUM:
        end += 1
    return text[start:end]


def _glued_to_hex(text: str, start: int, end: int) -> bool:
    word = _word_around(text, start, end)
    return len(word) > end - start and _HEX_WORD.fullmatch(word) is not None


def _is_date(groups: list[str], seps: list[str], i: int) -> bool:
    """ISO ``YYYY-MM-DD`` (or ``DD-MM-YYYY``) starting at group ``i``."""
    if i + 2 >= len(groups) or seps[i] != "-" or seps[i + 1] != "-":
        return False
    sizes = tuple(len(g) for g in groups[i : i + 3])
    if sizes == (4, 2, 2):
        year, month, day = (int(g) for g in groups[i : i + 3])
    elif sizes == (2, 2, 4):
        day, month, year = (int(g) for g in groups[i : i + 3])
    else:
        return False
    return 1900 <= year <= 2199 and 1 <= month <= 12 and 1 <= day <= 31


def _excluded_groups(
    text: str, spans: list[tuple[int, int]], seps: list[str], uuids: list[tuple[int, int]]
) -> set[int]:
    groups = [text[s:e] for s, e in spans]
    excluded = {i for i, (s, e) in enumerate(spans) if any(u0 <= s and e <= u1 for u0, u1 in uuids)}
    if _glued_to_hex(text, *spans[0]):
        excluded.add(0)
    if _glued_to_hex(text, *spans[-1]):
        excluded.add(len(spans) - 1)
    for i in range(len(groups)):
        if _is_date(groups, seps, i):
            excluded.update((i, i + 1, i + 2))
    return excluded


def _candidates_in_run(
    text: str, run_start: int, run_end: int, uuids: list[tuple[int, int]]
) -> Iterator[tuple[int, int]]:
    spans = [(m.start(), m.end()) for m in _GROUP.finditer(text, run_start, run_end)]
    seps = [text[spans[i][1]] for i in range(len(spans) - 1)]
    excluded = _excluded_groups(text, spans, seps, uuids)
    for first in range(len(spans)):
        digits = ""
        for last in range(first, len(spans)):
            if last in excluded:
                break
            digits += text[spans[last][0] : spans[last][1]]
            if len(digits) > MAX_DIGITS:
                break
            if len(digits) >= MIN_DIGITS and luhn_valid(digits):
                yield spans[first][0], spans[last][1]


def card_number_spans(text: str) -> list[tuple[int, int]]:
    """Where card numbers are in ``text``: sorted, non-overlapping ``(start, end)`` character spans."""
    runs = [run.span() for run in _RUN.finditer(text) if run.end() - run.start() >= MIN_DIGITS]
    if not runs:
        return []
    uuids = [m.span() for m in _UUID.finditer(text)] if "-" in text else []
    found = sorted(span for start, end in runs for span in _candidates_in_run(text, start, end, uuids))
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def find_card_number(text: str) -> bool:
    """Whether ``text`` holds something that is, or cannot be told apart from, a card number."""
    return bool(card_number_spans(text))


def mask_card_numbers(text: str, mask: str = CARD_MASK) -> str:
    """``text`` with every card number replaced by ``mask``."""
    spans = card_number_spans(text)
    if not spans:
        return text
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        pieces.append(mask)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def refuse_card_numbers(fields: Mapping[str, str | None]) -> None:
    """Raise ``ValidationFailed`` (``card_number_refused``, 422) naming the first field that holds a
    card number. The message names the field, never its value."""
    for name, value in fields.items():
        if value and find_card_number(value):
            raise ValidationFailed(
                f"{name} looks like it contains a payment card number; remove it "
                "(card numbers are never stored)",
                code=REFUSED_CODE,
            )
