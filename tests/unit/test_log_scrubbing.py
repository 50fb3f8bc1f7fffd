"""Log scrubbing (logs.py): secrets and card numbers never reach a log line, whoever set up the handler."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from refundwatch.config import Settings
from refundwatch.logs import ScrubbingFilter, configure_logging, scrub

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJjbGllbnQiLCJzY29wZSI6InJlZnVuZHM6cmVhZCJ9."
    "c2lnbmF0dXJlLWJ5dGVzLWhlcmU_-x"
)
API_KEY = "rw_Vq3xJk9-2mP_aZt7LwQy0bN4sD8fG1hK6jR5uC2eXoI"
SECRETS = {
    "bearer": "opaque-access-token-0123",
    "jwt": JWT,
    "api_key": API_KEY,
    "sk_test": "sk_test_51HqLyjWDarjtT1zdp7dc",
    "sk_live": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "whsec": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "session": "s3ss10n-v4lue",
    "csrf": "csrf-v4lue",
}


@pytest.fixture
def logging_state() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back afterwards."""
    root = logging.getLogger()
    handlers, level, factory = root.handlers[:], root.level, logging.getLogRecordFactory()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.setLogRecordFactory(factory)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: Bearer {SECRETS['bearer']}", "Authorization: Bearer [redacted]"),
        (f"authorization=Bearer {JWT}", "authorization=Bearer [redacted]"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic [redacted]"),
        (
            f"headers={{'authorization': 'Bearer {SECRETS['bearer']}', 'accept': 'json'}}",
            "headers={'authorization': 'Bearer [redacted]', 'accept': 'json'}",
        ),
        (f'{{"Authorization": "Bearer {API_KEY}"}}', '{"Authorization": "Bearer [redacted]"}'),
        (f"calling with token {JWT} now", "calling with token [redacted] now"),
        (f"key {API_KEY} rejected", "key [redacted] rejected"),
        ("the rw_session cookie and rw_csrf", "the rw_session cookie and rw_csrf"),  # names, not keys
        (f"stripe key {SECRETS['sk_test']}", "stripe key [redacted]"),
        (f"stripe key {SECRETS['sk_live']}.", "stripe key [redacted]."),
        ("restricted rk_live_51HqLyjWDarjtT1zdp7dc", "restricted [redacted]"),
        (f"secret {SECRETS['whsec']}", "secret [redacted]"),
        (
            f"Cookie: rw_session={SECRETS['session']}; rw_csrf={SECRETS['csrf']}\r\nHost: x",
            "Cookie: [redacted]\r\nHost: x",
        ),
        (
            f"Set-Cookie: rw_session={SECRETS['session']}; Path=/; HttpOnly; SameSite=Lax",
            "Set-Cookie: [redacted]",
        ),
        (
            f"{{'cookie': 'rw_session={SECRETS['session']}', 'host': 'x'}}",
            "{'cookie': '[redacted]', 'host': 'x'}",
        ),
        (
            f"[(b'cookie', b'rw_session={SECRETS['session']}'), (b'host', b'x')]",
            "[(b'cookie', b'[redacted]'), (b'host', b'x')]",
        ),
        (
            "client_secret=abc123&grant_type=client_credentials",
            "client_secret=[redacted]&grant_type=client_credentials",
        ),
        ("password: hunter2", "password: [redacted]"),
        ("X-Api-Key: abc123", "X-Api-Key: [redacted]"),
        ("refund for card 4242 4242 4242 4242 please", "refund for card [card number] please"),
        ("order 4111-1111-1111-1111", "order [card number]"),
        # Left alone: ordinary text, ids, amounts, a Luhn-invalid number.
        ("refund 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b succeeded", None),
        ("amount 12345 EUR, attempt 2 of 4242424242424241", None),
        ("token bucket refilled", None),
    ],
)
def test_scrub(text: str, expected: str | None) -> None:
    assert scrub(text) == (text if expected is None else expected)
    assert scrub(scrub(text)) == scrub(text)  # scrubbing scrubbed text changes nothing


def test_scrub_leaves_no_secret_in_a_mixed_line() -> None:
    line = (
        f"request Authorization: Bearer {SECRETS['bearer']} cookie={SECRETS['session']} "
        f"token={JWT} key={API_KEY} {SECRETS['sk_live']} {SECRETS['whsec']} card 4111111111111111"
    )
    scrubbed = scrub(line)
    for value in (*SECRETS.values(), "4111111111111111", "1111"):
        assert value not in scrubbed


