"""Alembic environment: runs migrations on the async engine of the configured URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection as SyncConnection

from refundwatch.db.engine import make_engine
from refundwatch.db.models import metadata

config = context.config


def _run(connection: SyncConnection) -> None:
    applied: list[str] | None = config.attributes.get("applied")  # migrate.upgrade's, to report
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        on_version_apply=(lambda *, step, **_: applied.append(step.up_revision_id))
        if applied is not None
        else None,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url, immediate=False, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `refundwatch db upgrade`")
asyncio.run(_run_async())
