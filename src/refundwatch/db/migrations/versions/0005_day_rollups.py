"""day buckets in the dashboard rollups

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 06:15:00

The 30-day window and the all-time totals of /metrics read day rows (res 'd'): a few hundred rows
instead of tens of thousands of hour rows. The worker writes them from now on; existing hour rows are
summed into day rows here.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_HIST = ", ".join(f"{kind}{i:02d}" for kind in ("a", "f") for i in range(16))
_HIST_SUMS = ", ".join(f"sum({kind}{i:02d})" for kind in ("a", "f") for i in range(16))


def _day(dialect: str) -> str:
    if dialect == "postgresql":
        return "date_trunc('day', bucket)"
    return "strftime('%Y-%m-%d 00:00:00.000000', bucket)"  # as Python binds a midnight on SQLite


def upgrade() -> None:
    day = _day(op.get_bind().dialect.name)
    op.execute(
        f"""
        INSERT INTO refund_stats (res, bucket, connection_id, outcome, error_code, processor_code,
                                  n, accept_ms_sum, final_ms_sum, {_HIST})
        SELECT 'd', {day}, connection_id, outcome, error_code, processor_code,
               sum(n), sum(accept_ms_sum), sum(final_ms_sum), {_HIST_SUMS}
        FROM refund_stats WHERE res = 'h'
        GROUP BY {day}, connection_id, outcome, error_code, processor_code
        """
    )
    op.execute(
        f"""
        INSERT INTO health_stats
            (res, bucket, connection_id, checks, ok_checks, latency_ms_sum, latency_ms_max)
        SELECT 'd', {day}, connection_id,
               sum(checks), sum(ok_checks), sum(latency_ms_sum), max(latency_ms_max)
        FROM health_stats WHERE res = 'h'
        GROUP BY {day}, connection_id
        """
    )


def downgrade() -> None:
    op.execute("DELETE FROM refund_stats WHERE res = 'd'")
    op.execute("DELETE FROM health_stats WHERE res = 'd'")