def _run_logging(capsys: pytest.CaptureFixture[str], *, log_json: bool) -> str:
    configure_logging(Settings(log_json=log_json, log_level="INFO"))
    log = logging.getLogger("refundwatch.test.scrubbing")
    log.info("calling processor with Authorization: Bearer %s", SECRETS["bearer"])
    log.warning("connection %s: api_key=%s webhook %s", "stripe-eu", SECRETS["sk_live"], SECRETS["whsec"])
    log.info("refund note %r", {"note": "card 4242-4242-4242-4242", "key": API_KEY})
    try:
        raise RuntimeError(f"upstream refused {JWT} with Cookie: rw_session={SECRETS['session']}")
    except RuntimeError:
        log.exception("failed for card %s", "5555 5555 5555 4444")
    logging.getLogger().handlers[0].flush()
    return capsys.readouterr().err


@pytest.mark.usefixtures("logging_state")
@pytest.mark.parametrize("log_json", [True, False])
def test_configure_logging_scrubs_messages_and_exceptions(
    capsys: pytest.CaptureFixture[str], log_json: bool
) -> None:
    output = _run_logging(capsys, log_json=log_json)
    for value in (*SECRETS.values(), "4242-4242-4242-4242", "5555 5555 5555 4444"):
        assert value not in output, value
    assert "[redacted]" in output
    assert output.count("[card number]") == 2
    assert "stripe-eu" in output  # the rest of the message is still there
    if log_json:
        entries = [json.loads(line) for line in output.splitlines()]
        assert len(entries) == 4
        assert entries[-1]["error"] == "RuntimeError"
        assert entries[-1]["message"] == "failed for card [card number]"
    else:
        assert "Traceback" in output  # the exception text is written, scrubbed
        assert "upstream refused [redacted] with Cookie: [redacted]" in output


@pytest.mark.usefixtures("logging_state")
def test_handlers_added_later_get_scrubbed_records_too() -> None:
    """Litestar replaces the root handlers after configure_logging: its handlers must not leak."""
    configure_logging(Settings(log_json=True, log_level="INFO"))
    stream = io.StringIO()
    late = logging.StreamHandler(stream)
    late.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("refundwatch.test.late")
    logger.addHandler(late)
    logger.propagate = False
    try:
        logger.warning("key %s", API_KEY)
        try:
            raise ValueError(SECRETS["sk_test"])
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(late)
        logger.propagate = True
    text = stream.getvalue()
    assert API_KEY not in text
    assert SECRETS["sk_test"] not in text
    assert "key [redacted]" in text
    assert "ValueError: [redacted]" in text


@pytest.mark.usefixtures("logging_state")
def test_every_configured_handler_has_the_filter() -> None:
    configure_logging(Settings(log_json=True, log_level="INFO"))
    configure_logging(Settings(log_json=True, log_level="INFO"))  # twice: still one filter each
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, ScrubbingFilter) for f in handler.filters) == 1


def test_filter_alone_scrubs_a_record() -> None:
    """A record made without the factory (e.g. ``logging.makeLogRecord``) is scrubbed by the filter."""
    record = logging.makeLogRecord(
        {"msg": "Authorization: Bearer %s for %s", "args": (SECRETS["bearer"], "4242424242424242")}
    )
    assert ScrubbingFilter().filter(record) is True
    assert record.getMessage() == "Authorization: Bearer [redacted] for [card number]"


def test_bad_arguments_do_not_stop_logging_or_leak() -> None:
    record = logging.makeLogRecord({"msg": "%d items", "args": (SECRETS["sk_live"],)})
    ScrubbingFilter().filter(record)
    assert SECRETS["sk_live"] not in record.getMessage()
    assert record.getMessage().startswith("%d items")


def test_a_database_error_never_carries_the_statements_values(tmp_path: Path) -> None:
    """SQLAlchemy puts a failed statement's parameters into its exception text, which a plain-text log
    (REFUNDWATCH_LOG_JSON=false, the demo's) prints with the traceback: a webhook's raw body, a
    refund's metadata. Reproduced with a signed Adyen notification whose value PostgreSQL cannot
    store: the web log held the whole notification. The engines hide them; the SQL stays."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from refundwatch.db.engine import Database

    row = {"body": "raw-webhook-body"}

    async def scenario() -> str:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'errors.db'}")
        try:
            async with db.engine.begin() as conn:
                await conn.execute(text("CREATE TABLE bodies (body TEXT UNIQUE)"))
                await conn.execute(text("INSERT INTO bodies VALUES (:body)"), row)
            with pytest.raises(IntegrityError) as failed:
                async with db.engine.begin() as conn:
                    await conn.execute(text("INSERT INTO bodies VALUES (:body)"), row)
            return str(failed.value)
        finally:
            await db.engine.dispose()
            await db.read_engine.dispose()

    message = asyncio.run(scenario())
    assert "INSERT INTO bodies" in message
    assert "raw-webhook-body" not in message
