"""Structured JSON logs on stderr. Nothing here ever formats request bodies, headers or secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from refundwatch.config import Settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if settings.log_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Third-party chatter: arq logs every job at INFO; httpx-style clients log URLs.
    for noisy in ("arq.worker", "arq.jobs", "httpx2", "httpcore", "httpx", "granian.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
