"""Where alerts go: the Apprise URLs of REFUNDWATCH_ALERT_URLS.

The URLs carry tokens (a Slack webhook, a mail password), so nothing outside this module sees one: a
target is stored as a keyed fingerprint of its URL and shown as its position and service name.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

import apprise

# Apprise logs the addresses it talks to (at debug, whole URLs with their tokens): refundwatch records
# each send's outcome itself, by target position, and keeps Apprise's own chatter out of its logs.
logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)


@dataclass(frozen=True, slots=True)
class Target:
    fingerprint: str  # stored with each delivery; never reversible to the URL
    label: str  # "2 (JSON)": position in REFUNDWATCH_ALERT_URLS and service name
    url: str

    def __repr__(self) -> str:  # a repr in a traceback must not carry the URL
        return f"Target({self.label})"


def fingerprint(url: str, key: str) -> str:
    return hmac.new(key.encode(), url.encode(), hashlib.sha256).hexdigest()[:32]


def _service_name(url: str) -> str | None:
    notifier = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if not notifier:
        return None
    return str(getattr(notifier, "service_name", "") or url.partition(":")[0])


def invalid_targets(urls: list[str]) -> list[int]:
    """Positions (from 1) of the URLs Apprise cannot use."""
    return [i for i, url in enumerate(urls, 1) if _service_name(url) is None]


def targets(urls: list[str], key: str) -> list[Target]:
    found = []
    for i, url in enumerate(urls, 1):
        name = _service_name(url) or "invalid URL"
        found.append(Target(fingerprint(url, key), f"{i} ({name})"[:64], url))
    return found
