"""idempotency keys scoped to the client, not to one API key

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 02:30:00

A returns system that rotates its API key mid-retry must get its first refund back, not a second one.
Idempotency keys were scoped to one key (``api_key:<id>``); they are now scoped to the client: the
API key's owner name (``client:<name>``; keys created with the same ``--name`` are one client), or the
OAuth client id for access tokens (``client:<client_id>``, as before). Existing refunds move to their
key's client scope, so a replay of an old request answers the original refund whichever of the
client's keys sends it.

Where two keys of one client already used the same Idempotency-Key (the double refund this fixes),
the earlier key's refund takes the client scope and the other keeps its old per-key scope: both
refunds stay, and a replay now answers the earlier one.

``client_scope`` widens to 255 characters: ``client:`` plus a 128-character name or client id.
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_API_KEYS = sa.table(
    "api_keys", sa.column("id", GUID(length=16)), sa.column("name", sa.String()), sa.column("created_at")
)
_REFUNDS = sa.table(
    "refunds", sa.column("client_scope", sa.String()), sa.column("idempotency_key", sa.String())
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite does not enforce VARCHAR lengths
        op.alter_column("refunds", "client_scope", type_=sa.String(255), existing_nullable=False)
    backfill(op.get_bind())


def backfill(bind: sa.Connection) -> None:
    """Each API key's refunds into its client's scope (the earlier key first; safe to re-run)."""
    keys = bind.execute(
        sa.select(_API_KEYS.c.id, _API_KEYS.c.name).order_by(_API_KEYS.c.created_at, _API_KEYS.c.id)
    ).all()
    taken = sa.alias(_REFUNDS, "taken")
    for key_id, name in keys:
        new = f"client:{name}"
        bind.execute(
            _REFUNDS.update()
            .where(
                _REFUNDS.c.client_scope == f"api_key:{key_id}",
                ~sa.exists().where(
                    taken.c.client_scope == new, taken.c.idempotency_key == _REFUNDS.c.idempotency_key
                ),
            )
            .values(client_scope=new)
        )


def downgrade() -> None:
    # ``created_by`` still names the key that sent each request (``api_key:<id>``): the old scope.
    refunds = sa.table(
        "refunds", sa.column("client_scope", sa.String()), sa.column("created_by", sa.String())
    )
    op.get_bind().execute(
        refunds.update()
        .where(refunds.c.created_by.like("api_key:%"), refunds.c.client_scope.like("client:%"))
        .values(client_scope=refunds.c.created_by)
    )
