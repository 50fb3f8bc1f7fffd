"""Settings (config.py): approval thresholds, production start-up checks, database URL validation."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from refundwatch.config import ConfigError, Settings, get_settings, reset_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read REFUNDWATCH_* from the environment: start every test from none of them."""
    for name in list(os.environ):
        if name.startswith("REFUNDWATCH_"):
            monkeypatch.delenv(name)
    reset_settings()
    yield
    reset_settings()


@pytest.mark.parametrize(
    ("raw", "currency", "threshold"),
    [
        ("50000", "EUR", 50_000),
        ("50000", "JPY", 50_000),
        (" 7000 ", "USD", 7_000),
        ("EUR:50000,USD:60000", "EUR", 50_000),
        ("EUR:50000,USD:60000", "USD", 60_000),
        ("EUR:50000,USD:60000", "GBP", 50_000),  # not listed, no "*": the default
        ("EUR:100,*:7", "GBP", 7),
        ("EUR:100,*:7", "EUR", 100),
        ("EUR:100,", "EUR", 100),
        ("JPY:0", "JPY", 0),
    ],
)
def test_approval_threshold_for(raw: str, currency: str, threshold: int) -> None:
    assert Settings(approval_threshold=raw).approval_threshold_for(currency) == threshold


def test_approval_threshold_default() -> None:
    assert Settings().approval_threshold_for("EUR") == 50_000


def test_approval_threshold_tolerates_spaces() -> None:
    settings = Settings(approval_threshold="EUR:50000, USD:1000 , *: 20")
    assert settings.approval_threshold_for("USD") == 1_000
    assert settings.approval_threshold_for("GBP") == 20


def test_approval_threshold_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFUNDWATCH_APPROVAL_THRESHOLD", "EUR:123,USD:456")
    settings = get_settings()
    assert settings.approval_threshold_for("EUR") == 123
    assert settings.approval_threshold_for("USD") == 456


def test_production_names_every_missing_variable() -> None:
    settings = Settings(mode="production")
    with pytest.raises(ConfigError) as info:
        settings.check_required()
    message = str(info.value)
    assert "REFUNDWATCH_SECRET_KEY" in message
    assert "REFUNDWATCH_ENCRYPTION_KEYS" in message
    assert "REFUNDWATCH_AUDIT_KEY" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("secret_key", "encryption_keys", "missing", "present"),
    [
        ("s3cret", "", "REFUNDWATCH_ENCRYPTION_KEYS", "REFUNDWATCH_SECRET_KEY"),
        ("", "k", "REFUNDWATCH_SECRET_KEY", "REFUNDWATCH_ENCRYPTION_KEYS"),
        ("   ", "k", "REFUNDWATCH_SECRET_KEY", "REFUNDWATCH_ENCRYPTION_KEYS"),
    ],
)
def test_production_names_only_what_is_missing(
    secret_key: str, encryption_keys: str, missing: str, present: str
) -> None:
    settings = Settings(
        mode="production", secret_key=secret_key, encryption_keys=encryption_keys, audit_key="a" * 32
    )
    with pytest.raises(ConfigError) as info:
        settings.check_required()
    assert missing in str(info.value)
    assert present not in str(info.value)


def test_production_with_everything_passes() -> None:
    key = Fernet.generate_key().decode()
    Settings(mode="production", secret_key="s" * 32, encryption_keys=key, audit_key="a" * 32).check_required()


def test_production_refuses_to_start_without_the_audit_key() -> None:
    """Issue 11: the audit chain's key lives outside the database and must be given."""
    key = Fernet.generate_key().decode()
    for blank in ("", "  ", " , "):
        settings = Settings(mode="production", secret_key="s" * 32, encryption_keys=key, audit_key=blank)
        with pytest.raises(ConfigError) as info:
            settings.check_required()
        assert str(info.value) == "missing required settings: REFUNDWATCH_AUDIT_KEY"
        with pytest.raises(ConfigError, match="REFUNDWATCH_AUDIT_KEY"):
            settings.audit_key_list  # noqa: B018 - the audit commands read it without check_required


