"""`refundwatch …` (CONTRACT §3). Bad input: one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import functools
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from refundwatch.audit.actions import Actor
from refundwatch.config import ConfigError, get_settings
from refundwatch.lib.exceptions import RefundwatchError

T = TypeVar("T")
CLI_ACTOR = Actor("system", "cli")


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"refundwatch: {message}", err=True)
    sys.exit(code)


def friendly(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn every expected failure into one clear line on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (RefundwatchError, ConfigError) as exc:
            _fail(str(exc))
        except (OSError, ConnectionError) as exc:
            _fail(f"cannot reach a service: {exc.__class__.__name__}: {exc}")
        except Exception as exc:
            from redis.exceptions import AuthenticationError, RedisError
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import TimeoutError as RedisTimeout
            from sqlalchemy.exc import SQLAlchemyError

            if isinstance(exc, AuthenticationError):  # before ConnectionError: it is one
                _fail("Redis refused the credentials in REFUNDWATCH_REDIS_URL")
            if isinstance(exc, RedisConnectionError | RedisTimeout):  # the worker at start-up, say
                _fail(f"Redis does not answer: {exc.__class__.__name__}: {exc}")
            if isinstance(exc, RedisError):
                _fail(f"Redis error: {exc.__class__.__name__}: {exc}")
            if _is_postgres_error(exc):  # raised at connect, unwrapped by SQLAlchemy
                _fail(_postgres_problem(exc))
            if isinstance(exc, SQLAlchemyError):
                _fail(f"database error: {_first_line(exc.__cause__ or exc)}")
            if exc.__class__.__name__ == "ValidationError":  # pydantic settings
                _fail(f"invalid configuration: {_setting_problem(exc)}")
            raise
        raise AssertionError("unreachable")

    return wrapper


def _first_line(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's ``<class 'asyncpg.exceptions.…'>:`` prefix."""
    lines = str(exc).splitlines() or [exc.__class__.__name__]
    return _CLASS_PREFIX.sub("", lines[0])[:300]


_CLASS_PREFIX = re.compile(r"^(?:\([\w.]+\)\s*)?<class '[\w.]+'>:\s*")


def _is_postgres_error(exc: BaseException) -> bool:
    try:
        from asyncpg import PostgresError
    except ImportError:  # SQLite only
        return False
    return isinstance(exc, PostgresError)


def _postgres_problem(exc: Any) -> str:
    """A database that does not exist, a role or password refused: PostgreSQL's one line (it names the
    database or the role, never the password) and where to fix it."""
    from asyncpg.exceptions import InvalidAuthorizationSpecificationError, InvalidCatalogNameError

    if isinstance(exc, InvalidCatalogNameError | InvalidAuthorizationSpecificationError):
        return f"PostgreSQL refused the connection: {_first_line(exc)} (check REFUNDWATCH_DATABASE_URL)"
    return f"database error: {_first_line(exc)}"


def _setting_problem(exc: Any) -> str:
    """The first bad setting by its variable's name, without its value (a URL may hold a password)."""
    first = exc.errors()[0]
    name = "_".join(str(part) for part in first.get("loc", ())).upper()
    message = str(first.get("msg", "not valid")).removeprefix("Value error, ")
    return f"REFUNDWATCH_{name}: {message}" if name else message


