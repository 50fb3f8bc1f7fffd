"""The gateway connections file (CONTRACT §6): parsing and validation, nothing persisted here."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from refundwatch.lib.exceptions import BadInput

# Per processor: (secret fields, plain required fields). Secrets are encrypted at rest.
PROCESSOR_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "stripe": (("api_key", "webhook_secret"), ()),
    "adyen": (("api_key", "hmac_key"), ("merchant_account",)),
    "paypal": (("client_secret",), ("client_id", "webhook_id")),
    "checkout": (("secret_key", "webhook_signature_key"), ()),
    "square": (("access_token", "webhook_signature_key"), ("notification_url",)),
    "braintree": (("private_key",), ("merchant_id", "public_key")),
}
# Per processor: (optional secret fields, optional plain fields), CONTRACT §6. Stored only when given.
PROCESSOR_OPTIONAL_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "adyen": (
        ("webhook_password", "report_password"),
        ("live_prefix", "webhook_username", "report_username"),
    ),
    "paypal": ((), ("webhook_verification",)),
    "checkout": (("webhook_authorization",), ("platform",)),
}
# Optional flags (true or false), stored as "true" or "false" among the options.
PROCESSOR_OPTIONAL_FLAGS: dict[str, tuple[str, ...]] = {"braintree": ("void_unsettled",)}
# Optional for every processor: connections with the same processor and account reach the same account
# (connections.services.ConnectionCache.siblings).
ACCOUNT = "account"
MAX_ACCOUNT = 255
MAX_BASE_URL = 500  # db.models.Connection.base_url
_OPTIONAL = {
    "enabled",
    "rate_limit_per_second",
    "health_check_interval_seconds",
    "timeout_seconds",
    "base_url",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    name: str
    processor: str
    base_url: str | None
    secrets: dict[str, str]
    options: dict[str, str]
    enabled: bool = True
    rate_limit_per_second: int | None = None
    health_check_interval_seconds: int = 60
    timeout_seconds: int = 30


def _positive_int(name: str, field: str, value: Any, *, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise BadInput(f"connection {name!r}: {field} must be a whole number from 1 to {maximum}")
    return value


def parse_connection(table: Any, index: int) -> ConnectionSpec:
    if not isinstance(table, dict):
        raise BadInput(f"connection #{index}: must be a table")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadInput(f"connection #{index}: name must be lower-case letters, digits, - or _ (max 64)")
    processor = table.get("processor")
    if processor not in PROCESSOR_FIELDS:
        raise BadInput(f"connection {name!r}: processor must be one of {', '.join(PROCESSOR_FIELDS)}")
    secret_fields, plain_fields = PROCESSOR_FIELDS[processor]
    optional_secrets, optional_plain = PROCESSOR_OPTIONAL_FIELDS.get(processor, ((), ()))
    flags = PROCESSOR_OPTIONAL_FLAGS.get(processor, ())
    known = {
        "name",
        "processor",
        ACCOUNT,
        *secret_fields,
        *plain_fields,
        *optional_secrets,
        *optional_plain,
        *flags,
    }
    unknown = set(table) - known - _OPTIONAL
    if unknown:
        raise BadInput(f"connection {name!r}: unknown field(s) {', '.join(sorted(unknown))}")
    values: dict[str, str] = {}
    for field in (*secret_fields, *plain_fields):
        value = table.get(field)
        if not isinstance(value, str) or not value.strip():
            raise BadInput(f"connection {name!r}: {processor} needs a non-empty {field}")
        values[field] = value.strip()
    for field in (*optional_secrets, *optional_plain):
        if field not in table:
            continue
        value = table[field]
        if not isinstance(value, str) or not value.strip():
            raise BadInput(f"connection {name!r}: {field}, when given, must be a non-empty string")
        values[field] = value.strip()
    _check_fields(name, processor, values)
    options = {k: values[k] for k in (*plain_fields, *optional_plain) if k in values}
    if ACCOUNT in table:
        account = table[ACCOUNT]
        if not isinstance(account, str) or not account.strip() or len(account.strip()) > MAX_ACCOUNT:
            raise BadInput(f"connection {name!r}: account, when given, must be 1 to {MAX_ACCOUNT} characters")
        options[ACCOUNT] = account.strip()
    for flag in flags:
        if flag in table:
            if not isinstance(table[flag], bool):
                raise BadInput(f"connection {name!r}: {flag} must be true or false")
            options[flag] = "true" if table[flag] else "false"
    base_url = _base_url(name, table.get("base_url"))
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise BadInput(f"connection {name!r}: enabled must be true or false")
    rate = table.get("rate_limit_per_second")
    return ConnectionSpec(
        name=name,
        processor=processor,
        base_url=base_url,
        secrets={k: values[k] for k in (*secret_fields, *optional_secrets) if k in values},
        options=options,
        enabled=enabled,
        rate_limit_per_second=None
        if rate is None
        else _positive_int(name, "rate_limit_per_second", rate, maximum=100_000),
        health_check_interval_seconds=_positive_int(
            name,
            "health_check_interval_seconds",
            table.get("health_check_interval_seconds", 60),
            maximum=86_400,
        ),
        timeout_seconds=_call_timeout(name, table.get("timeout_seconds")),
    )


def _base_url(name: str, value: Any) -> str | None:
    """An http(s) URL with a host that fits its column; "http://" or one with spaces was stored and
    failed only at the first call, and one over the column's length failed the whole import unnamed."""
    if value is None:
        return None
    problem = f"connection {name!r}: base_url must be an http(s) URL with a host"
    if not isinstance(value, str) or not value.isprintable() or " " in value or not value.isascii():
        raise BadInput(problem)
    url = value.rstrip("/")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is not a number or out of range
        raise BadInput(problem) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise BadInput(problem)
    if len(url) > MAX_BASE_URL:
        raise BadInput(f"connection {name!r}: base_url must be at most {MAX_BASE_URL} characters")
    return url


