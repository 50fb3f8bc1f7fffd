"""Typed settings, read once from the REFUNDWATCH_* environment (CONTRACT §2)."""

from __future__ import annotations

import functools
import math
import os
import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Mode = Literal["production", "demo", "test"]

# Only used when REFUNDWATCH_MODE is demo or test; production refuses to start without real values.
_DEV_SECRET = "refundwatch-dev-secret-not-for-production"  # noqa: S105 - public dev default
_DEV_ENCRYPTION_KEY = "cmVmdW5kd2F0Y2gtZGV2LWtleS1ub3QtZm9yLXByb2Q="
_DEV_AUDIT_KEY = "refundwatch-dev-audit-key-not-for-production"
# A shorter audit key can be guessed from one entry's HMAC offline.
AUDIT_KEY_MIN_LENGTH = 16


class ConfigError(Exception):
    """Start-up cannot continue: the message names what is missing."""


# Each processor's settlement delay, in hours, before a succeeded refund missing from its reports is
# a break: Stripe pays out on a 2 to 7 day schedule depending on the country (and report data is
# prepared twice a day); Adyen closes a batch per payout cycle, daily by default, settled T+1 to T+3;
# PayPal writes its settlement report (STL) daily, by noon the next day.
EXPECTED_SETTLEMENT_HOURS = {"stripe": 168.0, "adyen": 96.0, "paypal": 48.0}


# URL query keys that reach asyncpg.connect usable as text (SQLAlchemy passes the query on as strings,
# converting only the port and prepared_statement_cache_size): others fail at the first connection.
_PG_QUERY_KEYS = frozenset(
    {
        "host", "port", "user", "password", "database", "ssl", "direct_tls", "passfile", "service",
        "servicefile", "target_session_attrs", "krbsrvname", "gsslib", "prepared_statement_cache_size",
        "async_fallback",
    }
)  # fmt: skip
_UNREADABLE_URL = "cannot be read (percent-encode any / # @ : ? in the user name or password)"