def run(coro_fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
    return asyncio.run(coro_fn(*args, **kwargs))


async def _with_runtime(work: Callable[[Any], Awaitable[T]], *, redis: bool = False) -> T:
    from refundwatch.runtime import Runtime

    rt = Runtime.build()
    try:
        if redis:
            await rt.open(redis=True, http=False)
        return await work(rt)
    finally:
        await rt.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """refundwatch: execute refunds through payment processors, exactly once, and watch them."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@friendly
def db_upgrade() -> None:
    """Apply all migrations to REFUNDWATCH_DATABASE_URL."""
    from refundwatch.db.migrate import upgrade

    applied = upgrade(get_settings().database_url)
    if applied:  # a new database says so too: it was not "up to date" before
        click.echo(f"database migrated: {len(applied)} migration(s) applied, now at {applied[-1]}")
    else:
        click.echo("database is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@friendly
def serve(host: str, port: int, workers: int) -> None:
    """The web server."""
    from refundwatch.server import serve as run_server
    from refundwatch.web.assets import asset_dirs

    get_settings().check_required()
    # Without htmx the dashboard loads but never updates, and nothing says why: refuse instead.
    if problem := asset_dirs().missing():
        _fail(problem, code=1)
    run_server(host, port, workers)


@main.command()
@friendly
def worker() -> None:
    """The arq worker: refund execution, webhooks, health checks, sync, audit sealing."""
    from refundwatch.worker import run_worker

    get_settings().check_required()
    run_worker()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=click.IntRange(1, 65535))
@click.option("--connections", "connections_path", type=click.Path(path_type=Path), default=None)
@click.option("--webhook-url", default=None, help="template with {connection}")
@click.option(
    "--paypal-cert-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="keeps PayPal's test CA and webhook signing certificate (default: a new temporary directory)",
)
@click.option(
    "--public-url", default=None, help="the simulator's URL as clients reach it (default http://HOST:PORT)"
)
@friendly
def simulator(
    host: str,
    port: int,
    connections_path: Path | None,
    webhook_url: str | None,
    paypal_cert_dir: Path | None,
    public_url: str | None,
) -> None:
    """The gateway simulator (CONTRACT §7)."""
    from refundwatch.simulator import serve as run_simulator

    if connections_path is not None and not connections_path.is_file():
        _fail(f"{connections_path}: no such file")
    run_simulator(
        host,
        port,
        connections_path,
        webhook_url,
        paypal_cert_dir=paypal_cert_dir,
        public_url=public_url.rstrip("/") if public_url else None,
    )


@main.group()
def connections() -> None:
    """Gateway connections."""


@connections.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@friendly
def connections_import(file: Path) -> None:
    """Create or update gateway connections from a TOML file; secrets are stored encrypted."""
    from refundwatch.connections.services import import_connections
    from refundwatch.connections.spec import load_connections_file

    specs = load_connections_file(file)

    async def work(rt: Any) -> tuple[int, int]:
        return await import_connections(rt.db, rt.cipher, specs, CLI_ACTOR)

    created, updated = run(_with_runtime, work)
    click.echo(
        f"connections: {created} created, {updated} updated, {len(specs) - created - updated} unchanged"
    )


@main.group()
def payments() -> None:
    """Original transactions."""


@payments.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@friendly
def payments_import(file: Path) -> None:
    """Register original transactions from CSV (all rows or none)."""
    from refundwatch.payments.services import import_payments

    async def work(rt: Any) -> tuple[int, int]:
        return await import_payments(rt.db, rt.connections, file, CLI_ACTOR)

    created, unchanged = run(_with_runtime, work)
    click.echo(f"payments: {created} created, {unchanged} already present")


@main.group()
def reconcile() -> None:
    """Reconciliation against the records and the processors' settlement data."""


@reconcile.command("import")
@click.option("--connection", "connection", required=True, help="the connection the report belongs to")
@click.argument("file", type=click.Path(path_type=Path))
@friendly
def reconcile_import(connection: str, file: Path) -> None:
    """Import a processor's settlement report (its own file format), then match it."""
    from refundwatch.reconciliation.importing import import_report
    from refundwatch.reconciliation.matching import match_imported

    async def work(rt: Any) -> tuple[Any, Any]:
        imported = await import_report(rt, connection, file, CLI_ACTOR)
        return imported, await match_imported(rt, imported)

    imported, summary = run(_with_runtime, work)
    breaks = sum(summary.breaks.values())
    if imported.already:
        click.echo(f"{imported.name}: already imported ({imported.lines} lines); nothing added")
    click.echo(
        f"{imported.name}: {imported.lines} lines read, {summary.matched} matched, {breaks} breaks found"
        + (f" ({_by_kind(summary.breaks)})" if breaks else "")
    )


@reconcile.command("check")
@friendly
def reconcile_check() -> None:
    """Run the internal consistency check and matching now; print open breaks by kind."""
    from refundwatch.reconciliation.breaks import open_by_kind
    from refundwatch.reconciliation.checks import check

    async def work(rt: Any) -> dict[str, int]:
        await check(rt)
        return await open_by_kind(rt)

    counts = run(_with_runtime, work)
    if not counts:
        click.echo("open breaks: none")
        return
    click.echo(f"open breaks: {sum(counts.values())} ({_by_kind(counts)})")


def _by_kind(counts: Any) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))


@main.group()
def apikeys() -> None:
    """API keys for internal systems."""