@pytest.mark.parametrize("mode", ["production", "demo", "test"])
def test_a_short_audit_key_is_refused(mode: str) -> None:
    key = Fernet.generate_key().decode()
    settings = Settings(mode=mode, secret_key="s" * 32, encryption_keys=key, audit_key="a" * 32 + ",short")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="REFUNDWATCH_AUDIT_KEY: each key needs at least 16 characters"):
        settings.check_required()


@pytest.mark.parametrize(
    "raw",
    [
        # NaN and infinity parsed, then every consistency check (worker and `reconcile check`) died on
        # timedelta(hours=nan) with a traceback; a negative figure made every succeeded refund a
        # missing_settlement break at once; a misspelt processor was silently ignored.
        "nan",
        "inf",
        "stripe:1e400",
        "-5",
        "stripe:72,adyen:-1",
        "stripe:72,paypall:48",
        ":5",
        "abc",
        "stripe:",
    ],
)
def test_bad_reconcile_expected_hours_are_refused_at_start(raw: str) -> None:
    settings = Settings(mode="test", reconcile_expected_hours=raw)
    with pytest.raises(ConfigError, match="REFUNDWATCH_RECONCILE_EXPECTED_HOURS"):
        settings.check_required()


@pytest.mark.parametrize(
    ("raw", "processor", "hours"),
    [
        ("", "adyen", 96.0),
        ("0", "stripe", 0.0),
        ("12.5", "paypal", 12.5),
        (" Stripe:72 , adyen:0.5 ", "adyen", 0.5),
    ],
)
def test_reconcile_expected_hours(raw: str, processor: str, hours: float) -> None:
    settings = Settings(mode="test", reconcile_expected_hours=raw)
    settings.check_required()
    assert settings.reconcile_expected_for(processor) == hours


@pytest.mark.parametrize(
    "raw",
    [
        # The proxy-headers wrapper keeps what is not an address or a strict network as a literal that
        # no client address ever equals: behind the proxy nobody's X-Forwarded-For was believed, and
        # every client shared the proxy's address in rate limits and the audit log, without a word.
        "10.0.0.1/8",  # host bits set
        "10.0.0.0/33",
        "lb.internal",
        "127.0.0.1,nope",
        # Everyone's X-Forwarded-For believed: any client chooses its address for limits and audit.
        "*",
    ],
)
def test_bad_trusted_proxies_are_refused_at_start(raw: str) -> None:
    settings = Settings(mode="test", trusted_proxies=raw)
    with pytest.raises(ConfigError, match="REFUNDWATCH_TRUSTED_PROXIES"):
        settings.check_required()


def test_trusted_proxies_take_addresses_and_networks() -> None:
    Settings(mode="test", trusted_proxies=" 127.0.0.20 , 10.0.0.0/8,fd00::/8, ::1 ,").check_required()


def test_the_success_warning_line_is_not_below_the_bad_line() -> None:
    """WARN 0.90 with BAD 0.95 started: amber could never show, a falling rate went from green to red."""
    with pytest.raises(ConfigError, match="REFUNDWATCH_DASHBOARD_SUCCESS_WARN"):
        Settings(mode="test", dashboard_success_warn=0.9, dashboard_success_bad=0.95).check_required()
    Settings(mode="test", dashboard_success_warn=0.95, dashboard_success_bad=0.95).check_required()


def test_audit_keys_are_a_list_newest_first() -> None:
    settings = Settings(mode="production", audit_key=" new-key-0123456789 , old-key-0123456789 ,")
    assert settings.audit_key_list == ["new-key-0123456789", "old-key-0123456789"]
    assert Settings(mode="test").audit_key_list == Settings(mode="demo").audit_key_list  # the fixed dev key
    assert settings.audit_anchor == "var/audit-anchors.jsonl"


