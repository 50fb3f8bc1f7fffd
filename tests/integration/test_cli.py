"""The command line (CONTRACT §3) against a real migrated database: one-line errors, all-or-nothing
imports, secrets encrypted at rest, API keys stored as hashes, and production start-up checks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from _services import ensure_postgres, ensure_redis, free_port, postgres_unavailable_reason, wait_for_port
from processors import STRIPE_KEY, STRIPE_SECRET
from stack import PYTHON, Stack

CSV_HEADER = "connection,payment_reference,amount,currency,captured_at,order_id,invoice_id"


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> None:
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").faults()


@dataclass
class Offline:
    """For checks that fail before any database work (or never start): run once, not once per backend.
    Its SQLite database is migrated, so a check can still prove that nothing was written."""

    workdir: Path
    env: dict[str, str]

    def cli(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "refundwatch", *args],
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.workdir,
            check=False,
        )

    def cli_many(self, commands: list[tuple[str, ...]]) -> list[subprocess.CompletedProcess[str]]:
        """Independent commands side by side (each one is mostly interpreter start-up)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self.cli(*args), commands))

    def write(self, text: str | bytes, suffix: str) -> Path:
        path = self.workdir / f"input-{uuid.uuid4().hex[:8]}{suffix}"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def count(self, table: str) -> int:
        with contextlib.closing(sqlite3.connect(self.workdir / "offline.db")) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Offline:
    workdir = tmp_path_factory.mktemp("cli-offline")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFUNDWATCH_")}
    env.update(
        REFUNDWATCH_MODE="test",
        REFUNDWATCH_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'offline.db'}",
        REFUNDWATCH_REDIS_URL="redis://127.0.0.1:1/0",
        REFUNDWATCH_LOG_JSON="false",
    )
    offline = Offline(workdir, env)
    migrated = offline.cli("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    # A new database says it was migrated (it used to say "up to date", as if nothing had been done).
    assert migrated.stdout.startswith("database migrated: "), migrated.stdout
    again = offline.cli("db", "upgrade")
    assert again.stdout.strip() == "database is up to date", again.stdout
    return offline


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, exactly one line on stderr starting ``refundwatch:``, no traceback anywhere."""
    assert result.returncode != 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("refundwatch:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def write(stack: Stack, text: str | bytes, suffix: str) -> Path:
    path = stack.workdir / f"input-{uuid.uuid4().hex[:8]}{suffix}"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def stripe_block(name: str, **fields: Any) -> str:
    values: dict[str, Any] = {
        "name": name,
        "processor": "stripe",
        "base_url": "http://127.0.0.1:9/stripe",
        "api_key": f"sk_test_{name}",
        "webhook_secret": f"whsec_{name}",
        **fields,
    }
    lines = ["[[connection]]"]
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{key} = {value!r}".replace("'", '"') if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


def import_connections(stack: Stack, text: str) -> subprocess.CompletedProcess[str]:
    return stack.cli("connections", "import", str(write(stack, text, ".toml")), check=False)


def connection_exists(stack: Stack, name: str) -> bool:
    """Asked through the API: a payment on an unknown connection is refused with unknown_connection."""
    with stack.api() as client:
        response = client.post(
            "/api/v1/payments",
            json={
                "connection": name,
                "payment_reference": f"pi_probe_{uuid.uuid4().hex[:12]}",
                "amount": 100,
                "currency": "EUR",
                "captured_at": "2026-11-01T10:00:00Z",
            },
        )
    if response.status_code == 422 and response.json()["code"] == "unknown_connection":
        return False
    assert response.status_code == 201, response.text
    return True


# --------------------------------------------------------------------------------------------- connections


def _bad_connection_files(good: str) -> dict[str, tuple[str | bytes, str]]:
    """Each file starts with a valid connection named ``good``; the file's problem comes after it."""
    valid = stripe_block(good)
    other = "other-" + good
    return {
        "invalid-toml": (valid + '[[connection]\nname = "x"\n', "TOML"),
        "unknown-processor": (valid + stripe_block(other, processor="bitcoin"), "processor"),
        "missing-field": (valid + stripe_block(other, webhook_secret=None), "webhook_secret"),
        "duplicate-names": (valid + stripe_block("dup-" + good) + stripe_block("dup-" + good), "dup-" + good),
        "unknown-field": (valid + stripe_block(other, apikey="typo"), "apikey"),
        "bad-timeout": (valid + stripe_block(other, timeout_seconds=0), "timeout_seconds"),
        "not-utf8": (valid.encode() + b"# \xff\xfe\n", "cannot read"),
        "empty-account": (valid + stripe_block(other, account=""), "account"),
        "void-unsettled-not-a-flag": (
            valid + braintree_block(other, void_unsettled='"yes"'),
            "void_unsettled",
        ),
        "void-unsettled-on-stripe": (valid + stripe_block(other, void_unsettled=1), "void_unsettled"),
        # Header values: a key httpx2 cannot encode crashed every attempt, which ended "outcome unknown".
        "non-ascii-api-key": (valid + stripe_block(other, api_key="sk_test_\u00e9"), f"{other!r}: api_key"),
        "api-key-with-newline": (valid + stripe_block(other, api_key="sk_test_a\nb"), "api_key"),
        "adyen-non-ascii-api-key": (valid + adyen_block(other, api_key="AQE\u00e9"), f"{other!r}: api_key"),
        "adyen-report-user-colon": (
            valid + adyen_block(other, report_username="ws:x", report_password="pw"),
            "report_username",
        ),
        "base-url-no-host": (valid + stripe_block(other, base_url="http://"), "base_url"),
        "base-url-with-spaces": (valid + stripe_block(other, base_url="http://exa mple.com/x y"), "base_url"),
        # Over the column's 500 characters: PostgreSQL refused it without naming the connection.
        "base-url-too-long": (
            valid + stripe_block(other, base_url="http://example.com/" + "a" * 500),
            f"{other!r}: base_url",
        ),
    }


def adyen_block(name: str, **fields: str) -> str:
    values = {
        "name": name,
        "processor": "adyen",
        "api_key": "AQEyhmfxKonIYxZGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7",
        "merchant_account": "TestMerchant",
        "hmac_key": "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        **fields,
    }
    return "[[connection]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def braintree_block(name: str, **extra: str) -> str:
    lines = [
        "[[connection]]",
        f'name = "{name}"',
        'processor = "braintree"',
        'merchant_id = "m1"',
        'public_key = "pk1"',
        'private_key = "sk1"',
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def test_connections_take_an_account_and_braintrees_void_unsettled(offline: Offline) -> None:
    """CONTRACT §6: ``account`` is optional for every processor, ``void_unsettled`` for Braintree; both
    were refused as unknown fields."""
    names = [f"acct-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    text = (
        stripe_block(names[0], account="acct_1Abc")
        + stripe_block(names[1], account="acct_1Abc")
        + braintree_block(names[2], account='"merchant-1"', void_unsettled="true")
    )
    result = offline.cli("connections", "import", str(offline.write(text, ".toml")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "connections: 3 created, 0 updated, 0 unchanged"


def test_connections_import_refuses_bad_files_whole(offline: Offline) -> None:
    """Every bad file: one line naming the problem, and not even its valid first connection is created.

    The whole file is validated before any database work, so this runs once (on a migrated SQLite)."""
    cases = [
        "invalid-toml",
        "unknown-processor",
        "missing-field",
        "duplicate-names",
        "unknown-field",
        "bad-timeout",
        "not-utf8",
        "empty-account",
        "void-unsettled-not-a-flag",
        "void-unsettled-on-stripe",
        "non-ascii-api-key",
        "api-key-with-newline",
        "adyen-non-ascii-api-key",
        "adyen-report-user-colon",
        "base-url-no-host",
        "base-url-with-spaces",
        "base-url-too-long",
    ]
    before = offline.count("connections")  # other tests of the module may have imported some
    goods = [f"good-{case}-{uuid.uuid4().hex[:6]}" for case in cases]
    files = [_bad_connection_files(good)[case] for case, good in zip(cases, goods, strict=True)]
    results = offline.cli_many(
        [("connections", "import", str(offline.write(text, ".toml"))) for text, _ in files]
    )
    for case, (_, needle), result in zip(cases, files, results, strict=True):
        assert result.returncode != 0, case
        line = one_line_error(result, needle)
        assert "\u00e9" not in line, (case, line)  # a secret is never echoed
    assert offline.count("connections") == before
    # A valid import of all those first connections now creates every one of them: none existed.
    result = offline.cli(
        "connections", "import", str(offline.write("".join(map(stripe_block, goods)), ".toml"))
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"connections: {len(goods)} created, 0 updated, 0 unchanged"
    assert offline.count("connections") == before + len(goods)


def test_a_connections_processor_cannot_change(offline: Offline) -> None:
    """Re-importing a connection as another processor was accepted silently, though its refunds were
    made at the first one: refused in one line, and nothing else in the file is imported."""
    name, other = f"proc-{uuid.uuid4().hex[:6]}", f"proc-{uuid.uuid4().hex[:6]}"
    first = offline.cli("connections", "import", str(offline.write(stripe_block(name), ".toml")))
    assert first.returncode == 0, first.stderr
    before = offline.count("connections")
    text = stripe_block(other) + adyen_block(name)
    line = one_line_error(
        offline.cli("connections", "import", str(offline.write(text, ".toml"))), repr(name), "processor"
    )
    assert "new connection" in line, line
    assert offline.count("connections") == before
    same = offline.cli("connections", "import", str(offline.write(stripe_block(name), ".toml")))
    assert same.stdout.strip() == "connections: 0 created, 0 updated, 1 unchanged", same.stderr


def test_connections_import_missing_file(offline: Offline) -> None:
    missing = offline.workdir / "does-not-exist.toml"
    one_line_error(offline.cli("connections", "import", str(missing)), "does-not-exist.toml")


def test_connections_import_twice_changes_nothing(stack: Stack) -> None:
    name = f"conn-{uuid.uuid4().hex[:8]}"
    first = import_connections(stack, stripe_block(name))
    assert first.stdout.strip() == "connections: 1 created, 0 updated, 0 unchanged", first.stderr
    same = import_connections(stack, stripe_block(name))
    assert same.stdout.strip() == "connections: 0 created, 0 updated, 1 unchanged", same.stderr
    assert connection_exists(stack, name)


# --------------------------------------------------------------------------------------------- payments


def _csv(*rows: str) -> str:
    return "\n".join([CSV_HEADER, *rows]) + "\n"


def _row(
    reference: str,
    amount: str = "1000",
    *,
    connection: str = "stripe-test",
    currency: str = "EUR",
    captured: str = "2026-11-01T10:00:00Z",
    order: str = "",
    invoice: str = "",
) -> str:
    return ",".join([connection, reference, amount, currency, captured, order, invoice])


def refund_status(stack: Stack, reference: str) -> tuple[int, str]:
    response = stack.refund(reference, 100)
    return response.status_code, response.json().get("code") or response.json().get("status")


def test_payments_import_bad_files_are_refused_before_the_database(offline: Offline) -> None:
    """Parse errors (the 3rd data row, line 4, is bad; or the file itself is): one line naming the problem
    (and the line), nothing written. The file is read whole before any row is written, so this runs once,
    on a migrated SQLite."""

    def third_row_bad(row: str) -> str:
        return _csv(
            _row(f"pi_csv_{uuid.uuid4().hex[:12]}"), _row(f"pi_csv_{uuid.uuid4().hex[:12]}", "2500"), row
        )

    wrong_header = (
        "connection,reference,amount,currency,captured_at,order_id,invoice_id\n" + _row("pi_x") + "\n"
    )
    cases: dict[str, tuple[str | None, str]] = {  # content (None: no such file), expected in the message
        "amount-with-decimals": (third_row_bad(_row("pi_a", "12.50")), ":4: amount"),
        "amount-negative": (third_row_bad(_row("pi_b", "-5")), ":4: amount"),
        "amount-underscored": (third_row_bad(_row("pi_b2", "1_000")), ":4: amount"),  # int() took these
        "amount-other-digits": (third_row_bad(_row("pi_b3", "\u0661\u0660\u0660")), ":4: amount"),
        "bad-date": (third_row_bad(_row("pi_c", captured="yesterday")), ":4: captured_at"),
        "bad-currency": (third_row_bad(_row("pi_d", currency="EURO")), ":4: unknown currency"),
        "too-few-columns": (third_row_bad("stripe-test,pi_e,1000,EUR"), ":4: expected 7 columns"),
        "empty-file": ("", "header"),
        "header-only": (CSV_HEADER + "\n", "no payments"),
        "wrong-header": (wrong_header, "header"),
        "missing-file": (None, "nope.csv"),
        # The line where the record starts: after blank lines (rows were counted from 2, so this named
        # line 3), and for a quoted field over two lines (not the line it ends on).
        "after-blank-lines": (
            _csv(_row("pi_f"), "", "", _row("pi_g", "1.5")),
            ":5: amount",
        ),
        "multiline-field": (_csv(_row("pi_h", "x", order='"two\nlines"')), ":2: amount"),
        # A year the databases cannot store in UTC: "database error: date value out of range", no line.
        "captured-at-year-1": (
            third_row_bad(_row("pi_l", captured="0001-01-01T00:00:00+01:00")),
            ":4: captured_at",
        ),
        # Control characters in identifiers were stored (SQLite), or a database error without the line
        # and with a class repr (PostgreSQL, NUL).
        "reference-with-nul": (third_row_bad(_row("pi_m\x00")), ":4: payment_reference"),
        "reference-with-escape": (third_row_bad(_row("pi_n\x1b[2J")), ":4: payment_reference"),
        "order-with-tab": (third_row_bad(_row("pi_o", order="a\tb")), ":4: order_id"),
        # Beyond the csv module's field limit: a traceback (_csv.Error).
        "field-too-large": (_csv(_row("pi_j"), _row("pi_k", order="o" * 140_000)), ":3:"),
    }
    paths = [
        offline.workdir / "nope.csv" if text is None else offline.write(text, ".csv")
        for text, _ in cases.values()
    ]
    results = offline.cli_many([("payments", "import", str(path)) for path in paths])
    for (case, (_, needle)), path, result in zip(cases.items(), paths, results, strict=True):
        assert result.returncode != 0, case
        line = one_line_error(result, needle)
        assert path.name in line, (case, line)
    assert offline.count("payments") == 0


@pytest.mark.parametrize("problem", ["unknown-connection", "conflict"])
def test_payments_import_bad_third_row_imports_nothing(stack: Stack, problem: str) -> None:
    """Errors found while writing: the first two rows were already inserted, and are rolled back."""
    refs = [f"pi_csv_{uuid.uuid4().hex[:16]}" for _ in range(2)]
    if problem == "conflict":
        third, needle = _row(stack.payment(5_000), "9999"), "different data"
    else:
        third, needle = _row("pi_csv_third", connection="no-such-connection"), "no-such-connection"
    path = write(stack, _csv(_row(refs[0]), _row(refs[1], "2500"), third), ".csv")
    line = one_line_error(stack.cli("payments", "import", str(path), check=False), needle)
    assert f"{path.name}:4" in line, line
    for reference in refs:
        assert refund_status(stack, reference) == (422, "unknown_payment")


def test_payments_import_good_file_then_again(stack: Stack) -> None:
    refs = [f"pi_csv_{uuid.uuid4().hex[:16]}" for _ in range(3)]
    for reference in refs:
        stack.control(
            "payments",
            {
                "processor": "stripe",
                "payment_reference": reference,
                "amount": 3_000,
                "currency": "JPY" if reference == refs[2] else "EUR",
            },
        )
    path = write(
        stack,
        _csv(
            _row(refs[0], "1000", order="ord-1", invoice="inv-1"),
            _row(refs[1], "2000", captured="2026-11-01 10:00:00"),
            _row(refs[2], "3000", currency="jpy"),
        ),
        ".csv",
    )
    first = stack.cli("payments", "import", str(path), check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "payments: 3 created, 0 already present"
    second = stack.cli("payments", "import", str(path), check=False)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "payments: 0 created, 3 already present"

    created = stack.refund(refs[0], 1_000)
    assert created.status_code == 201, created.text
    assert created.json()["order_id"] == "ord-1"
    assert created.json()["invoice_id"] == "inv-1"
    assert stack.refund(refs[1], 2_001).json()["code"] == "amount_exceeds_refundable"
    assert stack.refund(refs[2], 3_000, currency="JPY").status_code == 201
    assert stack.refund(refs[2], 1, currency="EUR").json()["code"] == "currency_mismatch"


# --------------------------------------------------------------------------------------------- api keys


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--name", "x", "--scopes", "admin"], id="unknown-scope"),
        pytest.param(["--name", "x", "--scopes", "refunds:read,refunds:delete"], id="one-unknown"),
        pytest.param(["--name", "x", "--scopes", " , "], id="no-scopes"),
        pytest.param(["--name", "", "--scopes", "refunds:read"], id="empty-name"),
        # Control characters broke `apikeys list`'s one line per key.
        pytest.param(["--name", "two\nlines", "--scopes", "refunds:read"], id="name-newline"),
        pytest.param(["--name", "a\tb", "--scopes", "refunds:read"], id="name-tab"),
        pytest.param(["--name", "a\x1b[2Jb", "--scopes", "refunds:read"], id="name-escape"),
    ],
)
def test_apikeys_create_bad_input(offline: Offline, args: list[str]) -> None:
    result = offline.cli("apikeys", "create", *args)
    one_line_error(result, "scopes" if args[1] == "x" else "name")
    assert "rw_" not in result.stdout


def test_apikeys_create_prints_a_working_key_once(stack: Stack) -> None:
    result = stack.cli("apikeys", "create", "--name", "cli-test", "--scopes", "refunds:read,refunds:read")
    key = result.stdout.strip()
    assert re.fullmatch(r"rw_[A-Za-z0-9_-]{40,}", key), result.stdout
    with stack.api(key) as client:
        assert client.get("/api/v1/refunds", params={"limit": 1}).status_code == 200
        denied = client.post("/api/v1/refunds", json={}, headers={"Idempotency-Key": "x"})
        assert denied.status_code == 403
    other = stack.cli("apikeys", "create", "--name", "cli-test", "--scopes", "refunds:read").stdout.strip()
    assert other != key


# --------------------------------------------------------------------------------------------- audit


def test_audit_verify_on_an_intact_log(stack: Stack) -> None:
    stack.wait_status(stack.refund(stack.payment(1_000), 500).json()["id"], "succeeded")
    result = stack.cli("audit", "verify", check=False)
    assert result.returncode == 0, result.stderr
    match = re.search(r"(\d+) entries verified", result.stdout)
    assert match, result.stdout
    assert int(match.group(1)) > 0


# ------------------------------------------------------------------------------------- secrets at rest


def _database_bytes(stack: Stack) -> bytes:
    if stack.backend == "sqlite":
        db_file = Path(stack.database_url.split("///", 1)[1])
        parts = [db_file.read_bytes()]
        for suffix in ("-wal", "-journal", "-shm"):
            extra = db_file.with_name(db_file.name + suffix)
            if extra.exists():
                parts.append(extra.read_bytes())
        return b"".join(parts)
    url = stack.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    dump = subprocess.run(["pg_dump", "--no-owner", url], capture_output=True, timeout=120, check=False)
    assert dump.returncode == 0, dump.stderr.decode(errors="replace")
    return dump.stdout


def test_secrets_and_api_keys_are_not_stored_in_clear(stack: Stack) -> None:
    token = uuid.uuid4().hex
    name = f"secret-{token[:8]}"
    api_key, webhook_secret = f"sk_live_atrest_{token}", f"whsec_atrest_{token}"
    result = import_connections(stack, stripe_block(name, api_key=api_key, webhook_secret=webhook_secret))
    assert result.returncode == 0, result.stderr
    # Rotating the credential writes it again (update path).
    rotated_key = f"sk_live_rotated_{token}"
    result = import_connections(stack, stripe_block(name, api_key=rotated_key, webhook_secret=webhook_secret))
    assert result.stdout.strip() == "connections: 0 created, 1 updated, 0 unchanged"
    printed = stack.cli("apikeys", "create", "--name", f"atrest-{token[:8]}", "--scopes", "refunds:read")
    new_key = printed.stdout.strip()
    with stack.api(new_key) as client:  # the key works, so it is in the database in some form
        assert client.get("/api/v1/refunds", params={"limit": 1}).status_code == 200

    raw = _database_bytes(stack)
    # Positive controls: the dump is the real database, and it holds the things next to the secrets.
    assert name.encode() in raw
    assert b"stripe-test" in raw
    assert hashlib.sha256(new_key.encode()).hexdigest().encode() in raw
    for secret in (STRIPE_KEY, STRIPE_SECRET, api_key, rotated_key, webhook_secret, new_key, stack.api_key):
        assert secret.encode() not in raw, f"{secret} is stored in clear text"
    # Nor as the tail after the rw_ prefix (e.g. a stored key without its prefix).
    assert new_key[3:].encode() not in raw


def test_secrets_do_not_reach_the_web_or_worker_logs(stack: Stack) -> None:
    stack.wait_status(stack.refund(stack.payment(1_000), 100).json()["id"], "succeeded")
    for log in ("web.log", "worker.log"):
        text = (stack.workdir / log).read_text(errors="replace")
        for secret in (STRIPE_KEY, STRIPE_SECRET, stack.api_key):
            assert secret not in text, f"{secret} appears in {log}"


# ------------------------------------------------------------------------------------- start-up checks


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_in_production(
    offline: Offline, command: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run `refundwatch <command>` in production mode; report whether its port ever accepted a connection."""
    port = free_port()
    args = [PYTHON, "-m", "refundwatch", command] + (["--port", str(port)] if command == "serve" else [])
    proc_env = {
        **offline.env,
        "REFUNDWATCH_MODE": "production",
        "REFUNDWATCH_SECRET_KEY": "",
        "REFUNDWATCH_ENCRYPTION_KEYS": "",
        "REFUNDWATCH_AUDIT_KEY": "",
        **env,
    }
    proc = subprocess.Popen(
        args, env=proc_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=offline.workdir
    )
    bound = False
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        bound = bound or (command == "serve" and _port_open(port))
        time.sleep(0.05)
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)
    stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), bound


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_production_refuses_to_start_without_secrets(offline: Offline, command: str) -> None:
    result, bound = start_in_production(offline, command)
    one_line_error(result, "REFUNDWATCH_SECRET_KEY", "REFUNDWATCH_ENCRYPTION_KEYS", "REFUNDWATCH_AUDIT_KEY")
    assert not bound, "the server bound its port before refusing to start"

    if command == "serve":
        result, bound = start_in_production(offline, command, REFUNDWATCH_SECRET_KEY="s" * 40)
        line = one_line_error(result, "REFUNDWATCH_ENCRYPTION_KEYS")
        assert "REFUNDWATCH_SECRET_KEY" not in line
        assert not bound


@pytest.mark.parametrize("command", ["serve", "apikeys"])
def test_malformed_encryption_key_is_a_one_line_error(offline: Offline, command: str) -> None:
    env = {
        "REFUNDWATCH_SECRET_KEY": "s" * 40,
        "REFUNDWATCH_ENCRYPTION_KEYS": "not-a-key",
        "REFUNDWATCH_AUDIT_KEY": "a" * 40,
    }
    if command == "serve":
        result, bound = start_in_production(offline, command, **env)
        assert not bound, "the server bound its port before noticing the bad key"
    else:
        result = offline.cli(
            "apikeys",
            "create",
            "--name",
            "x",
            "--scopes",
            "refunds:read",
            REFUNDWATCH_MODE="production",
            **env,
        )
    one_line_error(result, "REFUNDWATCH_ENCRYPTION_KEYS")


@pytest.mark.parametrize(
    ("name", "value", "command"),
    [
        ("REFUNDWATCH_DATABASE_URL", "mysql://x/y", "db"),
        # Each of these ended in a traceback at the first connection (the port, the query, the path).
        ("REFUNDWATCH_DATABASE_URL", "postgresql+asyncpg://u:s3cret@h:abc/db", "db"),
        ("REFUNDWATCH_DATABASE_URL", "postgresql+asyncpg://u:s3cret@h:99999/db", "worker"),
        ("REFUNDWATCH_DATABASE_URL", "postgresql+asyncpg://h/db?bogus=1", "apikeys"),
        ("REFUNDWATCH_DATABASE_URL", "sqlite+aiosqlite://", "serve"),
        ("REFUNDWATCH_REDIS_URL", "http://127.0.0.1:6379/0", "serve"),
        ("REFUNDWATCH_REDIS_URL", "redis://127.0.0.1:6379/x", "worker"),
        # An unencoded / in the password: the parser's words quoted a piece of it.
        ("REFUNDWATCH_REDIS_URL", "redis://:s3cret/x@127.0.0.1:6379/0", "worker"),
        ("REFUNDWATCH_DATABASE_URL", "postgresql+asyncpg://u:p@ss:s3cret@h/db", "db"),
        ("REFUNDWATCH_LOG_LEVEL", "LOUD", "serve"),
        ("REFUNDWATCH_APPROVAL_THRESHOLD", "EUR:100,GBP:abc", "worker"),  # GBP refunds were 500s later
        ("REFUNDWATCH_APPROVAL_THRESHOLD", "EURO:100", "serve"),
    ],
)
def test_a_bad_setting_is_a_one_line_error_naming_it(
    offline: Offline, name: str, value: str, command: str
) -> None:
    args = {"db": ("db", "upgrade"), "apikeys": ("apikeys", "list")}.get(command, (command,))
    line = one_line_error(offline.cli(*args, **{name: value}), name)
    assert "s3cret" not in line  # a URL's password is never echoed


@pytest.mark.parametrize("command", ["db", "apikeys", "worker"])
@pytest.mark.parametrize("missing", ["database", "role"])
def test_a_postgresql_without_the_database_or_role_is_one_line(
    offline: Offline, missing: str, command: str
) -> None:
    """asyncpg raises these at connect, unwrapped by SQLAlchemy: every command printed ~90 lines of
    traceback. One line naming the problem, never the URL's password."""
    admin = ensure_postgres()
    if admin is None:
        pytest.skip(f"PostgreSQL unavailable: {postgres_unavailable_reason()}")
    parts = urlsplit(admin)
    host = f"{parts.hostname}:{parts.port or 5432}"
    if missing == "database":
        url = f"postgresql+asyncpg://{parts.username}:s3cret@{host}/refundwatch_no_such_database"
        needle = 'database "refundwatch_no_such_database" does not exist'
    else:
        url = f"postgresql+asyncpg://refundwatch_no_such_role:s3cret@{host}/postgres"
        needle = "refundwatch_no_such_role"
    args = {"db": ("db", "upgrade"), "apikeys": ("apikeys", "list")}.get(command, (command,))
    result = offline.cli(*args, REFUNDWATCH_DATABASE_URL=url, REFUNDWATCH_REDIS_URL=ensure_redis())
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("refundwatch: "), last
    assert needle in last, last
    assert "s3cret" not in result.stderr + result.stdout


def test_a_worker_without_redis_ends_with_one_line(offline: Offline) -> None:
    """The worker needs Redis to take jobs: after arq's retries (logged as they happen) it exits with
    one line naming Redis, for its supervisor to start it again; it ended in a traceback."""
    result = offline.cli("worker")  # the offline set-up's Redis is a closed port
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("refundwatch: Redis does not answer"), last


def test_a_worker_whose_redis_refuses_its_password_says_so(offline: Offline, tmp_path: Path) -> None:
    """Not "does not answer": Redis answered, and refused the credentials (it was all one message)."""
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", "right"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        result = offline.cli("worker", REFUNDWATCH_REDIS_URL=f"redis://:wrong@127.0.0.1:{port}/0")
    finally:
        redis.terminate()
        redis.wait(timeout=10)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == "refundwatch: Redis refused the credentials in REFUNDWATCH_REDIS_URL", last
    assert "wrong" not in result.stderr