def _check_fields(name: str, processor: str, values: dict[str, str]) -> None:
    """The adapter's own validation of its fields (e.g. an Adyen hmac_key must be hex), when it has one."""
    from refundwatch.gateways.registry import get_gateway, supported_processors

    if processor not in supported_processors():
        return
    check = getattr(get_gateway(processor), "check_fields", None)
    if check is None:
        return
    try:
        check(values)
    except ValueError as exc:
        raise BadInput(f"connection {name!r}: {exc}") from None


def call_timeout_cap(job_timeout_seconds: float) -> float:
    """The longest processor call a job this long can wait for and still record its outcome."""
    return max(1.0, job_timeout_seconds - max(2.0, job_timeout_seconds / 10))


def _call_timeout(name: str, value: Any) -> int:
    """A processor call must end before arq kills its job: a killed job never records the attempt's
    outcome, so a timeout at or above the job timeout would keep a refund re-sending forever."""
    from refundwatch.config import get_settings

    job_timeout = get_settings().job_timeout_seconds
    if value is None:  # not given: 30 s, or less where the worker's jobs are shorter
        return max(1, min(30, int(call_timeout_cap(job_timeout))))
    seconds = _positive_int(name, "timeout_seconds", value, maximum=300)
    if seconds >= job_timeout:
        raise BadInput(
            f"connection {name!r}: timeout_seconds ({seconds}) must be below the worker's job timeout "
            f"({job_timeout} s, REFUNDWATCH_JOB_TIMEOUT_SECONDS)"
        )
    return seconds


def load_connections_file(path: Path) -> list[ConnectionSpec]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from None
    tables = data.get("connection")
    if not isinstance(tables, list) or not tables:
        raise BadInput(f"{path}: expected one or more [[connection]] tables")
    specs = [parse_connection(table, i + 1) for i, table in enumerate(tables)]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadInput(f"{path}: connection name(s) used twice: {', '.join(duplicates)}")
    return specs
