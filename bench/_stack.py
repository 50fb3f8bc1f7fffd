"""What the benchmarks share: a fresh database per backend, and refundwatch's own CLI run on it.

pipeline.py (and dashboard.py through it) and reconcile.py each run on a database of their own, made
here and dropped here, with the processes' environment pointing at it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg

PY = sys.executable
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def create_database(backend: str, workdir: Path, pg_admin: str, prefix: str) -> tuple[str, str | None]:
    """A fresh database: its SQLAlchemy URL, and its name on PostgreSQL (None for SQLite, a file in
    ``workdir``). PostgreSQL's is ``<prefix>_<pid>``, made again if a run left it behind."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None
    name = f"{prefix}_{os.getpid()}"
    conn = await asyncpg.connect(pg_admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(pg_admin, name), name


def database_url(pg_admin: str, name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the server of ``pg_admin``."""
    return pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


async def drop_database(pg_admin: str, name: str | None) -> None:
    if name is None:
        return
    conn = await asyncpg.connect(pg_admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def base_vars(db_url: str) -> dict[str, str]:
    """The environment every refundwatch process of a run gets."""
    return {
        **os.environ,
        "REFUNDWATCH_MODE": "test",
        "REFUNDWATCH_DATABASE_URL": db_url,
        "REFUNDWATCH_LOG_LEVEL": "WARNING",
    }


def cli(env: dict[str, str], workdir: Path, *args: str) -> str:
    """``refundwatch ARGS`` with ``env``; its stdout, or the run stops with its stderr."""
    out = subprocess.run(
        [PY, "-m", "refundwatch", *args], env=env, capture_output=True, text=True, check=False, cwd=workdir
    )
    if out.returncode:
        raise SystemExit(f"refundwatch {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()
