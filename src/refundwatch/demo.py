"""`refundwatch demo` (what `make demo` runs): the whole system on this machine, seeded and busy.

Redis (a database of its own on the one found, or a private server), a directory of its own under
``var/`` (``var/demo-<random>/``: the SQLite database, the logs, the connections file, the audit anchors),
the gateway simulator, the web server, the worker, a webhook receiver (``demo_receiver``: an
endpoint for every outgoing event) and a mail catcher for the alerts (``demo_mail``) as child
processes, ~200 demo payments, some history, then live traffic. Payments registered meanwhile are
made known to the simulator (``demo_mirror``).

PayPal's webhooks are verified as in production, by certificate (``certificate`` mode): the simulator
signs them with a certificate of a test CA it keeps in the demo's directory (``paypal-certs/``), and
refundwatch fetches that certificate from the simulator (the one allowed certificate host, plain http
being allowed in demo mode) and checks it against that CA as its trust store.

Ctrl-C (or SIGTERM) stops everything it started, empties its Redis database, removes its directory (and
``var/`` when the demo made it and nothing else is in it) and exits 0: it leaves nothing behind. A database
or anchor file named in the environment (REFUNDWATCH_DATABASE_URL, REFUNDWATCH_AUDIT_ANCHOR) is the
caller's and is kept. A child that dies on its own is reported with its log tail, the directory is kept
for its logs, and the demo exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import redis
import redis.asyncio as aioredis

from refundwatch import demo_idp, demo_mail, demo_receiver, demo_redis
from refundwatch.audit.actions import Actor
from refundwatch.config import get_settings, reset_settings
from refundwatch.demo_mirror import SimulatorMirror
from refundwatch.demo_settlement import SettlementImports
from refundwatch.demo_traffic import DemoPayment, DemoTraffic
from refundwatch.demo_workspace import Workspace
from refundwatch.lib.exceptions import RefundwatchError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SIMULATOR_PORT = 8900
RECEIVER_PORT = 8901
MAIL_PORT, SMTP_PORT = 8902, 8925  # the mail catcher's page and SMTP server
CONNECTIONS = {
    "stripe-eu": "EUR",
    "stripe-us": "USD",
    "adyen-eu": "EUR",
    "paypal-us": "USD",
    "checkout-eu": "EUR",
}
# Processor of each demo connection (the name's first word): Stripe, Adyen, PayPal and Checkout.com.
PROCESSOR_OF = {name: name.split("-", 1)[0] for name in CONNECTIONS}
SEED_PAYMENTS = 200
SEED_REFUNDS = 36
STOP_GRACE_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 60.0
DEMO_ACTOR = Actor("system", "demo")
LABELS = {
    "web": "web server",
    "redis": "private redis-server",
    "receiver": "webhook receiver",
    "mail": "mail catcher",
}
SCOPES = ["payments:write", "refunds:read", "refunds:write", "webhooks:write"]
OWN_DATABASE = " (the demo's own database, emptied when it stops)"


BANNER = """
refundwatch demo is running

  Dashboard    {web}/
  API docs     {web}/schema/openapi.json
  API key      {key}
               scopes: {scopes}
{logins}
  Simulator    {sim}  (faults: {sim}/_control/faults, ledger: {sim}/_control/ledger)
  Webhooks     {receiver}/  (every event arriving, signatures verified; the endpoint: {web}/admin/webhooks)
  Alert mail   {mail}  (alerts as e-mailed to the IT team; history: {web}/admin/alerts)
  Payments     yours (API, screens, CSV) reach the simulator within a second; by hand: {register}
  Traffic      {traffic}
  Database     {database}
  Redis        {redis}
  Logs         {logs}

  Create a refund (send it twice: same Idempotency-Key, same refund):
    curl -s -X POST {web}/api/v1/refunds {auth} \\
      -H 'Idempotency-Key: my-first-refund' -H 'Content-Type: application/json' \\
      -d '{body}'
  Read it (the id is in the answer):
    curl -s {web}/api/v1/refunds/<id> {auth}
  List the ones that succeeded:
    curl -s '{web}/api/v1/refunds?status=succeeded' {auth}

