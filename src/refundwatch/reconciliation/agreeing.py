"""PostgreSQL: a refund line that plainly agrees with its refund is matched as it is stored.

Nearly every line of a settlement report is the settlement of a refund refundwatch knows, for the
amount and currency it asked, already succeeded here. Matching such a line afterwards writes each line a
second time (a new row version in every index, and the foreign key check on ``refund_id``): that was
most of matching's time on a million lines (docs/PERFORMANCE.md). Here a batch of lines goes through a
temporary table and into ``settlement_lines`` in one ``INSERT … SELECT``, each line that agrees already
``matched`` to its refund; every other line is stored unmatched and ``matching`` decides it as before.

A line is matched here only where ``verdicts.classify`` could not decide otherwise, whenever matching
ran, so the result is the same:
- a refund line (not a failure), with the processor's refund id, the first line of its key: no line
  with its processor key is stored yet (so it cannot be a duplicate or a repeat of one) and no earlier
  line of the batch has it;
- exactly one refund of the connection has that processor refund id, and it is ``succeeded`` with the
  line's currency and amount (no status to move);
- no refund failure waiting to be matched, in this file or another, may concern that refund: a failure
  decided first would reverse the refund, and the line would then not simply agree. A waiting failure
  that matching would look up by a reference spelled in a way not read here stops this path for the
  whole batch.

The import runs in one transaction on PostgreSQL, so these verdicts appear together with the file,
once it is whole: until then no reader sees a line of it, matched or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

# The temporary table a batch is copied into (asyncpg's binary COPY), then moved from.
INCOMING = "settlement_lines_incoming"

# A merchant reference that PostgreSQL's uuid type and Python's UUID() read alike (hyphens optional).
_UUID = "^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$"


def create_incoming(columns: Sequence[str]) -> str:
    """The temporary table for one import's batches, gone when its transaction ends."""
    return (
        f"CREATE TEMPORARY TABLE {INCOMING} ON COMMIT DROP AS "
        f"SELECT {', '.join(columns)} FROM settlement_lines WITH NO DATA"
    )


# In this transaction only: no JIT for a statement run once per batch (its cost estimate is large
# because the temporary table has no statistics), and room to sort a batch in memory.
SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '32MB'")


def store_batch(columns: Sequence[str]) -> str:
    """The statement moving a batch from ``INCOMING`` into ``settlement_lines``, in row order, the lines
    that agree already matched; ``$1`` is the file's connection, ``$2`` it and the connections reaching
    the same processor account (a line one of them imported already is left to the matcher, which
    tells a repeat). Returns how many it matched.

    Each lookup is a LATERAL subquery, so PostgreSQL probes an index per line rather than hashing a
    whole table per batch, whatever its estimates (the temporary table has none)."""
    listed = ", ".join(columns)
    taken = ", ".join(f"b.{name}" for name in columns)
    return f"""
WITH waiting AS (
    SELECT gateway_refund_id, merchant_reference FROM settlement_lines
    WHERE kind = 'refund_failure' AND match IS NULL AND connection_id = $1
    UNION ALL
    SELECT gateway_refund_id, merchant_reference FROM {INCOMING} WHERE kind = 'refund_failure'
), waiting_for AS (
    SELECT w.merchant_reference, r.id FROM waiting w
    LEFT JOIN refunds r ON r.gateway_refund_id = w.gateway_refund_id AND r.connection_id = $1
        AND w.gateway_refund_id <> ''
), held AS (
    SELECT id FROM waiting_for WHERE id IS NOT NULL
    UNION
    SELECT CASE WHEN merchant_reference ~ '{_UUID}' THEN CAST(merchant_reference AS uuid) END
    FROM waiting_for WHERE id IS NULL AND merchant_reference ~ '{_UUID}'
), firsts AS (
    SELECT min(row_number) AS row_number FROM {INCOMING} GROUP BY line_key
), stored AS (
    INSERT INTO settlement_lines ({listed}, match, refund_id)
    SELECT {taken}, CASE WHEN agreed.id IS NOT NULL THEN 'matched' END, agreed.id
    FROM {INCOMING} b
    LEFT JOIN LATERAL (
        SELECT true AS found FROM settlement_lines e
        WHERE b.kind = 'refund' AND e.connection_id = ANY($2::uuid[]) AND e.line_key = b.line_key
        LIMIT 1
    ) same_key ON true
    LEFT JOIN LATERAL (
        SELECT r.id FROM (
            SELECT r.id, r.status, r.currency, r.amount, count(*) OVER () AS refunds
            FROM refunds r
            WHERE b.kind = 'refund' AND b.gateway_refund_id <> '' AND same_key.found IS NULL
                AND r.gateway_refund_id = b.gateway_refund_id AND r.connection_id = b.connection_id
        ) r
        WHERE r.refunds = 1 AND r.status = 'succeeded' AND r.currency = b.currency
            AND r.amount = abs(b.gross)
            AND b.row_number IN (SELECT row_number FROM firsts)
            AND r.id NOT IN (SELECT id FROM held WHERE id IS NOT NULL)
            AND NOT EXISTS (
                SELECT FROM waiting_for u WHERE u.id IS NULL AND u.merchant_reference <> ''
                    AND u.merchant_reference !~ '{_UUID}'
            )
        OFFSET 0
    ) agreed ON true
    ORDER BY b.row_number
    RETURNING match
)
SELECT count(*) FILTER (WHERE match IS NOT NULL) FROM stored
"""


async def store(
    driver: Any,
    rows: list[tuple[Any, ...]],
    columns: Sequence[str],
    statement: str,
    connection_id: UUID,
    siblings: Sequence[UUID],
) -> int:
    """Store ``rows`` (in ``columns``' order) through ``INCOMING`` on an asyncpg connection already in
    the import's transaction; how many were matched."""
    await driver.copy_records_to_table(INCOMING, records=rows, columns=columns)
    matched = await driver.fetchval(statement, connection_id, list(siblings))
    await driver.execute(f"TRUNCATE {INCOMING}")
    return int(matched)