def _check_database_url(value: str) -> None:
    """A URL the engine could not use fails here, in one line, not at the first connection. Never
    quotes the URL or the parser's words: both may hold pieces of the password."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(value)
    except ValueError:
        raise ValueError(_UNREADABLE_URL) from None
    if url.drivername.startswith("sqlite"):
        if not url.database or url.database == ":memory:":
            raise ValueError("an embedded database needs a file path: sqlite+aiosqlite:///path/to/file.db")
        return
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError(f"port {url.port} is not 1 to 65535")
    unknown = sorted(set(url.query) - _PG_QUERY_KEYS)
    if unknown:
        hint = " (asyncpg's name for sslmode is ssl, e.g. ?ssl=require)" if "sslmode" in unknown else ""
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}{hint}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REFUNDWATCH_", extra="ignore")

    mode: Mode = "production"
    database_url: str = "sqlite+aiosqlite:///var/refundwatch.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str = ""
    encryption_keys: str = ""
    base_url: str = "http://127.0.0.1:8000"
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_roles_claim: str = "groups"
    role_map: str = ""
    api_audience: str = "urn:refundwatch:api"
    approval_threshold: str = "50000"
    # The audit chain's HMAC keys (comma-separated: the first seals, all verify) and where its head
    # is anchored outside the database (audit/anchors.py), every audit_anchor_interval_seconds.
    audit_key: str = ""
    audit_anchor: str = "var/audit-anchors.jsonl"
    audit_anchor_interval_seconds: int = Field(default=60, ge=1)

    # How long a succeeded refund may be absent from settlement data before it is a missing_settlement
    # break: one number of hours for all processors, or per processor (stripe:168,adyen:96).
    reconcile_expected_hours: str = ""
    # How often the worker matches new settlement lines and runs the consistency checks (minutes).
    reconcile_interval_minutes: int = Field(default=15, ge=1, le=60)
    # How often the worker pulls settlement data due from processors' APIs (Stripe's paid payouts not
    # yet imported), besides the pull each payout.paid webhook starts; and how far back it looks (days).
    reconcile_pull_minutes: int = Field(default=60, ge=1, le=60)
    reconcile_pull_lookback_days: int = Field(default=7, ge=1, le=90)

    # Sign-in and roles beyond the contract's names.
    session_idle_minutes: int = Field(default=30, ge=1)
    session_absolute_hours: int = Field(default=12, ge=1)
    # How often a signed-in person's role is re-read from the provider (minutes, fractions allowed).
    role_refresh_minutes: float = Field(default=5, gt=0)
    # The most one refund may be for, per role, in minor units (a role not named has no limit).
    role_limits: str = "initiator=100000,approver=1000000"
    # Per-client limits (fixed one-minute windows in Redis; 0 turns one off). The API default
    # protects against a runaway client without throttling a returns system at full speed.
    rate_limit_api_per_minute: int = Field(default=60_000, ge=0)
    rate_limit_sign_in_per_minute: int = Field(default=30, ge=0)
    rate_limit_auth_failures_per_minute: int = Field(default=60, ge=0)
    # Rejected webhook deliveries (bad signature, malformed body) one address may cause on one
    # connection per minute before its further requests there get 429 unchecked; also caps requests
    # to unknown connection names per address. Rejections are limited, not requests, so a flood
    # never throttles the processor's own deliveries.
    rate_limit_webhook_rejections_per_minute: int = Field(default=60, ge=0)
    # Behind a load balancer or reverse proxy: the addresses or networks (comma-separated, e.g.
    # "10.0.0.0/8") whose X-Forwarded-For / X-Forwarded-Proto are believed. Without it every client
    # would share the proxy's address in rate limits and the audit log.
    trusted_proxies: str = ""
    # When set, GET /metrics requires "Authorization: Bearer <token>" (CONTRACT §2); unset, it is open.
    metrics_token: str = ""

    # Operational knobs beyond the contract; the defaults suit one worker on a small machine.
    worker_max_jobs: int = Field(default=200, ge=1)
    worker_poll_delay: float = Field(default=0.05, gt=0)
    job_timeout_seconds: int = Field(default=60, ge=2)
    max_attempts: int = Field(default=6, ge=1)
    retry_base_seconds: float = Field(default=1.0, ge=0)
    retry_max_seconds: float = Field(default=60.0, ge=0)
    sync_interval_seconds: int = Field(default=30, ge=1)
    # Processors that cannot be asked (no read endpoint): a processing refund with no notification for
    # this long goes to manual review. Adyen usually notifies within minutes and retries failed
    # deliveries for days; a day without word means a person should look.
    notification_timeout_hours: float = Field(default=24.0, gt=0)
    adyen_notification_timeout_hours: float | None = Field(default=None, gt=0)
    # Each sync round claims at most this many due refunds per worker, least recently synced first.
    sync_batch_size: int = Field(default=500, ge=1)
    # A refund whose connection is disabled waits this long between looks (attempts untouched).
    disabled_connection_wait_seconds: float = Field(default=30.0, gt=0)
    sweep_interval_seconds: int = Field(default=15, ge=1)
    sweep_grace_seconds: int = Field(default=10, ge=0)
    # A processor that cannot be reached this many times in a row is left alone (refunds wait, their
    # attempts untouched) and probed with a health check every circuit_open_seconds.
    circuit_failures: int = Field(default=5, ge=1)
    circuit_open_seconds: float = Field(default=10.0, gt=0)
    # The dashboard: success-rate colours (below warn → amber, below bad → red), when an unfinished
    # refund counts as stuck, when a health check counts as slow, and how often live panels may redraw.
    dashboard_success_warn: float = Field(default=0.98, ge=0, le=1)
    dashboard_success_bad: float = Field(default=0.95, ge=0, le=1)
    dashboard_stuck_minutes: int = Field(default=15, ge=1)
    dashboard_slow_check_ms: int = Field(default=2000, ge=1)
    live_interval_ms: int = Field(default=250, ge=20)
    # The feed, where people watch for their refund, redraws more often than the charts.
    live_feed_interval_ms: int = Field(default=100, ge=20)
    # Outgoing webhooks (outgoing/): private, loopback and link-local endpoint hosts allowed anyway
    # (hosts or networks, comma-separated; CONTRACT §2), and the delivery knobs. The retry schedule
    # (outgoing.schedule) grows from webhook_retry_base_seconds by 3x per attempt up to
    # webhook_retry_max_seconds, for webhook_max_attempts attempts: about three days by default.
    webhook_allowed_hosts: str = ""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=43_200.0, gt=0)
    webhook_max_attempts: int = Field(default=15, ge=1)
    # An endpoint whose every attempt failed for this long is disabled (never after a short burst).
    webhook_disable_after_hours: float = Field(default=12.0, gt=0)
    # Sends in flight per endpoint and worker: a slow endpoint holds only its own slots.
    webhook_endpoint_concurrency: int = Field(default=16, ge=1, le=100)
    # How often each worker looks for due deliveries without being told of a change (the sweep).
    webhook_sweep_seconds: float = Field(default=1.0, gt=0)
    # Finished deliveries (and their attempts) older than this are pruned hourly (outgoing.retention).
    webhook_retention_days: float = Field(default=30.0, gt=0)
    # Alerts to people (refundwatch.alerts): Apprise URLs (CONTRACT §2), how often the worker checks
    # the rules (0: never; raised alerts are still sent), and the rules' thresholds. Down gateways and
    # money contradictions alert at once; a degraded gateway after degraded_minutes; a success rate
    # below dashboard_success_bad over success_window_minutes once it covers success_min_refunds
    # outcomes; stuck refunds after dashboard_stuck_minutes; reconciliation breaks open longer than
    # break_days. Each message is tried send_attempts times, send_timeout_seconds each at most.
    alert_urls: str = ""
    alert_interval_seconds: int = Field(default=30, ge=0, le=59)
    alert_degraded_minutes: float = Field(default=10.0, ge=0)
    alert_success_window_minutes: int = Field(default=15, ge=1)
    alert_success_min_refunds: int = Field(default=20, ge=1)
    alert_break_days: float = Field(default=3.0, ge=0)
    alert_send_attempts: int = Field(default=5, ge=1)
    alert_send_timeout_seconds: float = Field(default=20.0, gt=0)
    # PayPal webhook certificates (gateways/paypal/certs.py). PAYPAL-CERT-URL must name one of these
    # hosts (comma-separated; "host" allows the scheme's default port, "host:port" that port) over
    # https (http too in demo and test mode), or nothing is fetched; the chain must lead to a
    # certificate of the trust store (a PEM bundle; empty: certifi's bundle, else the system's); the
    # signing certificate must carry the subject as a DNS name.
    paypal_cert_hosts: str = "api.paypal.com,api.sandbox.paypal.com,api-m.paypal.com,api-m.sandbox.paypal.com"
    paypal_trust_store: str = ""
    paypal_cert_subject: str = "messageverificationcerts.paypal.com"
    # A webhook delivery whose verification needs requests (a certificate to fetch, a processor's
    # verification API) is refused, and so re-sent by the processor, when it takes longer than this.
    webhook_verify_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        _check_database_url(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _readable_redis_url(cls, value: str) -> str:
        from arq.connections import RedisSettings
        from redis.connection import parse_url

        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        try:  # both readers: redis-py's (web) and arq's (worker), which reads the database number itself
            parse_url(value)  # type: ignore[no-untyped-call]
            RedisSettings.from_dsn(value)
        except (ValueError, RuntimeError):  # their words may quote the password: not repeated
            raise ValueError(f"{_UNREADABLE_URL}; the form is redis://host:port/db") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if value.strip().upper() not in levels:
            raise ValueError(f"must be one of {', '.join(levels)}")
        return value.strip().upper()

    @property
    def is_https(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def is_dev(self) -> bool:
        """Demo or test mode: development defaults apply (and plain-http webhook endpoints)."""
        return self.mode in ("demo", "test")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def effective_secret_key(self) -> str:
        return self.secret_key or _DEV_SECRET

    @property
    def encryption_key_list(self) -> list[str]:
        keys = [k.strip() for k in self.encryption_keys.split(",") if k.strip()]
        return keys or [_DEV_ENCRYPTION_KEY]

    @property
    def audit_key_list(self) -> list[str]:
        keys = [k.strip() for k in self.audit_key.split(",") if k.strip()]
        if not keys and self.mode == "production":
            raise ConfigError("missing required settings: REFUNDWATCH_AUDIT_KEY")
        return keys or [_DEV_AUDIT_KEY]

    def approval_threshold_for(self, currency: str) -> int:
        """Minor-unit threshold at or above which a refund needs a second person."""
        table = dict(self._threshold_entries())
        return int(table.get(currency, table.get("*", "50000")))

    def _threshold_entries(self) -> list[tuple[str, str]]:
        """REFUNDWATCH_APPROVAL_THRESHOLD as (CURRENCY or *, amount) pairs; one number is ``*``."""
        value = self.approval_threshold.strip()
        if ":" not in value:
            return [("*", value)]
        pairs = ((k.strip().upper(), v.strip()) for k, _, v in (p.partition(":") for p in value.split(",")))
        return [(name, amount) for name, amount in pairs if name or amount]  # not a trailing comma

    def reconcile_expected_for(self, processor: str) -> float:
        """Hours a succeeded refund of ``processor`` may be missing from its settlement data."""
        value = self.reconcile_expected_hours.strip()
        if value and ":" not in value:
            return float(value)
        table = {
            k.strip().lower(): float(v)
            for k, _, v in (p.partition(":") for p in value.split(","))
            if k.strip()
        }
        return table.get(processor, EXPECTED_SETTLEMENT_HOURS.get(processor, 168.0))

    @property
    def alert_url_list(self) -> list[str]:
        """REFUNDWATCH_ALERT_URLS, one Apprise URL each. They carry tokens: never log or show them."""
        return [u.strip() for u in self.alert_urls.split(",") if u.strip()]

    @property
    def approval_threshold_currencies(self) -> list[str]:
        """The currencies REFUNDWATCH_APPROVAL_THRESHOLD names one by one (none for a single number)."""
        return [name for name, _ in self._threshold_entries() if name and name != "*"]

    def check_required(self) -> None:
        """Refuse to start on bad settings: outside demo/test the secrets must be set (all missing ones
        are named at once), and in every mode the keys and the threshold must parse."""
        from refundwatch.lib.crypto import FieldCipher

        if self.mode == "production":
            missing = [
                name
                for name, value in (
                    ("REFUNDWATCH_SECRET_KEY", self.secret_key),
                    ("REFUNDWATCH_ENCRYPTION_KEYS", self.encryption_keys),
                    ("REFUNDWATCH_AUDIT_KEY", self.audit_key),
                )
                if not value.strip()
            ]
            if missing:
                raise ConfigError(f"missing required settings: {', '.join(missing)}")
        try:
            FieldCipher(self.encryption_key_list)
        except ValueError as exc:
            raise ConfigError(f"REFUNDWATCH_ENCRYPTION_KEYS: {exc}") from None
        if any(len(key) < AUDIT_KEY_MIN_LENGTH for key in self.audit_key_list):
            raise ConfigError(
                f"REFUNDWATCH_AUDIT_KEY: each key needs at least {AUDIT_KEY_MIN_LENGTH} characters"
            )
        from refundwatch.auth.roles import parse_role_limits, parse_role_map
        from refundwatch.lib.exceptions import BadInput

        try:
            parse_role_map(self.role_map)
            parse_role_limits(self.role_limits)
        except BadInput as exc:
            raise ConfigError(str(exc)) from None
        self._check_reconcile_expected_hours()
        self._check_trusted_proxies()
        if self.dashboard_success_warn < self.dashboard_success_bad:
            raise ConfigError(
                "REFUNDWATCH_DASHBOARD_SUCCESS_WARN must not be below REFUNDWATCH_DASHBOARD_SUCCESS_BAD "
                f"({self.dashboard_success_warn:g} < {self.dashboard_success_bad:g}): amber could never show"
            )
        from refundwatch.alerts.targets import invalid_targets

        bad = invalid_targets(self.alert_url_list)
        if bad:  # by position only: the URLs hold tokens
            raise ConfigError(
                f"REFUNDWATCH_ALERT_URLS: entry {', '.join(map(str, bad))} is not a valid Apprise URL"
            )
        self._check_paypal_certs()
        self._check_approval_threshold()

    def _check_reconcile_expected_hours(self) -> None:
        """Every entry: a finite number of hours, 0 or more, for a processor refundwatch knows. NaN and
        infinity stopped every consistency check with a traceback, a negative figure made each succeeded
        refund a missing_settlement break at once, and a misspelt processor was silently ignored."""
        from refundwatch.connections.spec import PROCESSOR_FIELDS

        rule = "REFUNDWATCH_RECONCILE_EXPECTED_HOURS must be a number of hours or processor:hours,..."
        value = self.reconcile_expected_hours.strip()
        if not value:
            return
        entries = (
            [("", value)]
            if ":" not in value
            else [
                (name.strip().lower(), hours.strip())
                for name, _, hours in (part.partition(":") for part in value.split(","))
                if name.strip() or hours.strip()  # not a trailing comma
            ]
        )
        for name, hours in entries:
            try:
                figure = float(hours)
            except ValueError:
                raise ConfigError(f"{rule} ({name or 'all'}: {hours!r} is not a number)") from None
            if not math.isfinite(figure) or figure < 0:
                raise ConfigError(f"{rule} ({name or 'all'}: {hours!r} is not 0 or more hours)")
            if ":" in value and name not in PROCESSOR_FIELDS:
                raise ConfigError(f"{rule} ({name!r} is not a processor: {', '.join(PROCESSOR_FIELDS)})")

    def _check_trusted_proxies(self) -> None:
        """Addresses or networks only: the proxy-headers wrapper keeps anything else (a network with
        host bits set, a host name) as a literal no client address equals, so nothing was believed."""
        import ipaddress

        for entry in (p.strip() for p in self.trusted_proxies.split(",")):
            if not entry:
                continue
            try:
                if "/" in entry:
                    ipaddress.ip_network(entry)
                else:
                    ipaddress.ip_address(entry)
            except ValueError:
                raise ConfigError(
                    f"REFUNDWATCH_TRUSTED_PROXIES: {entry!r} is not an IP address or network "
                    "(a network is written with its first address, e.g. 10.0.0.0/8)"
                ) from None

    def _check_approval_threshold(self) -> None:
        """Every entry, not only the currencies tried at start-up: a bad one failed each refund in its
        currency later (GBP:abc made every GBP refund a 500)."""
        from refundwatch.lib.money import is_known_currency

        rule = "REFUNDWATCH_APPROVAL_THRESHOLD must be a whole number of minor units, or CUR:number,..."
        seen: set[str] = set()
        for name, amount in self._threshold_entries():
            if not re.fullmatch(r"[0-9]{1,15}", amount):
                raise ConfigError(f"{rule} ({name}: {amount!r} is not a number)")
            if name != "*" and not is_known_currency(name):
                raise ConfigError(f"{rule} ({name!r} is not an ISO 4217 currency)")
            if name in seen:
                raise ConfigError(f"{rule} ({name} is given twice)")
            seen.add(name)

    def _check_paypal_certs(self) -> None:
        from refundwatch.gateways.paypal.certs import CertPolicy, TrustStoreError

        subject = self.paypal_cert_subject.strip()
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", subject):
            raise ConfigError("REFUNDWATCH_PAYPAL_CERT_SUBJECT must be a DNS name")
        try:
            CertPolicy.from_settings(self)
        except TrustStoreError as exc:
            raise ConfigError(f"REFUNDWATCH_PAYPAL_TRUST_STORE: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"REFUNDWATCH_PAYPAL_CERT_HOSTS: {exc}") from None


@functools.cache
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Tests change the environment; they call this so the next read sees it."""
    get_settings.cache_clear()


def env_mode() -> str:
    return os.environ.get("REFUNDWATCH_MODE", "production")