Press Ctrl-C to stop everything the demo started.
"""


class DemoError(RefundwatchError):
    """The demo cannot go on; the CLI prints the message as one line and exits non-zero."""

    code = "demo_failed"


def _say(line: str = "") -> None:
    print(line, flush=True)  # flushed: the banner must show up even when stdout is a pipe


# ------------------------------------------------------------------------------------ processes


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: the child gets SIGTERM if the demo itself is killed (-9), so nothing is left behind."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: no imports in the child
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return preexec


@dataclass
class Supervisor:
    log_dir: Path
    children: list[Child] = field(default_factory=list)
    redis_claimed: str | None = None  # the database the demo claimed on a shared Redis, emptied at the end

    def start(self, name: str, argv: list[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Own process group: a terminal's Ctrl-C reaches only the demo, which then stops the
                # children in order (apps before Redis), and the group can be killed as a whole.
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only prctl, set up before the fork
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def first_dead(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    def stop_all(self) -> None:
        """Apps first (the worker still needs Redis to shut down cleanly), then Redis."""
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop([c for c in self.children if c.name != "redis"])
            self._stop([c for c in self.children if c.name == "redis"])
            self.children.clear()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @staticmethod
    def _stop(children: list[Child]) -> None:
        for child in children:
            if child.alive():
                child.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while any(c.alive() for c in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in children:
            if child.alive():
                _say(f"  {child.label} still busy after {STOP_GRACE_SECONDS:g} s; killed it")
            # Also reaps helpers the child started (granian's workers) that outlived it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()


class ChildDiedError(Exception):
    def __init__(self, child: Child) -> None:
        super().__init__(child.name)
        self.child = child


def _died(child: Child) -> DemoError:
    _say(f"\nrefundwatch demo: the {child.label} stopped unexpectedly (exit code {child.proc.returncode}).")
    tail = child.tail()
    if tail:
        _say(f"last lines of {child.log}:")
        _say("\n".join(f"  | {line}" for line in tail.splitlines()))
    return DemoError(f"the {child.label} stopped unexpectedly; full log: {child.log}")


# ----------------------------------------------------------------------------------------- setup


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def _ensure_redis(sup: Supervisor, data_dir: Path) -> tuple[str, bool]:
    """The Redis URL to use (a database of the demo's own), and whether the demo started the server."""
    url = os.environ.get("REFUNDWATCH_REDIS_URL") or DEFAULT_REDIS_URL
    binary = shutil.which("redis-server")
    if _redis_answers(url):
        claimed = demo_redis.claim_database(url)
        if claimed is not None:
            sup.redis_claimed = claimed
            return claimed, False
        if binary is None:
            raise DemoError(
                f"the Redis at {url} has no empty database (1-15) for the demo to use as its own: "
                "free one, or install redis-server (the demo then starts a private one)"
            )
        _say(f"the Redis at {url} has no empty database for the demo; starting a private redis-server")
    elif binary is None:
        raise DemoError(
            f"no Redis answers at {url} and there is no redis-server to start one: install it "
            "(Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) "
            "or set REFUNDWATCH_REDIS_URL"
        )
    else:
        _say(f"no Redis answers at {url}; starting a private redis-server")
    for _attempt in range(3):  # the free port can be taken before redis binds it
        port = _free_port()
        options = f"--bind 127.0.0.1 --port {port} --appendonly no --daemonize no".split()
        child = sup.start("redis", [binary, *options, "--save", "", "--dir", str(data_dir.resolve())])
        private = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while child.alive() and time.monotonic() < deadline:
            if _redis_answers(private):
                return private, True
            time.sleep(0.05)
        sup.stop_all()
    raise DemoError(f"the private redis-server did not start; see {sup.log_dir / 'redis.log'}")


def _write_connections_file(path: Path, simulator_port: int) -> None:
    tables = []
    for name in CONNECTIONS:
        processor = PROCESSOR_OF[name]
        if processor == "adyen":
            credentials = (
                f'api_key = "AQEdemo{secrets.token_hex(16)}"\n'
                'merchant_account = "RefundwatchDemoECOM"\n'
                f'hmac_key = "{secrets.token_hex(32).upper()}"\n'
            )
        elif processor == "paypal":
            # A REST app's client id and secret, and the id of the webhook registered for it (letters
            # and digits, as PayPal's are); its signatures are checked by certificate, the default.
            credentials = (
                f'client_id = "AdemoRefundwatch{secrets.token_hex(16)}"\n'
                f'client_secret = "EDdemo{secrets.token_hex(24)}"\n'
                f'webhook_id = "{secrets.token_hex(9).upper()[:17]}"\n'
            )
        elif processor == "checkout":
            # A current-platform sandbox secret key (sk_sbox_ and 27 base32 characters, the shape
            # checkout-sdk checks; platform left at its default) and the webhook signature key.
            key = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(27))
            credentials = (
                f'secret_key = "sk_sbox_{key}"\nwebhook_signature_key = "cko-demo-{secrets.token_hex(24)}"\n'
            )
        else:
            credentials = (
                f'api_key = "sk_test_demo_{secrets.token_hex(12)}"\n'
                f'webhook_secret = "whsec_demo_{secrets.token_hex(16)}"\n'
            )
        tables.append(
            "[[connection]]\n"
            f'name = "{name}"\n'
            f'processor = "{processor}"\n'
            f'base_url = "http://127.0.0.1:{simulator_port}/{processor}"\n'
            + credentials
            + "health_check_interval_seconds = 5\n"
            "timeout_seconds = 10\n"
        )
    path.write_text(
        "# Written by `refundwatch demo` for the gateway simulator; rewritten on every run.\n\n"
        + "\n".join(tables),
        encoding="utf-8",
    )