@apikeys.command("create")
@click.option("--name", required=True)
@click.option(
    "--scopes",
    required=True,
    help="comma-separated: refunds:read,refunds:write,payments:write,webhooks:write",
)
@friendly
def apikeys_create(name: str, scopes: str) -> None:
    """Print a new API key once; only its hash is stored."""
    from refundwatch.auth.apikeys import create_api_key, parse_scopes

    scope_list = parse_scopes(scopes)

    async def work(rt: Any) -> str:
        return await create_api_key(rt.db, name, scope_list, CLI_ACTOR)

    click.echo(run(_with_runtime, work))


@apikeys.command("list")
@friendly
def apikeys_list() -> None:
    """The API keys: id, client name, prefix, scopes, created, revoked (never the key itself)."""
    from refundwatch.auth.apikeys import list_api_keys

    async def work(rt: Any) -> list[Any]:
        return await list_api_keys(rt.db)

    for key in run(_with_runtime, work):
        revoked = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        click.echo(f"{key.id}  {key.name}  {key.prefix}…  {key.scopes}  {key.created_at:%Y-%m-%d}  {revoked}")


@apikeys.command("revoke")
@click.argument("key_id")
@friendly
def apikeys_revoke(key_id: str) -> None:
    """Revoke the key with this id (from `apikeys list`); it stops working within 30 seconds."""
    from refundwatch.auth.apikeys import revoke_api_key

    async def work(rt: Any) -> Any:
        return await revoke_api_key(rt.db, key_id, CLI_ACTOR)

    key = run(_with_runtime, work)
    click.echo(f"revoked {key.id} ({key.name}, {key.prefix}…)")


@main.group()
def keys() -> None:
    """Data keys of the fields encrypted at rest (REFUNDWATCH_ENCRYPTION_KEYS)."""


@keys.command("rotate")
@friendly
def keys_rotate() -> None:
    """Re-encrypt everything under the first key of REFUNDWATCH_ENCRYPTION_KEYS (safe to re-run).

    Set the new key first and keep the old ones after it (NEW,OLD) in every process, run this, then
    drop the old keys.
    """
    from refundwatch.keyrotation import rotate_keys

    async def work(rt: Any) -> Any:
        return await rotate_keys(rt, CLI_ACTOR)

    click.echo(run(_with_runtime, work).summary())


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.option(
    "--anchors",
    "anchors_path",
    type=click.Path(path_type=Path),
    default=None,
    help="anchors to check against (default: REFUNDWATCH_AUDIT_ANCHOR), e.g. a copy from write-once storage",
)
@friendly
def audit_verify(anchors_path: Path | None) -> None:
    """Check the audit chain against its key and the last anchor: exit 0 with a count when intact,
    non-zero naming the first bad entry or the missing tail."""
    from refundwatch.audit.keys import AuditKeys
    from refundwatch.audit.verification import verify

    async def work(rt: Any) -> Any:
        path = anchors_path or Path(rt.settings.audit_anchor)
        # A file named with --anchors must exist; the default one may not yet ("no anchor yet").
        keys = AuditKeys.from_settings(rt.settings)
        return await verify(rt.db, keys, path, required=anchors_path is not None)

    report = run(_with_runtime, work)
    if not report.ok:
        _fail(f"audit chain broken: {report.problem}", code=1)
    click.echo(report.summary())


@audit.command("anchor")
@friendly
def audit_anchor() -> None:
    """Append the chain's head (seq and keyed hash) to REFUNDWATCH_AUDIT_ANCHOR now (the worker also
    does it every REFUNDWATCH_AUDIT_ANCHOR_INTERVAL_SECONDS when the head moved)."""
    from refundwatch.audit.anchors import anchor

    async def work(rt: Any) -> Any:
        return await anchor(rt.db, Path(rt.settings.audit_anchor))

    written = run(_with_runtime, work)
    click.echo(f"anchored the audit chain at seq {written.seq} ({written.hash[:16]}…)")


@audit.command("seal")
@friendly
def audit_seal() -> None:
    """Chain entries not sealed yet (the worker does this every second)."""
    from refundwatch.audit.keys import AuditKeys
    from refundwatch.audit.services import seal

    async def work(rt: Any) -> int:
        return await seal(rt.db, AuditKeys.from_settings(rt.settings))

    click.echo(f"sealed {run(_with_runtime, work)} entries")


@main.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-traffic", is_flag=True, help="do not generate demo traffic")
@friendly
def demo(port: int, no_traffic: bool) -> None:
    """Everything at once on this machine: what `make demo` runs."""
    from refundwatch.demo import run_demo

    run_demo(port=port, traffic=not no_traffic)
