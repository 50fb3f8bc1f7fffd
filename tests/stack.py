"""Fixtures that run refundwatch for real: migrated databases (SQLite and PostgreSQL), a private Redis,
the gateway simulator, the web server and the arq worker as separate processes.

Every fixture here is parametrised over both databases, so each test that uses them runs twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from _services import (
    _run_async,
    create_pg_database,
    drop_pg_database,
    ensure_postgres,
    free_port,
    postgres_unavailable_reason,
    start_private_redis,
    stop_private_redis,
    unique_pg_database_name,
)
from identity_provider import IdentityProvider
from processors import STRIPE_SECRET, connections_toml, kit
from refundwatch.simulator.paypal.certs import load_or_create

BACKENDS = ["sqlite", "postgresql"]
PYTHON = sys.executable
METRICS_TOKEN = "metrics-token-for-tests"


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            [PYTHON, "-m", *self.args],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group (granian forks workers): no chance to clean up, a crash."""
        if self.popen is not None and self.alive:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is None or not self.alive:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def wait_http(url: str, proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        with contextlib.suppress(httpx2.HTTPError):
            # 200 only: another test process's server on a reused port would answer too (404).
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url}:\n{proc.tail()}")


@dataclass
class Stack:
    backend: str
    database_url: str
    redis_url: str
    workdir: Path
    env: dict[str, str]
    web_url: str
    sim_url: str
    api_key: str
    procs: dict[str, Proc] = field(default_factory=dict)
    idp: IdentityProvider | None = None
    connected: set[str] = field(default_factory=lambda: {"stripe"})  # processors refundwatch knows

    def connect(self, processor: str) -> None:
        """Give refundwatch this processor's test connection (the simulator knows them all already)."""
        if processor in self.connected:
            return
        path = self.workdir / f"connections-{processor}.toml"
        path.write_text(connections_toml(self.sim_url, processor))
        import_connections(self.env, path)
        self.connected.add(processor)
        # The running processes look an unknown connection up again at most once a second
        # (connections.services.ConnectionCache); the CLI's own start-up used to cover that second.
        time.sleep(1.1)

    def share_stripe_account(self, sibling: str, webhook_secret: str, account: str = "acct_tests") -> None:
        """A second Stripe connection, ``sibling``, reaching the same account as the stack's own (both
        carry ``account``, CONTRACT §6): another key of one account, its webhooks signed with
        ``webhook_secret``."""
        self.connect("stripe")
        own = connections_toml(self.sim_url, "stripe")
        other = own.replace('name = "stripe-test"', f'name = "{sibling}"').replace(
            f'webhook_secret = "{STRIPE_SECRET}"', f'webhook_secret = "{webhook_secret}"'
        )
        path = self.workdir / f"connections-{sibling}.toml"
        path.write_text(f'{own}account = "{account}"\n{other}account = "{account}"\n')
        import_connections(self.env, path)
        time.sleep(1.1)  # as connect(): the running processes look a new name up again within a second

    # --- staff ------------------------------------------------------------------------------
    def sign_in(self, username: str, password: str = "password") -> httpx2.Client:
        """A browserless client signed in as ``username`` through the real provider."""
        assert self.idp is not None
        client = httpx2.Client(base_url=self.web_url, follow_redirects=False, timeout=30)
        callback = self.idp.sign_in(client, f"{self.web_url}/auth/login", username, password)
        response = client.get(callback)
        assert response.status_code == 303, (response.status_code, response.text[:300])
        return client

    # --- processes -------------------------------------------------------------------------
    def cli(
        self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli({**self.env, **(extra_env or {})}, self.workdir, *args, check=check)

    def wait_worker_ready(self, timeout: float = 30) -> None:
        """arq writes its health-check key once its main loop runs (after the start-up sweep)."""
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout
        try:
            while not client.exists("refundwatch:queue:health-check"):
                worker = self.procs.get("worker")
                if worker is not None and not worker.alive:
                    raise RuntimeError(f"worker exited early:\n{worker.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("worker did not become ready")
                time.sleep(0.1)
        finally:
            client.close()

    def start_worker(self, **extra_env: str) -> Proc:
        proc = Proc(
            "worker", ["refundwatch", "worker"], {**self.env, **extra_env}, self.workdir / "worker.log"
        )
        self.procs["worker"] = proc.start()
        return proc

    def stop_worker(self) -> None:
        if "worker" in self.procs:
            self.procs["worker"].stop()

    def restart_with(self, extra_env: dict[str, str]) -> None:
        """The web server and the worker again, with ``extra_env`` added to the stack's environment
        (for the rest of the module)."""
        self.env.update(extra_env)
        self.procs["web"].stop()
        port = self.web_url.rsplit(":", 1)[1]
        web = Proc("web", ["refundwatch", "serve", "--port", port], self.env, self.workdir / "web.log")
        self.procs["web"] = web.start()
        wait_http(f"{self.web_url}/healthz", web)
        self.stop_worker()
        self.start_worker()
        self.wait_worker_ready()

    # --- HTTP helpers ----------------------------------------------------------------------
    def api(self, key: str | None = None) -> httpx2.Client:
        return httpx2.Client(
            base_url=self.web_url, timeout=30, headers={"Authorization": f"Bearer {key or self.api_key}"}
        )

    def metrics(self, base: str | None = None, timeout: float = 30) -> httpx2.Response:
        """GET /metrics as Prometheus scrapes it: with the stack's metrics token."""
        token = self.env.get("REFUNDWATCH_METRICS_TOKEN", "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx2.get(f"{base or self.web_url}/metrics", headers=headers, timeout=timeout)

    def control(self, path: str, body: Any = None) -> Any:
        if body is None:
            response = httpx2.get(f"{self.sim_url}/_control/{path}", timeout=10)
        else:
            response = httpx2.post(f"{self.sim_url}/_control/{path}", json=body, timeout=10)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def faults(self, processor: str = "stripe", **values: Any) -> None:
        """Set one processor's faults: ``values`` over none at all (and the kit's settle time)."""
        base = {
            "processor": processor,
            "latency_ms": 0,
            "jitter_ms": 0,
            "error_rate": 0.0,
            "timeout_rate": 0.0,
            "reset_rate": 0.0,
            "outage": False,
            "pending_rate": 0.0,
            "fail_later_rate": 0.0,
            "malformed_rate": 0.0,
            "webhook_drop_rate": 0.0,
            "webhook_duplicate_rate": 0.0,
            "reversal_rate": 0.0,
            **kit(processor).fault_defaults,
        }
        self.control("faults", {**base, **values})

    def payment(
        self,
        amount: int = 10_000,
        currency: str = "EUR",
        *,
        processor: str = "stripe",
        connection: str | None = None,
        simulator_amount: int | None = None,
        **extra: Any,
    ) -> str:
        """A captured payment known to refundwatch and to the simulator; returns its reference."""
        self.connect(processor)
        reference = kit(processor).new_reference()
        self.control(
            "payments",
            {
                "processor": processor,
                "payment_reference": reference,
                "amount": simulator_amount or amount,
                "currency": currency,
            },
        )
        with self.api() as client:
            response = client.post(
                "/api/v1/payments",
                json={
                    "connection": connection or kit(processor).connection,
                    "payment_reference": reference,
                    "amount": amount,
                    "currency": currency,
                    "captured_at": "2026-11-01T10:00:00Z",
                    **extra,
                },
            )
        assert response.status_code == 201, response.text
        return reference

    def refund(
        self, reference: str, amount: int, *, key: str | None = None, currency: str = "EUR", **extra: Any
    ) -> httpx2.Response:
        with self.api() as client:
            return client.post(
                "/api/v1/refunds",
                headers={"Idempotency-Key": key or uuid.uuid4().hex},
                json={
                    "payment_reference": reference,
                    "amount": amount,
                    "currency": currency,
                    "reason": "return",
                    **extra,
                },
            )

    def get(self, refund_id: str) -> dict[str, Any]:
        with self.api() as client:
            response = client.get(f"/api/v1/refunds/{refund_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_status(self, refund_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        refund = self.get(refund_id)
        while refund["status"] not in statuses:
            if time.monotonic() > deadline:
                worker = self.procs.get("worker")
                raise AssertionError(
                    f"refund stayed {refund['status']}, wanted {statuses}: {refund}\n"
                    f"{worker.tail() if worker else ''}"
                )
            time.sleep(0.1)
            refund = self.get(refund_id)
        return refund

    def ledger(self, key_prefix: str | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.control("ledger")
        return [r for r in rows if key_prefix is None or r["idempotency_key"].startswith(key_prefix)]


def _pg_admin() -> str:
    admin = ensure_postgres()
    if admin is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {postgres_unavailable_reason()}")
        pytest.skip(f"PostgreSQL unavailable: {postgres_unavailable_reason()}")
    return admin


def run_cli(
    env: dict[str, str], cwd: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``refundwatch ARGS`` as a process; with ``check``, a non-zero exit fails the test with stderr."""
    result = subprocess.run(
        [PYTHON, "-m", "refundwatch", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"refundwatch {' '.join(args)} failed: {result.stderr}")
    return result


@dataclass(frozen=True)
class Template:
    """A database migrated once per backend and test process, holding the tests' API key. Each stack
    starts from a copy of it (a file copy, or CREATE DATABASE … TEMPLATE): the same rows the
    migrations and ``apikeys create`` would write, without two processes and the migrations per
    stack (the commands themselves are tested in test_cli)."""

    backend: str
    api_key: str
    pg_name: str | None = None
    path: Path | None = None

    @classmethod
    def make(cls, backend: str, workdir: Path) -> Template:
        pg_name = path = None
        if backend == "sqlite":
            path = workdir / "refundwatch.db"
            url = f"sqlite+aiosqlite:///{path}"
        else:
            pg_name = unique_pg_database_name("tp")
            url = create_pg_database(_pg_admin(), pg_name)
        env = {
            **os.environ,
            "REFUNDWATCH_MODE": "test",
            "REFUNDWATCH_DATABASE_URL": url,
            "REFUNDWATCH_AUDIT_ANCHOR": str(workdir / "audit-anchors.jsonl"),
        }
        run_cli(env, workdir, "db", "upgrade")
        scopes = "refunds:read,refunds:write,payments:write"
        key = run_cli(env, workdir, "apikeys", "create", "--name", "tests", "--scopes", scopes).stdout.strip()
        if path is not None:  # everything in the main file, so that a copy of it alone is whole
            with contextlib.closing(sqlite3.connect(path)) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cls(backend, key, pg_name, path)

    def copy(self, workdir: Path) -> tuple[str, str | None]:
        """(database URL, PostgreSQL database name or None) of a fresh copy."""
        if self.path is not None:
            target = workdir / "refundwatch.db"
            shutil.copyfile(self.path, target)
            return f"sqlite+aiosqlite:///{target}", None
        assert self.pg_name is not None
        name = unique_pg_database_name(self.backend[:2])
        return create_pg_database(_pg_admin(), name, template=self.pg_name), name

    def drop(self) -> None:
        if self.pg_name is not None and (admin := ensure_postgres()) is not None:
            drop_pg_database(admin, self.pg_name)


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Template]]:
    """This test process's templates by backend, made on first use, dropped at the end."""
    made: dict[str, Template] = {}
    yield made
    for template in made.values():
        template.drop()


def template_for(
    backend: str, made: dict[str, Template], tmp_path_factory: pytest.TempPathFactory
) -> Template:
    if backend not in made:
        made[backend] = Template.make(backend, tmp_path_factory.mktemp(f"template-{backend}"))
    return made[backend]


def import_connections(env: dict[str, str], path: Path) -> None:
    """``refundwatch connections import PATH`` in this process, with the stack's settings (the command
    is tested in test_cli; a stack's setup need not start a process per file)."""
    from refundwatch.cli import CLI_ACTOR
    from refundwatch.config import Settings
    from refundwatch.connections.services import import_connections as store
    from refundwatch.connections.spec import load_connections_file
    from refundwatch.runtime import Runtime

    prefix = "REFUNDWATCH_"
    values = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    specs = load_connections_file(path)

    async def work() -> None:
        rt = Runtime.build(Settings(**values), pool_size=1)
        try:
            await store(rt.db, rt.cipher, specs, CLI_ACTOR)
        finally:
            await rt.close()

    _run_async(work)


def _connections_files(workdir: Path, sim_url: str) -> tuple[Path, Path]:
    """(every processor's test connection: the simulator's; Stripe's alone: refundwatch's at start)."""
    every, stripe = workdir / "connections.toml", workdir / "connections-stripe.toml"
    every.write_text(connections_toml(sim_url))
    stripe.write_text(connections_toml(sim_url, "stripe"))
    return every, stripe


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    idp: IdentityProvider,
    templates: dict[str, Template],
) -> Iterator[Stack]:
    """A whole refundwatch (web + worker + simulator) on one database backend, signing staff in
    through the session's real identity provider (its own web client, registered for this port)."""
    backend: str = request.param
    template = template_for(backend, templates, tmp_path_factory)
    workdir = tmp_path_factory.mktemp(f"stack-{backend}")
    database_url, pg_name = template.copy(workdir)
    web_port, sim_port = free_port(), free_port()
    web_url, sim_url = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}"
    env = {
        **os.environ,
        "REFUNDWATCH_MODE": "test",
        "REFUNDWATCH_DATABASE_URL": database_url,
        "REFUNDWATCH_REDIS_URL": start_private_redis(),
        "REFUNDWATCH_BASE_URL": web_url,
        # The stack's own anchors (the default is relative to the working directory, which the web and
        # worker processes share with every other stack of the session).
        "REFUNDWATCH_AUDIT_ANCHOR": str(workdir / "var" / "audit-anchors.jsonl"),
        "REFUNDWATCH_LOG_JSON": "true",  # as in production: what the log tests read
        # Fast retries and sweeps so failure paths finish within a test's patience.
        "REFUNDWATCH_RETRY_BASE_SECONDS": "0.2",
        "REFUNDWATCH_RETRY_MAX_SECONDS": "1",
        "REFUNDWATCH_MAX_ATTEMPTS": "4",
        "REFUNDWATCH_JOB_TIMEOUT_SECONDS": "5",
        "REFUNDWATCH_SYNC_INTERVAL_SECONDS": "2",
        "REFUNDWATCH_SWEEP_INTERVAL_SECONDS": "2",
        "REFUNDWATCH_SWEEP_GRACE_SECONDS": "3",
        # Tests sign in and call the API many times from 127.0.0.1; the limits have their own tests.
        "REFUNDWATCH_RATE_LIMIT_API_PER_MINUTE": "0",
        "REFUNDWATCH_RATE_LIMIT_SIGN_IN_PER_MINUTE": "0",
        "REFUNDWATCH_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE": "0",
        # As in production: /metrics answers only the scraper that sends this token.
        "REFUNDWATCH_METRICS_TOKEN": METRICS_TOKEN,
        # PayPal's webhooks are signed by the simulator's certificate, issued by its test CA and
        # fetched from the simulator (plain http is allowed in test mode, for allowed hosts only).
        "REFUNDWATCH_PAYPAL_CERT_HOSTS": f"127.0.0.1:{sim_port}",
        "REFUNDWATCH_PAYPAL_TRUST_STORE": str(load_or_create(workdir / "paypal-certs").directory / "ca.pem"),
    }
    web_client = idp.register_web_client(
        web_url, post_logout_redirect_uris=[f"{web_url}/auth/signed-out", f"{web_url}/"]
    )
    env.update(idp.refundwatch_env(web_client))
    connections, stripe_only = _connections_files(workdir, sim_url)
    stack = Stack(
        backend, database_url, env["REFUNDWATCH_REDIS_URL"], workdir, env, web_url, sim_url, template.api_key
    )
    stack.idp = idp
    import_connections(env, stripe_only)
    sim = Proc(
        "simulator",
        [
            "refundwatch.simulator",
            "--port",
            str(sim_port),
            "--connections",
            str(connections),
            "--webhook-url",
            f"{web_url}/webhooks/{{connection}}",
            "--paypal-cert-dir",
            str(workdir / "paypal-certs"),
            "--public-url",
            sim_url,
        ],
        env,
        workdir / "simulator.log",
    )
    web = Proc("web", ["refundwatch", "serve", "--port", str(web_port)], env, workdir / "web.log")
    stack.procs.update(simulator=sim.start(), web=web.start())
    try:
        wait_http(f"{sim_url}/_control/faults", sim)
        wait_http(f"{web_url}/healthz", web)
        stack.start_worker()
        stack.wait_worker_ready()
        yield stack
    finally:
        for proc in stack.procs.values():
            proc.stop()
        stop_private_redis(stack.redis_url)
        if pg_name is not None:
            admin = ensure_postgres()
            if admin is not None:
                drop_pg_database(admin, pg_name)


def db_rows(stack: Stack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one query on the stack's database (``?`` placeholders on both backends)."""
    if stack.backend == "sqlite":
        path = stack.database_url.split(":///", 1)[1]
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    counter = iter(range(1, 1000))
    pg_sql = re.sub(r"\?", lambda _: f"${next(counter)}", sql)
    dsn = stack.database_url.replace("postgresql+asyncpg://", "postgresql://")

    async def work() -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return [tuple(row) for row in await conn.fetch(pg_sql, *params)]
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # never on the test thread's event loop
        return pool.submit(asyncio.run, work()).result(timeout=30)


def db_write(stack: Stack, sql: str, *params: Any) -> None:
    """Run one writing statement on the stack's database, committed (``?`` placeholders)."""
    if stack.backend == "sqlite":
        path = stack.database_url.split(":///", 1)[1]
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            conn.execute(sql, params)
            conn.commit()
    else:
        db_rows(stack, sql, *params)  # asyncpg: each statement commits


def wait_until(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or condition}")
        time.sleep(interval)


@contextlib.contextmanager
def second_web(stack: Stack) -> Iterator[str]:
    """Another web process on the same database and Redis: for what must work across processes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Proc("web2", ["refundwatch", "serve", "--port", str(port)], stack.env, stack.workdir / "web2.log")
    proc.start()
    try:
        wait_http(f"{url}/healthz", proc)
        yield url
    finally:
        proc.stop()