async def _prepare_database(connections_file: Path, receiver_url: str) -> tuple[str, int, str]:
    """Import the demo connections, create an API key, register the receiver for every event; returns
    the key, the next free payment number and the receiver's signing secret."""
    from sqlalchemy import or_, select

    from refundwatch.auth.apikeys import create_api_key
    from refundwatch.connections.services import import_connections
    from refundwatch.connections.spec import load_connections_file
    from refundwatch.db.models import Payment
    from refundwatch.runtime import Runtime

    rt = Runtime.build(get_settings(), pool_size=2)
    try:
        await import_connections(rt.db, rt.cipher, load_connections_file(connections_file), DEMO_ACTOR)
        key = await create_api_key(rt.db, "demo", SCOPES, DEMO_ACTOR)
        secret = await demo_receiver.register(rt, f"{receiver_url}{demo_receiver.PATH}", DEMO_ACTOR)
        async with rt.db.read_session() as session:
            references = (
                await session.scalars(
                    select(Payment.payment_reference).where(
                        or_(
                            Payment.payment_reference.like("pi_demo_%"),
                            Payment.payment_reference.like("DEMO%"),
                            Payment.payment_reference.like("pay_demo%"),
                        )
                    )
                )
            ).all()
    finally:
        await rt.close()
    # A database of the caller's keeps the earlier runs' history: new payments are numbered after it.
    digits = [r.removeprefix("pi_demo_").removeprefix("pay_demo").removeprefix("DEMO") for r in references]
    numbers = [int(d) for d in digits if d.isdigit()]
    return key, max(numbers, default=0) + 1, secret


# ------------------------------------------------------------------------------------- live part


@dataclass
class Demo:
    port: int
    simulator_port: int
    receiver_port: int
    mail_ports: tuple[int, int] | None  # (page, SMTP) of the mail catcher; None: aiosmtpd is not installed
    api_key: str
    first_payment: int
    redis_url: str
    private_redis: bool
    traffic: bool
    sup: Supervisor
    workspace: Workspace
    own_database: bool  # False: the caller's REFUNDWATCH_DATABASE_URL, kept when the demo stops
    logins: list[str] = field(default_factory=list)
    sign_in_note: str = ""

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def mail_url(self) -> str | None:
        return None if self.mail_ports is None else f"http://127.0.0.1:{self.mail_ports[0]}"


