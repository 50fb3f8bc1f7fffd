"""The README's PostgreSQL roles for the audit log, run as written: the migration role owns the
tables, the app role records, seals, anchors and verifies, and cannot drop or bypass the triggers.

Only PostgreSQL has roles (SQLite: whoever can write the file can drop its triggers; the key and the
anchors cover that, tests/integration/test_audit.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from _services import _PG_MARK, drop_pg_database, ensure_postgres, unique_pg_database_name

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_sql() -> tuple[str, str]:
    """The two SQL blocks of the README's "The audit log" section: set-up, then narrowing audit_log."""
    text = README.read_text()
    section = text[text.index("## The audit log") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(blocks) == 2, blocks
    return blocks[0], blocks[1]


@dataclass
class Roles:
    admin: str
    database: str
    migrator: str
    app: str
    password: str

    def dsn(self, role: str, *, scheme: str = "postgresql", database: str | None = None) -> str:
        parts = urlsplit(self.admin)
        netloc = f"{role}:{self.password}@{parts.hostname}:{parts.port or 5432}"
        return urlunsplit((scheme, netloc, f"/{database or self.database}", "", ""))

    def adapt(self, sql: str) -> str:
        """The README's names made unique to this run (roles are cluster-wide)."""
        sql = sql.replace("refundwatch_migrator", self.migrator).replace("refundwatch_app", self.app)
        sql = sql.replace("DATABASE refundwatch OWNER", f"DATABASE {self.database} OWNER")
        sql = sql.replace("'…'", f"'{self.password}'")
        return re.sub(r"--[^\n]*", "", sql)  # comments (they hold semicolons)


def _in_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def _execute(dsn: str, sql: str) -> None:
    async def work() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(work())


@pytest.fixture(scope="module")
def roles() -> Iterator[Roles]:
    admin = ensure_postgres()
    if admin is None:
        pytest.skip("PostgreSQL unavailable")
    tag = secrets.token_hex(4)
    found = Roles(admin, unique_pg_database_name("roles"), f"rw_migrator_{tag}", f"rw_app_{tag}", tag * 2)
    setup, _ = _readme_sql()
    on_server, _, in_database = found.adapt(setup).partition("\\c refundwatch\n")
    try:
        for statement in filter(str.strip, on_server.split(";")):  # CREATE DATABASE: one at a time
            _execute(admin, statement)
        _execute(admin, f"COMMENT ON DATABASE \"{found.database}\" IS '{_PG_MARK}'")
        _execute(
            found.dsn("postgres", database=found.database).replace(
                f"postgres:{found.password}@", "postgres@"
            ),
            in_database,
        )
        yield found
    finally:
        drop_pg_database(admin, found.database)
        for role in (found.app, found.migrator):
            _execute(admin, f"DROP ROLE IF EXISTS {role}")


def _cli(roles: Roles, role: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFUNDWATCH_")}
    env.update(
        REFUNDWATCH_MODE="test",
        REFUNDWATCH_DATABASE_URL=roles.dsn(role, scheme="postgresql+asyncpg"),
        REFUNDWATCH_LOG_JSON="false",
    )
    return subprocess.run(
        [sys.executable, "-m", "refundwatch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_the_app_role_audits_but_cannot_touch_the_guards(roles: Roles, tmp_path: Path) -> None:
    upgraded = _cli(roles, roles.migrator, "db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    _, narrow = _readme_sql()
    _execute(roles.dsn(roles.migrator), roles.adapt(narrow))

    for args in (
        ("apikeys", "create", "--name", "roles", "--scopes", "refunds:read"),  # records an audit entry
        ("audit", "seal"),
        ("audit", "anchor"),
        ("audit", "verify"),
    ):
        result = _cli(roles, roles.app, *args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    assert "matches the last anchor (seq 1," in result.stdout, result.stdout

    import asyncpg

    for statement, refusal in (
        ("DROP TRIGGER audit_log_append_only ON audit_log", "must be owner"),
        ("ALTER TABLE audit_log DISABLE TRIGGER USER", "must be owner"),
        ("SET session_replication_role = replica", "permission denied"),
        ("DELETE FROM audit_log", "permission denied"),
        ("TRUNCATE audit_log", "permission denied"),
        ("UPDATE audit_log SET details = '{}'", "permission denied"),
    ):
        with pytest.raises(asyncpg.PostgresError, match=refusal):
            _execute(roles.dsn(roles.app), statement)
