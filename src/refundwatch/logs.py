"""Structured JSON logs on stderr. Nothing here ever formats request bodies, headers or secrets.

And should anything else put a secret into a log line, it is scrubbed before any handler writes it
(STYLE rule 5): card numbers, bearer tokens and Authorization values, ``rw_`` API keys, JWTs, processor
secrets (``sk_live_``/``sk_test_``/``rk_…``/``whsec_``, PayPal's ``A21AA…`` tokens), cookie headers and
``name=value`` pairs whose name says secret (password, token, api_key, client_secret…). The message
(with its arguments filled in) and any exception or stack text are scrubbed; nothing else of a record is
ever written.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

from refundwatch.config import Settings
from refundwatch.lib.cards import CARD_MASK, mask_card_numbers

REDACTED = "[redacted]"

# Between a header or field name and its value: `: `, `=`, `": "`, `', b'` (an ASGI header tuple)…
_SEP = r"""["']?\s*(?:[:=]\s*(?:b?["'])?|,\s*b?["'])"""
_NOT_DONE = r"(?!\[redacted\])"  # scrubbing scrubbed text changes nothing
_VALUE_STOP = r"""\s"',;)\]}>"""


def _keep_scheme(match: re.Match[str]) -> str:
    scheme = match.group(2)
    return f"{match.group(1)}{scheme + ' ' if scheme else ''}{REDACTED}"


_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # Authorization / Proxy-Authorization header values, keeping the scheme word.
    (
        re.compile(
            rf"(?i)\b((?:proxy-)?authorization{_SEP})(?![a-z]+\s+\[redacted\]){_NOT_DONE}"
            rf"(?:(bearer|basic|token|digest|negotiate)\s+)?[^{_VALUE_STOP}]+"
        ),
        _keep_scheme,
    ),
    (re.compile(rf"(?i)\b(bearer\s+){_NOT_DONE}[A-Za-z0-9\-._~+/]+=*"), r"\1" + REDACTED),
    # Whole cookie headers: every name=value pair in them is somebody's session.
    (re.compile(rf"(?i)\b((?:set-)?cookie{_SEP})[^\r\n\"']+"), r"\1" + REDACTED),
    # JSON Web Tokens (JWS: three base64url segments; JWE: five), whatever surrounds them.
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}"), REDACTED),
    # refundwatch API keys and processor secrets, recognisable by their prefixes.
    (re.compile(r"(?<![A-Za-z0-9])rw_[A-Za-z0-9_-]{20,}"), REDACTED),
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9_]+"), REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9_+/=]+"), REDACTED),
    # PayPal access tokens, even without a Bearer scheme or a field name before them.
    (re.compile(r"(?<![A-Za-z0-9])A21AA[A-Za-z0-9_\-.]{20,}"), REDACTED),
    # name=value pairs whose name says what the value is.
    (
        re.compile(
            r"(?i)(?<![\w-])([\w-]{0,40}(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|hmac[_-]?key"
            rf"|signature[_-]?key|secret[_-]?key){_SEP}){_NOT_DONE}[^{_VALUE_STOP}&]+"
        ),
        r"\1" + REDACTED,
    ),
]


def scrub(text: str) -> str:
    """``text`` without secrets (``[redacted]``) or card numbers (``[card number]``)."""
    for rule, replacement in _RULES:
        text = rule.sub(replacement, text)
    return mask_card_numbers(text, CARD_MASK)


_SCRUBBED = "_refundwatch_scrubbed"


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Replace the record's message (arguments filled in), exception and stack text by scrubbed text."""
    if getattr(record, _SCRUBBED, False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - bad arguments (or a raising __str__) must not leak or stop logging
        message = f"{record.msg} [unformattable log arguments dropped]"
    record.msg, record.args = scrub(message), ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    setattr(record, _SCRUBBED, True)
    return record


class ScrubbingFilter(logging.Filter):
    """A handler filter that scrubs every record it lets through (it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


class _ScrubbingRecordFactory:
    """Scrubs every record as it is made, so handlers set up later (Litestar configures its own
    logging after ``configure_logging`` runs) never see an unscrubbed one either."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(self.inner(*args, **kwargs))


# The id of the HTTP request being served (web.requestlog sets it), on every record written meanwhile.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Structured fields passed as ``extra={"fields": {...}}``: ids, codes, numbers (scrubbed anyway).
        for key, value in (getattr(record, "fields", None) or {}).items():
            entry.setdefault(key, scrub(value) if isinstance(value, str) else value)
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id and request_id != "-":
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def install_scrubbing() -> None:
    """Scrub records as they are made, and at every handler configured so far (idempotent)."""
    if not isinstance(logging.getLogRecordFactory(), _ScrubbingRecordFactory):
        logging.setLogRecordFactory(_ScrubbingRecordFactory(logging.getLogRecordFactory()))
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
                handler.addFilter(ScrubbingFilter())


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if settings.log_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Third-party chatter: arq logs every job at INFO; httpx-style clients log URLs.
    for noisy in ("arq.worker", "arq.jobs", "httpx2", "httpcore", "httpx", "granian.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_scrubbing()