async def _wait_ready(demo: Demo, child: Child, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        dead = demo.sup.first_dead()
        if dead is not None:
            raise ChildDiedError(dead)
        try:
            if await check():
                return
        except (httpx2.HTTPError, redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DemoError(
                f"the {child.label} did not answer within {READY_TIMEOUT_SECONDS:g} s; see {child.log}"
            )
        await asyncio.sleep(0.2)


async def _start_children(demo: Demo, client: httpx2.AsyncClient) -> None:
    from refundwatch.runtime import QUEUE_NAME

    async def answers(url: str) -> bool:
        return (await client.get(url)).status_code == 200

    me = [sys.executable, "-m", "refundwatch"]
    hooks = f"{demo.web_url}/webhooks/{{connection}}"
    connections = demo.workspace.connections_file
    simulator_args = f"simulator --port {demo.simulator_port} --connections {connections}".split()
    # PayPal's signing certificate and its CA: the ones already made in the workspace (_paypal_certs).
    paypal_args = [
        "--paypal-cert-dir",
        str(demo.workspace.paypal_cert_dir),
        "--public-url",
        demo.simulator_url,
    ]
    simulator = demo.sup.start("simulator", [*me, *simulator_args, "--webhook-url", hooks, *paypal_args])
    provider = demo_idp.plan(demo.web_url)  # before the web process: it sets the OIDC environment
    if isinstance(provider, str):
        demo.sign_in_note = provider
    else:
        idp = demo.sup.start("idp", provider.argv)
        discovery = f"{provider.issuer}/.well-known/openid-configuration"
        await _wait_ready(demo, idp, lambda: answers(discovery))
        demo.logins = provider.logins()
    receiver_args = ["--port", str(demo.receiver_port), "--secret-file", str(demo.workspace.receiver_secret)]
    receiver = demo.sup.start("receiver", [sys.executable, "-m", "refundwatch.demo_receiver", *receiver_args])
    mail = None
    if demo.mail_ports is not None:
        mail_args = ["--port", str(demo.mail_ports[0]), "--smtp-port", str(demo.mail_ports[1])]
        mail = demo.sup.start("mail", [sys.executable, "-m", "refundwatch.demo_mail", *mail_args])
    web = demo.sup.start("web", [*me, "serve", "--port", str(demo.port)])
    worker = demo.sup.start("worker", [*me, "worker"])

    await _wait_ready(demo, simulator, lambda: answers(f"{demo.simulator_url}/_control/faults"))
    await _wait_ready(demo, receiver, lambda: answers(f"{demo.receiver_url}/events.json"))
    if mail is not None:
        await _wait_ready(demo, mail, lambda: answers(f"{demo.mail_url}/mail.json"))
    await _wait_ready(demo, web, lambda: answers(f"{demo.web_url}/healthz"))
    # arq writes this key from its poll loop: once it exists, the worker is taking jobs.
    queue = aioredis.Redis.from_url(demo.redis_url, socket_connect_timeout=1, socket_timeout=2)
    try:
        await _wait_ready(demo, worker, lambda: _exists(queue, f"{QUEUE_NAME}:health-check"))
    finally:
        await queue.aclose()


async def _exists(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.exists(key))


def _banner(demo: Demo, showcase: DemoPayment) -> str:
    body = {"payment_reference": showcase.reference, "connection": showcase.connection, "amount": 500,
            "currency": showcase.currency, "reason": "requested_by_customer"}  # fmt: skip
    payment = {"processor": "stripe", "payment_reference": "pi_mine", "amount": 5000, "currency": "EUR"}
    register = (
        f"curl -s -X POST {demo.simulator_url}/_control/payments -H 'Content-Type: application/json' "
        f"-d '{json.dumps(payment)}'"
    )
    logins = demo.logins or [f"({demo.sign_in_note})"]
    return BANNER.format(
        web=demo.web_url,
        sim=demo.simulator_url,
        receiver=demo.receiver_url,
        mail=f"{demo.mail_url}/" if demo.mail_url else "(off: install the test extras for aiosmtpd)",
        key=demo.api_key,
        auth=f"-H 'Authorization: Bearer {demo.api_key}'",
        body=json.dumps(body),
        scopes=", ".join(SCOPES),
        logins="\n".join(f"  Sign in as   {line}" for line in logins),
        traffic="about 2-5 refunds per second, with injected gateway faults" if demo.traffic else "off",
        database=get_settings().database_url
        + (" (the demo's own, removed when it stops)" if demo.own_database else " (yours, kept)"),
        redis=demo.redis_url + (" (private, stopped with the demo)" if demo.private_redis else OWN_DATABASE),
        register=register,
        logs=f"{demo.sup.log_dir}/  ({', '.join(c.log.name for c in demo.sup.children)}; "
        "removed when it stops, kept if it fails)",
    )


async def _work(demo: Demo) -> None:
    """Start, seed, print the banner, then drive traffic and watch the children until cancelled."""
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, connect=2.0)) as client:
        _say("starting the gateway simulator, the web server and the worker")
        await _start_children(demo, client)
        traffic = DemoTraffic(
            client,
            api_url=demo.web_url,
            api_key=demo.api_key,
            simulator_url=demo.simulator_url,
            currencies=CONNECTIONS,
            approval_threshold=get_settings().approval_threshold_for,
            first_number=demo.first_payment,
        )
        _say(f"seeding {SEED_PAYMENTS} payments and {SEED_REFUNDS} refunds")
        try:
            showcase = await traffic.seed(SEED_PAYMENTS, SEED_REFUNDS, faults=demo.traffic)
        except (httpx2.HTTPError, RuntimeError) as exc:
            dead = demo.sup.first_dead()
            if dead is not None:
                raise ChildDiedError(dead) from exc
            raise DemoError(f"seeding failed: {exc}") from exc
        _say(_banner(demo, showcase))
        runner = asyncio.create_task(traffic.run(report=_say)) if demo.traffic else None
        from refundwatch.runtime import Runtime

        mirror_rt = Runtime.build(get_settings(), pool_size=1)
        mirror = SimulatorMirror(mirror_rt, client, demo.simulator_url, _say)
        mirroring = asyncio.create_task(mirror.run())
        settlement = SettlementImports(
            mirror_rt, client, demo.simulator_url, PROCESSOR_OF, demo.sup.log_dir.parent / "settlement", _say
        )
        importing = asyncio.create_task(settlement.run())
        try:
            while True:
                dead = demo.sup.first_dead()
                if dead is not None:
                    raise ChildDiedError(dead)
                if runner is not None and runner.done():
                    raise DemoError(f"demo traffic stopped: {runner.exception()!r}")
                await asyncio.sleep(0.5)
        finally:
            mirroring.cancel()
            importing.cancel()
            await asyncio.gather(mirroring, importing, return_exceptions=True)
            await mirror_rt.close()
            if runner is not None:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)


