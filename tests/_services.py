"""External services for the test suite: Redis and PostgreSQL, found or started on demand.

Plain synchronous functions (no pytest fixtures) so conftest files, helpers and scripts can all use them.

* Redis: the machine's Redis on 127.0.0.1:6379 if it answers, always on the dedicated test database
  ``TEST_REDIS_DB`` (never db 0, which the demo and developers use). If nothing answers there, a private
  ``redis-server`` is started on a free port in a temporary directory and stopped when the process exits.
* PostgreSQL: the machine's cluster on 127.0.0.1:5432 (started with ``pg_ctlcluster`` if it is stopped).
  Tests get their own databases named ``refundwatch_test…``, marked with a comment when created; only
  databases carrying that name and that mark are ever dropped.

Environment overrides:
* ``REFUNDWATCH_TEST_REDIS_URL`` — use this Redis URL as is (it must not select db 0).
* ``REFUNDWATCH_TEST_PRIVATE_REDIS=1`` — always start a private redis-server (isolates concurrent runs).
* ``REFUNDWATCH_TEST_PG_ADMIN_DSN`` — admin DSN of another PostgreSQL (``postgresql://user@host:port/db``).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import fcntl
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "PG_DB_PREFIX",
    "TEST_REDIS_DB",
    "create_pg_database",
    "drop_pg_database",
    "ensure_postgres",
    "ensure_redis",
    "flush_redis_db",
    "free_port",
    "pg_database_exists",
    "postgres_unavailable_reason",
    "start_private_redis",
    "unique_pg_database_name",
    "wait_for_port",
]

#: Redis database number reserved for tests (db 0 belongs to the demo and to developers).
TEST_REDIS_DB = 13
#: Every PostgreSQL database the tests create starts with this; nothing else is ever dropped.
PG_DB_PREFIX = "refundwatch_test"
#: Written as the database comment on creation; drop refuses databases without it.
_PG_MARK = "created by refundwatch tests (tests/_services.py); safe to drop"
_PG_NAME_RE = re.compile(rf"^{PG_DB_PREFIX}[a-z0-9_]*$")

_REDIS_HOST = "127.0.0.1"
_REDIS_PORT = 6379
_PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

_T = TypeVar("_T")
_lock = threading.Lock()


class _State:
    """Per-process cache: each service is looked for (and maybe started) once."""

    redis_url: str | None = None
    pg_checked = False
    pg_admin_dsn: str | None = None
    pg_reason: str | None = None


# --------------------------------------------------------------------------------------------- ports


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_PORTS = random.Random()  # spreads test ports; not a secret


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, picked at random below the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` is free again once that socket closes, so another
    test process could be given the same one before our server binds it: a stack's web server once
    lost its port to another stack's simulator, and its tests talked to the wrong server. Below the
    ephemeral range the kernel hands out nothing (neither to ``bind(0)`` nor to outgoing connections).
    Each pytest-xdist worker picks from its own slice of that range, so two test processes never
    pick the same port; within a process, a port is not handed out twice in a row of picks (a
    stack picks its web and simulator ports before either binds)."""
    low, high = _port_slice()
    for _ in range(200):
        port = _PORTS.randrange(low, high)
        if port in _recent_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _recent_ports.append(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range: the OS picks
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_recent_ports: collections.deque[int] = collections.deque(maxlen=64)


def _port_slice() -> tuple[int, int]:
    """This test process's share of the 12,000 ports below the ephemeral range."""
    high = min(_ephemeral_low(), 65536)
    low = max(1024, high - 12000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or not worker[2:].isdigit() or count < 2:
        return low, high
    width = (high - low) // count
    start = low + int(worker[2:]) % count * width
    return start, start + width


@contextlib.contextmanager
def one_demo_at_a_time() -> Iterator[None]:
    """Hold a lock shared by every test process on this machine while a `refundwatch demo` runs.

    A demo takes its preferred ports (simulator 8900, receiver 8901, mail 8902/8925, OpenID provider
    9400) when it finds them free, seconds before its children bind them: two demos starting at once
    (two xdist workers) can both pick one and the second child dies with "address already in use".
    """
    with (Path(tempfile.gettempdir()) / "refundwatch-tests-demo.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if _port_open(host, port, timeout=0.5):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing answered on {host}:{port} within {timeout:g}s")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------- redis


def _redis_command(host: str, port: int, *commands: str, timeout: float = 2.0) -> list[str]:
    """Send inline commands over one connection; return the first reply line of each.

    Only used for PING/SELECT/FLUSHDB, whose replies are a single line.
    """
    replies: list[str] = []
    with socket.create_connection((host, port), timeout=timeout) as s, s.makefile("rb") as f:
        for command in commands:
            s.sendall(command.encode() + b"\r\n")
            replies.append(f.readline().decode(errors="replace").rstrip("\r\n"))
    return replies


def _redis_usable(host: str, port: int, db: int) -> bool:
    """True when a Redis answers PING without auth and has database number `db`."""
    try:
        ping, select = _redis_command(host, port, "PING", f"SELECT {db}")
    except OSError:
        return False
    return ping == "+PONG" and select == "+OK"


def _parse_redis_url(url: str) -> tuple[str, int, int]:
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {url!r}")
    path = parts.path.strip("/")
    db = int(path) if path else 0
    return parts.hostname or "127.0.0.1", parts.port or 6379, db


_PRIVATE_REDIS: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}  # url -> (server, its directory)


def start_private_redis() -> str:
    """Start a throw-away redis-server on a free port; return its URL (db TEST_REDIS_DB).

    The server runs without persistence in a temporary directory and is stopped at interpreter exit
    (and, on Linux, when the starting thread dies if that is the main thread).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "no Redis answers on 127.0.0.1:6379 and no redis-server binary was found; "
            "install one (Debian: apt-get install -y redis-server)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="refundwatch-test-redis-"))
    last_error = ""
    for _attempt in range(3):  # the free port can be taken between free_port() and bind: retry
        port = free_port()
        log = (workdir / "redis.log").open("ab")
        options = {
            "bind": "127.0.0.1",
            "port": str(port),
            "save": "",  # no RDB snapshots
            "appendonly": "no",
            "dir": str(workdir),
            "daemonize": "no",  # stays our child, so we can stop it
        }
        proc = subprocess.Popen(
            [binary, *(arg for key, value in options.items() for arg in (f"--{key}", value))],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            preexec_fn=_parent_death_signal(),  # noqa: PLW1509
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if _redis_usable("127.0.0.1", port, TEST_REDIS_DB):
                url = f"redis://127.0.0.1:{port}/{TEST_REDIS_DB}"
                _PRIVATE_REDIS[url] = (proc, workdir)
                atexit.register(stop_private_redis, url)
                return url
            time.sleep(0.05)
        _stop_process(proc, None)
        last_error = (workdir / "redis.log").read_text(errors="replace")[-500:]
    shutil.rmtree(workdir, ignore_errors=True)
    raise RuntimeError(f"private redis-server did not come up: {last_error.strip()}")


def stop_private_redis(url: str) -> None:
    """Stop a server start_private_redis started (no-op if it is already stopped): a session starts
    one per stack, and idle servers left to the end would still tick."""
    started = _PRIVATE_REDIS.pop(url, None)
    if started is not None:
        _stop_process(*started)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn making the child get SIGTERM when its parent dies (Linux), so a killed test run
    leaves no server behind. Only from the main thread: the signal fires when the *thread* ends."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: no imports after fork
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return preexec


def _stop_process(proc: subprocess.Popen[Any], workdir: Path | None) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def ensure_redis() -> str:
    """URL of a Redis for tests, always on a dedicated database number (never db 0).

    Order: ``REFUNDWATCH_TEST_REDIS_URL``; the Redis on 127.0.0.1:6379 (db ``TEST_REDIS_DB``); otherwise
    a private redis-server on a free port. The answer is cached for the process.
    """
    with _lock:
        if _State.redis_url is not None:
            return _State.redis_url
        override = os.environ.get("REFUNDWATCH_TEST_REDIS_URL")
        if override:
            host, port, db = _parse_redis_url(override)
            if db == 0:
                raise ValueError("REFUNDWATCH_TEST_REDIS_URL must select a database other than 0")
            if not urlsplit(override).password and not _redis_usable(host, port, db):
                raise RuntimeError(f"REFUNDWATCH_TEST_REDIS_URL={override} does not answer")
            _State.redis_url = override
        elif os.environ.get("REFUNDWATCH_TEST_PRIVATE_REDIS") not in (None, "", "0") or not _redis_usable(
            _REDIS_HOST, _REDIS_PORT, TEST_REDIS_DB
        ):
            _State.redis_url = start_private_redis()
        else:
            _State.redis_url = f"redis://{_REDIS_HOST}:{_REDIS_PORT}/{TEST_REDIS_DB}"
        return _State.redis_url


def flush_redis_db(url: str) -> None:
    """FLUSHDB on the database the URL selects. Refuses db 0 so a mistake cannot wipe real data."""
    host, port, db = _parse_redis_url(url)
    if db == 0:
        raise ValueError(f"refusing to flush Redis db 0 ({url}); tests use db {TEST_REDIS_DB}")
    replies = _redis_command(host, port, f"SELECT {db}", "FLUSHDB")
    if replies != ["+OK", "+OK"]:
        raise RuntimeError(f"FLUSHDB on {url} failed: {replies}")


# ---------------------------------------------------------------------------------------- postgresql


def _run_async(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion on a private loop in a helper thread.

    A thread keeps this callable from async tests (a loop is already running there) and leaves the
    calling thread's event loop, e.g. pytest-asyncio's session loop, untouched.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    async def main() -> None:
        result.append(await factory())

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="refundwatch-test-services", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def _pg_fetchval(dsn: str, query: str, *args: object, timeout: float = 5.0) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def _pg_start_local_cluster() -> str | None:
    """Start the newest Debian cluster `main`; return an error text, or None when the command succeeded."""
    if shutil.which("pg_ctlcluster") is None:
        return "pg_ctlcluster not found (Debian: apt-get install -y postgresql)"
    etc = Path("/etc/postgresql")
    versions = sorted(
        (p.name for p in etc.iterdir() if (p / "main").is_dir()) if etc.is_dir() else [],
        key=lambda v: [int(x) if x.isdigit() else 0 for x in v.split(".")],
    )
    if not versions:
        return "no PostgreSQL cluster under /etc/postgresql/*/main"
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(cmd)}: {exc}"
    if done.returncode not in (0, 2):  # 2: already running
        return f"{' '.join(cmd)} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


def ensure_postgres() -> str | None:
    """Admin DSN (``postgresql://…/postgres``) of a PostgreSQL the tests may use, or None.

    Uses ``REFUNDWATCH_TEST_PG_ADMIN_DSN`` or 127.0.0.1:5432 as user postgres, starting the local Debian
    cluster if nothing answers. None means unavailable — see ``postgres_unavailable_reason()``; the
    caller decides whether to skip or fail. The answer is cached for the process.
    """
    with _lock:
        if _State.pg_checked:
            return _State.pg_admin_dsn
        _State.pg_checked = True
        dsn = os.environ.get("REFUNDWATCH_TEST_PG_ADMIN_DSN") or _PG_ADMIN_DSN
        parts = urlsplit(dsn)
        host, port = parts.hostname or "127.0.0.1", parts.port or 5432
        if not _port_open(host, port) and dsn == _PG_ADMIN_DSN:
            _State.pg_reason = _pg_start_local_cluster()
            if _State.pg_reason is None:
                try:
                    wait_for_port(host, port, timeout=30)
                except TimeoutError as exc:
                    _State.pg_reason = str(exc)
            if _State.pg_reason is not None:
                return None
        # Port open is not enough: right after start the server may still refuse ("starting up").
        deadline = time.monotonic() + 30
        while True:
            try:
                _run_async(lambda: _pg_fetchval(dsn, "SELECT 1"))
            except Exception as exc:
                if "starting up" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                _State.pg_reason = f"cannot connect to {dsn}: {type(exc).__name__}: {exc}"
                return None
            _State.pg_admin_dsn, _State.pg_reason = dsn, None
            return dsn


def postgres_unavailable_reason() -> str | None:
    """Why the last ensure_postgres() returned None (None if it succeeded or was not called)."""
    return _State.pg_reason


def unique_pg_database_name(tag: str = "") -> str:
    """A fresh ``refundwatch_test_…`` name, unique per call so concurrent test runs never collide."""
    tag = re.sub(r"[^a-z0-9_]", "_", tag.lower())[:20]
    return f"{PG_DB_PREFIX}_{tag + '_' if tag else ''}{os.getpid()}_{secrets.token_hex(4)}"


def _check_name(name: str) -> None:
    if not _PG_NAME_RE.fullmatch(name) or len(name) > 63:
        raise ValueError(
            f"refusing to touch database {name!r}: test databases are named "
            f"{PG_DB_PREFIX}[a-z0-9_]* (at most 63 characters)"
        )


def _dsn_for_database(admin_dsn: str, name: str, scheme: str) -> str:
    parts = urlsplit(admin_dsn)
    return urlunsplit((scheme, parts.netloc, f"/{name}", parts.query, ""))


async def _pg_drop_ours(conn: Any, name: str) -> bool:
    """Drop `name` if it exists and carries our mark; False if it did not exist."""
    comment = await conn.fetchrow(
        "SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1", name
    )
    if comment is None:
        return False
    if comment["c"] != _PG_MARK:
        raise RuntimeError(
            f"database {name!r} exists but was not created by the test helpers; not dropping it"
        )
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return True


def create_pg_database(admin_dsn: str, name: str, template: str = "template0") -> str:
    """(Re)create the test database `name`; return its ``postgresql+asyncpg://`` SQLAlchemy URL.

    A leftover database of the same name is dropped first only if the test helpers created it.
    ``template``: another test database to copy (nobody may be connected to it meanwhile).
    """
    _check_name(name)
    if template != "template0":
        _check_name(template)

    async def work() -> None:
        import asyncpg

        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await _pg_drop_ours(conn, name)
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" ENCODING \'UTF8\'')
            await conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{_PG_MARK}'")
        finally:
            await conn.close()

    _run_async(work)
    return _dsn_for_database(admin_dsn, name, "postgresql+asyncpg")


def drop_pg_database(admin_dsn: str, name: str) -> None:
    """Drop the test database `name` (terminating its connections); no error if it is already gone."""
    _check_name(name)

    async def work() -> None:
        import asyncpg

        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await _pg_drop_ours(conn, name)
        finally:
            await conn.close()

    _run_async(work)


def pg_database_exists(admin_dsn: str, name: str) -> bool:
    """True when a database called `name` exists."""
    query = "SELECT 1 FROM pg_database WHERE datname = $1"
    return bool(_run_async(lambda: _pg_fetchval(admin_dsn, query, name)))
