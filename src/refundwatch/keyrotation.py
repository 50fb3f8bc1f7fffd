"""`refundwatch keys rotate`: re-encrypt every field encrypted at rest under the first configured key.

Encrypted fields are the columns named ``*_encrypted`` (found on the shared metadata, so a new one is
rotated without being listed here). Each stored value starts with the id of the key that made it
(``lib.crypto``), so a value already under the first key is left exactly as it is: running the command
again rotates nothing and writes nothing but its audit entry.

How it runs:
1. A read-only pass decrypts every value that needs rotating. If one cannot be decrypted with any
   configured key, it stops with a ``BadInput`` naming the table, row and column: nothing is written.
2. Rows are then re-encrypted in primary-key order, ``BATCH_SIZE`` at a time, one transaction per batch
   holding the batch's rows locked (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction locks the
   database). Each update is guarded by the old value, so a value changed meanwhile is left to a re-run.
3. The last batch's transaction also records one ``cli:keys:rotate`` audit entry with the run's counts.
   Interrupted half-way, committed batches stay rotated (they decrypt as before); a re-run finishes.

Operators: deploy ``REFUNDWATCH_ENCRYPTION_KEYS=NEW,OLD`` to every process first, run this, and only
then drop OLD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Column, CursorResult, Select, Table, Text, select, type_coerce, update

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.db.models import metadata
from refundwatch.lib.crypto import DecryptionError, FieldCipher
from refundwatch.lib.exceptions import BadInput
from refundwatch.runtime import Runtime

BATCH_SIZE = 200
ENCRYPTED_SUFFIX = "_encrypted"


@dataclass(frozen=True, slots=True)
class EncryptedColumn:
    table: Table
    column: Column[Any]

    @property
    def row_id(self) -> Column[Any]:
        (key,) = self.table.primary_key.columns
        return key

    @property
    def label(self) -> str:
        return f"{self.table.name}.{self.column.name}"


def encrypted_columns() -> list[EncryptedColumn]:
    """Every column that holds a value encrypted at rest, in a stable order."""
    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            if column.name.endswith(ENCRYPTED_SUFFIX):
                if len(table.primary_key.columns) != 1:
                    raise RuntimeError(f"{table.name}: key rotation needs a single-column primary key")
                found.append(EncryptedColumn(table, column))
    return found


@dataclass
class RotationReport:
    key_id: str  # the id of the key everything is encrypted under now
    rotated: dict[str, int] = field(default_factory=dict)  # per table
    already_current: int = 0

    @property
    def total_rotated(self) -> int:
        return sum(self.rotated.values())

    def summary(self) -> str:
        per_table = ", ".join(f"{table}: {count}" for table, count in self.rotated.items() if count)
        return (
            f"rotated {self.total_rotated} values{f' ({per_table})' if per_table else ''}, "
            f"{self.already_current} already current"
        )


def _raw(target: EncryptedColumn) -> Any:
    """The stored text itself, past any type that would decrypt it on the way out."""
    return type_coerce(target.column, Text)


def _batch(target: EncryptedColumn, after: Any) -> Select[Any]:
    query = (
        select(target.row_id, _raw(target))
        .where(target.column.is_not(None))
        .order_by(target.row_id)
        .limit(BATCH_SIZE)
    )
    return query if after is None else query.where(target.row_id > after)


def _decrypt(cipher: FieldCipher, target: EncryptedColumn, row_id: Any, stored: str, *, written: int) -> str:
    try:
        return cipher.decrypt(stored)
    except DecryptionError as exc:
        outcome = (
            "nothing was changed"
            if not written
            else f"{written} values before it were rotated and still decrypt; re-run once it is fixed"
        )
        raise BadInput(
            f"{target.table.name} row {row_id}: {target.column.name} cannot be decrypted with the keys in "
            f"REFUNDWATCH_ENCRYPTION_KEYS ({exc}); {outcome}"
        ) from None


async def _check_decryptable(rt: Runtime, columns: list[EncryptedColumn]) -> None:
    """Read-only: every value that needs rotating must decrypt before anything is written."""
    async with rt.db.read_engine.connect() as conn:
        for target in columns:
            after = None
            while True:
                rows = (await conn.execute(_batch(target, after))).all()
                for row_id, stored in rows:
                    if rt.cipher.needs_rotation(stored):
                        _decrypt(rt.cipher, target, row_id, stored, written=0)
                if len(rows) < BATCH_SIZE:
                    break
                after = rows[-1][0]


async def rotate_keys(rt: Runtime, actor: Actor) -> RotationReport:
    """Re-encrypt every encrypted value not under the first key of REFUNDWATCH_ENCRYPTION_KEYS."""
    columns = encrypted_columns()
    await _check_decryptable(rt, columns)
    report = RotationReport(key_id=rt.cipher.primary_id, rotated={t.table.name: 0 for t in columns})
    # Batches to run: (column, the last row id of its previous batch). The audit entry goes into the
    # last batch's transaction (with no encrypted column at all, into a transaction of its own).
    steps: list[tuple[EncryptedColumn | None, Any]] = [(target, None) for target in columns] or [(None, None)]
    while steps:
        target, after = steps.pop(0)
        async with rt.db.session() as session:
            if target is not None:
                rows = (await session.execute(_batch(target, after).with_for_update())).all()
                for row_id, stored in rows:
                    if not rt.cipher.needs_rotation(stored):
                        report.already_current += 1
                        continue
                    plain = _decrypt(rt.cipher, target, row_id, stored, written=report.total_rotated)
                    values: dict[str, Any] = {target.column.name: type_coerce(rt.cipher.encrypt(plain), Text)}
                    if "updated_at" in target.table.c:  # a new ciphertext is not a change of the row
                        values["updated_at"] = target.table.c.updated_at
                    result = cast(
                        CursorResult[Any],
                        await session.execute(
                            update(target.table)
                            .where(target.row_id == row_id, _raw(target) == type_coerce(stored, Text))
                            .values(values)
                        ),
                    )
                    report.rotated[target.table.name] += result.rowcount
                if len(rows) == BATCH_SIZE:
                    steps.insert(0, (target, rows[-1][0]))
            if not steps:
                record(
                    session,
                    actor,
                    actions.CLI_KEYS_ROTATE,
                    target_type="encryption_key",
                    target_id=report.key_id,
                    details={
                        "rotated": report.rotated,
                        "already_current": report.already_current,
                        "columns": [t.label for t in columns],
                    },
                )
            await session.commit()
    return report