async def _live(demo: Demo) -> None:
    """Run ``_work`` until it fails or a signal asks to stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    work = asyncio.create_task(_work(demo))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            work.result()  # only ever ends with an error
    except ChildDiedError as exc:
        raise _died(exc.child) from None
    finally:
        for task in (work, stopper):
            task.cancel()
        await asyncio.gather(work, stopper, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM during set-up: unwind like Ctrl-C, through the clean-up


def run_demo(*, port: int = 8000, traffic: bool = True) -> None:
    """Run the demo in the current directory until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _interrupt)
    workspace = Workspace.create()
    sup = Supervisor(workspace.log_dir)
    failed = True
    try:
        _run(sup, workspace, port, traffic)
        failed = False
    except KeyboardInterrupt:
        failed = False
    finally:
        if sup.children:
            _say("\nstopping the demo: " + ", ".join(c.label for c in sup.children))
        sup.stop_all()
        _fold_sqlite_wal(os.environ.get("REFUNDWATCH_DATABASE_URL", ""))
        if sup.redis_claimed is not None and demo_redis.release_database(sup.redis_claimed):
            _say(f"emptied the demo's Redis database ({sup.redis_claimed})")
        _tidy(workspace, failed)
    _say("the demo has stopped")


def _fold_sqlite_wal(url: str) -> None:
    """A SQLite database left whole in its one file: a process killed after the stop's grace period
    leaves its write-ahead log beside it, and a copy of the file alone would miss those writes. The
    last connection to close folds the log in and removes it and its index."""
    if not url.startswith("sqlite") or ":///" not in url:
        return
    path = Path(url.split(":///", 1)[1])
    if path.exists():
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _tidy(workspace: Workspace, failed: bool) -> None:
    """Remove the demo's files; after a failure with something in the logs, keep them to be read."""
    if failed and workspace.has_logs():
        _say(f"kept {workspace.root} for its logs; remove it when done (rm -r {workspace.root})")
        return
    workspace.remove()
    _say(f"removed the demo's files ({workspace.root})")


def _mail_ports() -> tuple[int, int] | None:
    """The mail catcher's (page, SMTP) ports, or None without aiosmtpd (a test extra)."""
    if importlib.util.find_spec("aiosmtpd") is None:
        return None
    page = MAIL_PORT if _port_free(MAIL_PORT) else _free_port()
    return page, SMTP_PORT if _port_free(SMTP_PORT) else _free_port()