@pytest.mark.parametrize("mode", ["demo", "test"])
def test_demo_and_test_need_no_secrets(mode: str) -> None:
    settings = Settings(mode=mode)  # type: ignore[arg-type]
    settings.check_required()
    assert settings.effective_secret_key
    assert len(settings.encryption_key_list) == 1


def test_production_is_the_default_mode() -> None:
    settings = Settings()
    assert settings.mode == "production"
    with pytest.raises(ConfigError):
        settings.check_required()


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFUNDWATCH_MODE", "production")
    monkeypatch.setenv("REFUNDWATCH_SECRET_KEY", "from-env")
    a, b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("REFUNDWATCH_ENCRYPTION_KEYS", f" {a} , {b} ,, ")
    monkeypatch.setenv("REFUNDWATCH_AUDIT_KEY", "audit-key-from-env-0123")
    monkeypatch.setenv("REFUNDWATCH_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    settings = get_settings()
    assert settings.secret_key == "from-env"
    assert settings.encryption_key_list == [a, b]
    assert settings.audit_key_list == ["audit-key-from-env-0123"]
    assert not settings.is_sqlite
    settings.check_required()
    assert get_settings() is settings  # read once
    reset_settings()
    monkeypatch.setenv("REFUNDWATCH_SECRET_KEY", "")
    with pytest.raises(ConfigError, match="REFUNDWATCH_SECRET_KEY"):
        get_settings().check_required()


def test_invalid_mode_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(mode="staging")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user@host/db",
        "sqlite:///var/refundwatch.db",  # sync driver
        "postgresql://user@host/db",  # sync driver
        "postgresql+psycopg://user@host/db",
        "",
        "var/refundwatch.db",
    ],
)
def test_invalid_database_url_rejected(url: str) -> None:
    with pytest.raises(ValidationError, match="database_url"):
        Settings(database_url=url)


def test_invalid_database_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFUNDWATCH_DATABASE_URL", "mysql://x/y")
    with pytest.raises(ValidationError):
        get_settings()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///var/refundwatch.db",
        "postgresql+asyncpg://u:p@h:5432/d?ssl=require",
        "postgresql+asyncpg://u:p@h:5432/",  # asyncpg then takes the user's name for the database
        "postgresql+asyncpg://u:p@/d?host=/var/run/postgresql",  # a Unix socket (Cloud SQL's too)
        "postgresql+asyncpg://u:p@/d?host=a:5432&host=b:5432&target_session_attrs=read-write",
    ],
)
def test_valid_database_urls(url: str) -> None:
    settings = Settings(database_url=url)
    assert settings.database_url == url
    assert settings.is_sqlite is url.startswith("sqlite")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite://",  # in memory: each process would have its own database
        "sqlite+aiosqlite:///:memory:",
        "postgresql+asyncpg://u:p@h:port/d",
        "postgresql+asyncpg://u:p@h:0/d",
        "postgresql+asyncpg://u:p@h:5432/d?bogus=1",
        "postgresql+asyncpg://u:p@h:5432/d?sslmode=require",  # asyncpg's is ssl
        "postgresql+asyncpg://u:p@h:5432/d?command_timeout=5",  # reaches asyncpg as text, and fails
    ],
)
def test_database_urls_the_engine_cannot_use_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="database_url"):
        Settings(database_url=url)


def test_defaults_match_the_contract() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///var/refundwatch.db"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.oidc_roles_claim == "groups"
    assert settings.api_audience == "urn:refundwatch:api"


@pytest.mark.parametrize(
    "raw", ["approver=\u00b2", "approver=1\u2070", "approver=", "approver=-5", "nobody=5"]
)
def test_bad_role_limits_are_refused_at_start_in_one_line(raw: str) -> None:
    """isdigit() takes "²", which int() refuses: `serve` died with a ValueError traceback."""
    with pytest.raises(ConfigError, match="REFUNDWATCH_ROLE_LIMITS"):
        Settings(mode="test", role_limits=raw).check_required()
    Settings(mode="test", role_limits="initiator=100000, approver=1000000").check_required()
