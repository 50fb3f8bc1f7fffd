"""Refund metadata (free text, personal data) is encrypted at rest, migrated, and rotated with the keys."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

from refundwatch.lib.crypto import FieldCipher
from stack import Stack, db_rows

PYTHON = sys.executable
NOTE = "Jane Customer, 12 Garden Lane: parcel came back damaged"


def test_metadata_is_stored_encrypted_and_read_back(stack: Stack) -> None:
    reference = stack.payment(10_000)
    created = stack.refund(reference, 1_000, metadata={"customer_note": NOTE}).json()
    assert created["metadata"] == {"customer_note": NOTE}
    assert stack.get(created["id"])["metadata"] == {"customer_note": NOTE}
    rows = db_rows(stack, "SELECT metadata_encrypted FROM refunds")
    assert rows
    for (stored,) in rows:
        assert "$" in stored
        assert "Garden Lane" not in stored
        assert "customer_note" not in stored


def _sqlite_env(tmp_path: Path, keys: str) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "REFUNDWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'rw.db'}",
        "REFUNDWATCH_ENCRYPTION_KEYS": keys,
    }


def test_migration_encrypts_existing_metadata(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    env = _sqlite_env(tmp_path, key)
    code = "from refundwatch.db.migrate import upgrade; import sys; upgrade(sys.argv[1], sys.argv[2])"
    url = env["REFUNDWATCH_DATABASE_URL"]
    subprocess.run([PYTHON, "-c", code, url, "0001"], env=env, check=True)
    refund_id = uuid.uuid4().bytes
    with contextlib.closing(sqlite3.connect(tmp_path / "rw.db")) as db:  # no FK checks: a bare row
        db.execute(
            "INSERT INTO refunds (id, payment_id, connection_id, payment_reference, amount, currency, reason,"
            " metadata, status, gateway_idempotency_key, attempts, client_scope, idempotency_key,"
            " request_fingerprint, created_by, created_at, updated_at) VALUES (?, ?, ?, 'pi_1', 100, 'EUR',"
            " 'return', ?, 'succeeded', 'rw_x', 1, 's', 'k', 'f', 'u', '2026-11-01', '2026-11-01')",
            (refund_id, uuid.uuid4().bytes, uuid.uuid4().bytes, json.dumps({"note": NOTE})),
        )
        db.commit()
    subprocess.run([PYTHON, "-c", code, url, "head"], env=env, check=True)
    with contextlib.closing(sqlite3.connect(tmp_path / "rw.db")) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(refunds)")]
        (stored,) = db.execute("SELECT metadata_encrypted FROM refunds").fetchone()
    assert "metadata" not in columns
    assert NOTE not in stored
    assert json.loads(FieldCipher([key]).decrypt(stored)) == {"note": NOTE}
    dump = b"".join(p.read_bytes() for p in tmp_path.glob("rw.db*"))
    assert b"Garden Lane" not in dump