def _paypal_certs(workspace: Workspace) -> Path:
    """Make the simulator's PayPal test CA and webhook signing certificate in the workspace (the
    simulator is started with them); returns the CA's file."""
    from refundwatch.simulator.paypal.certs import load_or_create

    return load_or_create(workspace.paypal_cert_dir).directory / "ca.pem"


def _trust_paypal_certs(trust_store: Path, simulator_port: int) -> None:
    """Let refundwatch verify PayPal webhooks with the simulator's certificate: the simulator is an
    allowed certificate host (beside any of the caller's own) and its CA is the trust store. The demo's
    connections are all the simulator's, so its CA is the one trust store they need."""
    variable = "REFUNDWATCH_PAYPAL_CERT_HOSTS"
    hosts = [h.strip() for h in os.environ.get(variable, "").split(",") if h.strip()]
    os.environ[variable] = ",".join(dict.fromkeys([*hosts, f"127.0.0.1:{simulator_port}"]))
    os.environ["REFUNDWATCH_PAYPAL_TRUST_STORE"] = str(trust_store)
    reset_settings()  # the demo's own settings read the same as its children's


def _run(sup: Supervisor, workspace: Workspace, port: int, traffic: bool) -> None:
    os.environ["REFUNDWATCH_MODE"] = "demo"
    own_database = "REFUNDWATCH_DATABASE_URL" not in os.environ
    os.environ.setdefault("REFUNDWATCH_DATABASE_URL", workspace.database_url)
    os.environ.setdefault("REFUNDWATCH_AUDIT_ANCHOR", str(workspace.anchor))
    os.environ.setdefault("REFUNDWATCH_BASE_URL", f"http://127.0.0.1:{port}")
    os.environ.setdefault("REFUNDWATCH_LOG_JSON", "false")  # people read these logs, not a collector
    # The demo's webhook receiver listens on loopback, which endpoints may not use unless allow-listed.
    allowed = [h for h in os.environ.get("REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS", "").split(",") if h.strip()]
    os.environ["REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS"] = ",".join(dict.fromkeys([*allowed, "127.0.0.1"]))
    mail_ports = _mail_ports()
    if mail_ports is not None:  # alerts also go to the mail catcher, beside any of the caller's own
        urls = [u for u in os.environ.get("REFUNDWATCH_ALERT_URLS", "").split(",") if u.strip()]
        os.environ["REFUNDWATCH_ALERT_URLS"] = ",".join([*urls, demo_mail.alert_url(mail_ports[1])])
    if not _port_free(port):
        raise DemoError(
            f"port {port} is already in use (another demo still running?); "
            f"pick another one: refundwatch demo --port {port + 1}  (make demo DEMO_ARGS='--port {port + 1}')"
        )
    redis_url, private = _ensure_redis(sup, workspace.root)
    os.environ["REFUNDWATCH_REDIS_URL"] = redis_url
    trust_store = _paypal_certs(workspace)
    reset_settings()
    settings = get_settings()

    from refundwatch.db.migrate import upgrade

    _say(f"migrating {settings.database_url}")
    upgrade(settings.database_url)
    # Chosen as late as possible before the simulator binds it (another demo may be starting too).
    simulator_port = SIMULATOR_PORT if _port_free(SIMULATOR_PORT) else _free_port()
    _trust_paypal_certs(trust_store, simulator_port)  # before web and worker: they check it at start-up
    receiver_port = RECEIVER_PORT if _port_free(RECEIVER_PORT) else _free_port()
    _write_connections_file(workspace.connections_file, simulator_port)
    api_key, first_payment, secret = asyncio.run(
        _prepare_database(workspace.connections_file, f"http://127.0.0.1:{receiver_port}")
    )
    workspace.receiver_secret.write_text(secret, encoding="utf-8")
    workspace.receiver_secret.chmod(0o600)
    demo = Demo(
        port=port,
        simulator_port=simulator_port,
        receiver_port=receiver_port,
        mail_ports=mail_ports,
        api_key=api_key,
        first_payment=first_payment,
        redis_url=redis_url,
        private_redis=private,
        traffic=traffic,
        sup=sup,
        workspace=workspace,
        own_database=own_database,
    )
    asyncio.run(_live(demo))
