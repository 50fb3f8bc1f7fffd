"""`refundwatch keys rotate` (issue 3 §5) against real migrated databases, run as the real command:
values move to the first key, the app still reads them, a re-run changes nothing, the old key can then
go, an undecryptable value stops everything before anything is written, and no secret is in clear."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from _services import (
    create_pg_database,
    drop_pg_database,
    ensure_postgres,
    postgres_unavailable_reason,
    unique_pg_database_name,
)
from refundwatch.lib.crypto import key_id
from stack import BACKENDS, PYTHON


@dataclass
class Db:
    backend: str
    url: str
    workdir: Path
    env: dict[str, str]

    def cli(self, *args: str, keys: list[str], python: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, *args] if python else [PYTHON, "-m", "refundwatch", *args],
            env={**self.env, "REFUNDWATCH_ENCRYPTION_KEYS": ",".join(keys)},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.workdir,
            check=False,
        )

    def ok(self, *args: str, keys: list[str], python: bool = False) -> str:
        """The command's output; ``python``: ``args`` are the interpreter's (a script with -c)."""
        result = self.cli(*args, keys=keys, python=python)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout.strip()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            with contextlib.closing(sqlite3.connect(self.url.split(":///", 1)[1], timeout=30)) as conn:
                return [tuple(row) for row in conn.execute(sql).fetchall()]
        dsn = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

        async def work() -> list[tuple[Any, ...]]:
            import asyncpg

            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                return [tuple(row) for row in await conn.fetch(sql)]
            finally:
                await conn.close()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # never on a running event loop
            return pool.submit(asyncio.run, work()).result(timeout=30)

    def stored(self) -> dict[str, str]:
        """Connection name -> the stored (encrypted) credentials."""
        return dict(self.rows("SELECT name, credentials_encrypted FROM connections"))  # type: ignore[arg-type]

    def ids(self) -> dict[str, str]:
        """Connection name -> row id (SQLite stores a UUID as its 16 bytes)."""
        return {
            name: str(uuid.UUID(bytes=row_id) if isinstance(row_id, bytes) else row_id)
            for name, row_id in self.rows("SELECT name, id FROM connections")
        }

    def rotations(self) -> list[dict[str, Any]]:
        return [
            json.loads(details)
            for (details,) in self.rows("SELECT details FROM audit_log WHERE action = 'cli:keys:rotate'")
        ]

    def everything(self) -> bytes:
        """The whole database as bytes: the SQLite files (with the WAL), or a PostgreSQL dump."""
        if self.backend == "sqlite":
            path = Path(self.url.split(":///", 1)[1])
            parts = [path.read_bytes()]
            for suffix in ("-wal", "-journal", "-shm"):
                extra = path.with_name(path.name + suffix)
                if extra.exists():
                    parts.append(extra.read_bytes())
            return b"".join(parts)
        dsn = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        with contextlib.suppress(OSError):
            dump = subprocess.run(
                ["pg_dump", "--no-owner", dsn], capture_output=True, timeout=120, check=False
            )
            if dump.returncode == 0:
                return dump.stdout
        # No usable pg_dump (missing, or older than the server): every text column of every table.
        columns = self.rows(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'json', 'jsonb')"
        )
        chunks = [
            str(value).encode()
            for table, column in columns
            for (value,) in self.rows(f'SELECT "{column}"::text FROM "{table}"')
        ]
        assert chunks
        return b"\n".join(chunks)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    backend: str = request.param
    pg_name = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    else:
        admin = ensure_postgres()
        if admin is None:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL is required in CI: {postgres_unavailable_reason()}")
            pytest.skip(f"PostgreSQL unavailable: {postgres_unavailable_reason()}")
        pg_name = unique_pg_database_name("keys")
        url = create_pg_database(admin, pg_name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFUNDWATCH_")}
    env.update(
        REFUNDWATCH_MODE="test",
        REFUNDWATCH_DATABASE_URL=url,
        REFUNDWATCH_REDIS_URL="redis://127.0.0.1:1/0",  # none of these commands needs Redis
        REFUNDWATCH_LOG_JSON="false",
    )
    try:
        yield Db(backend, url, tmp_path, env)
    finally:
        if pg_name is not None:
            admin = ensure_postgres()
            if admin is not None:
                drop_pg_database(admin, pg_name)


def connections_file(path: Path, secrets: dict[str, tuple[str, str]]) -> Path:
    blocks = [
        f'[[connection]]\nname = "{name}"\nprocessor = "stripe"\nbase_url = "http://127.0.0.1:9/stripe"\n'
        f'api_key = "{api_key}"\nwebhook_secret = "{webhook_secret}"\n'
        for name, (api_key, webhook_secret) in secrets.items()
    ]
    path.write_text("\n".join(blocks))
    return path


def under(stored: str, key: str) -> bool:
    return stored.startswith(f"{key_id(key)}$")


def new_key() -> str:
    return Fernet.generate_key().decode()


def test_rotate_reencrypts_under_the_first_key_and_can_be_rerun(db: Db) -> None:
    key_a, key_b = new_key(), new_key()
    token = uuid.uuid4().hex
    secrets = {
        f"rot-{i}-{token[:6]}": (f"sk_test_rotate{i}_{token}", f"whsec_rotate{i}_{token}") for i in range(3)
    }
    names = sorted(secrets)
    file = connections_file(db.workdir / "connections.toml", secrets)
    db.ok("db", "upgrade", keys=[key_a])
    assert (
        db.ok("connections", "import", str(file), keys=[key_a])
        == "connections: 3 created, 0 updated, 0 unchanged"
    )
    before = db.stored()
    assert sorted(before) == names
    assert all(under(value, key_a) for value in before.values())
    updated_at = db.rows("SELECT name, updated_at FROM connections ORDER BY name")

    # New key first, old key still there: everything moves to the new key.
    out = db.ok("keys", "rotate", keys=[key_b, key_a])
    assert out == "rotated 3 values (connections: 3), 0 already current"
    after = db.stored()
    assert all(under(value, key_b) for value in after.values()), after
    assert all(after[name] != before[name] for name in names)
    assert db.rows("SELECT name, updated_at FROM connections ORDER BY name") == updated_at
    assert db.rotations() == [
        {
            "already_current": 0,
            # Pending credential changes (admin screens) and outgoing webhook endpoints' signing secrets
            # (current and previous) are encrypted too, and rotated with the rest.
            "columns": [
                "connections.credentials_encrypted",
                "connection_changes.values_encrypted",
                "webhook_endpoints.secret_encrypted",
                "webhook_endpoints.previous_secret_encrypted",
                "refunds.metadata_encrypted",
            ],
            "rotated": {"connections": 3, "connection_changes": 0, "refunds": 0, "webhook_endpoints": 0},
        }
    ]
    # The application reads them (import decrypts to compare: same secrets, so nothing changes).
    assert db.ok("connections", "import", str(file), keys=[key_b, key_a]) == (
        "connections: 0 created, 0 updated, 3 unchanged"
    )

    # Again: nothing to do, nothing rewritten (only the audit entry of the run).
    assert db.ok("keys", "rotate", keys=[key_b, key_a]) == "rotated 0 values, 3 already current"
    assert db.stored() == after
    assert [r["rotated"] for r in db.rotations()] == [
        {"connections": 3, "connection_changes": 0, "refunds": 0, "webhook_endpoints": 0},
        {"connections": 0, "connection_changes": 0, "refunds": 0, "webhook_endpoints": 0},
    ]

    # The old key can go now.
    assert (
        db.ok("connections", "import", str(file), keys=[key_b])
        == "connections: 0 created, 0 updated, 3 unchanged"
    )
    assert db.ok("keys", "rotate", keys=[key_b]) == "rotated 0 values, 3 already current"
    assert db.stored() == after

    # The audit chain still holds with the new entries in it.
    db.ok("audit", "seal", keys=[key_b])
    assert re.match(r"audit chain intact: \d+ entries verified", db.ok("audit", "verify", keys=[key_b]))

    # No secret in clear anywhere in the database; the names next to them are (positive control).
    raw = db.everything()
    for name in names:
        assert name.encode() in raw
    for api_key, webhook_secret in secrets.values():
        assert api_key.encode() not in raw, f"{api_key} is stored in clear"
        assert webhook_secret.encode() not in raw, f"{webhook_secret} is stored in clear"
    assert token.encode() not in raw


def test_an_undecryptable_value_stops_the_rotation_before_anything_is_written(db: Db) -> None:
    key_a, key_b, key_c, key_d = new_key(), new_key(), new_key(), new_key()
    token = uuid.uuid4().hex
    db.ok("db", "upgrade", keys=[key_a])
    first = connections_file(db.workdir / "a.toml", {"under-a": (f"sk_test_a_{token}", f"whsec_a_{token}")})
    lost = connections_file(db.workdir / "c.toml", {"under-c": (f"sk_test_c_{token}", f"whsec_c_{token}")})
    db.ok("connections", "import", str(first), keys=[key_a])
    db.ok("connections", "import", str(lost), keys=[key_c])  # made under a key the next run lacks
    before, lost_id = db.stored(), db.ids()["under-c"]
    audit_rows = db.rows("SELECT count(*) FROM audit_log")

    result = db.cli("keys", "rotate", keys=[key_b, key_a])  # C is missing; "under-a" alone could rotate
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("refundwatch: connections row "), line
    assert lost_id in line
    assert "credentials_encrypted" in line
    assert "REFUNDWATCH_ENCRYPTION_KEYS" in line
    assert "nothing was changed" in line
    assert result.stdout == ""
    assert db.stored() == before  # "under-a" was not rotated either
    assert db.rows("SELECT count(*) FROM audit_log") == audit_rows
    assert f"sk_test_c_{token}" not in line

    # With every old key present, it goes through; a malformed key list is a one-line error too.
    assert db.ok("keys", "rotate", keys=[key_d, key_a, key_c]) == (
        "rotated 2 values (connections: 2), 0 already current"
    )
    assert all(under(value, key_d) for value in db.stored().values())
    malformed = db.cli("keys", "rotate", keys=["not-a-key"])
    assert malformed.returncode != 0
    assert malformed.stderr.strip().startswith("refundwatch: REFUNDWATCH_ENCRYPTION_KEYS")
    assert len(malformed.stderr.strip().splitlines()) == 1


_ENDPOINT_SCRIPT = """
import asyncio, datetime as dt, json, os, sys, uuid
os.environ["REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"  # the endpoint is never sent to
from refundwatch.audit.actions import Actor
from refundwatch.outgoing import delivery, endpoints, signing
from refundwatch.runtime import Runtime

async def main(step):
    rt = Runtime.build()
    try:
        if step == "create":
            actor = Actor("system", "tests")
            url = "http://127.0.0.1:9/refunds"
            data = endpoints.EndpointCreate(url=url, events=["refund.created"])
            made = await endpoints.create_endpoint(rt, data, actor=actor, source="tests", created_by="tests")
            now = await endpoints.rotate_secret(rt, made.id, actor=actor, source="tests", overlap_hours=24)
            print(json.dumps({"id": str(made.id), "previous": made.secret, "current": now.secret}))
        else:
            endpoint_id = uuid.UUID(sys.argv[2])
            signer = (await delivery.signers(rt, {endpoint_id}))[endpoint_id]
            at = dt.datetime.now(dt.UTC)
            print(json.dumps(signing.headers("msg_rotation", b'{"a":1}', signer.secrets, at)))
    finally:
        await rt.close()

asyncio.run(main(sys.argv[1]))
"""


def test_an_outgoing_webhook_endpoint_still_signs_with_its_secrets_after_rotation(db: Db) -> None:
    """Key rotation re-encrypts the endpoints' signing secrets (current and, during its overlap, the
    previous one); what the sender decrypts under the new key alone is what the receiver was shown."""
    from standardwebhooks import Webhook

    key_a, key_b = new_key(), new_key()
    db.ok("db", "upgrade", keys=[key_a])
    shown = json.loads(db.ok("-c", _ENDPOINT_SCRIPT, "create", keys=[key_a], python=True))
    assert (
        db.ok("keys", "rotate", keys=[key_b, key_a])
        == "rotated 2 values (webhook_endpoints: 2), 0 already current"
    )
    headers = json.loads(db.ok("-c", _ENDPOINT_SCRIPT, "sign", shown["id"], keys=[key_b], python=True))
    for secret in (shown["current"], shown["previous"]):  # the receiver may hold either during the overlap
        assert Webhook(secret).verify(b'{"a":1}', headers) == {"a": 1}
    raw = db.everything()
    assert shown["current"].encode() not in raw
    assert shown["previous"].encode() not in raw
