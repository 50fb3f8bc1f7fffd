"""The simulator application and its server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
from pathlib import Path
from typing import Any, Literal, cast

from litestar import Litestar, Request, Response
from litestar.exceptions import MethodNotAllowedException, NotFoundException

from . import adyen as adyen_processor
from . import stripe as stripe_processor
from .adyen import reports as adyen_reports
from .adyen import settlement as adyen_settlement
from .asgi import RAW_SEND_KEY, random_id
from .checkout import CheckoutSimulator
from .checkout import reports as checkout_reports
from .connections import Connections, load_connections
from .control import build_control_router
from .faults import Faults
from .paypal import reports as paypal_reports
from .paypal.certs import load_or_create as load_paypal_certificates
from .paypal.control import build_paypal_control_router
from .paypal.handlers import PayPalSimulator
from .paypal.handlers import unknown_path as paypal_unknown_path
from .settlement import Reports
from .state import Store
from .stripe import settlement as stripe_settlement
from .stripe.payout_api import StripePayouts
from .stripe.schedule import Schedule
from .webhooks import WebhookSender

__all__ = [
    "ENV_CONNECTIONS",
    "ENV_PAYPAL_CERT_DIR",
    "ENV_PUBLIC_URL",
    "ENV_WEBHOOK_URL",
    "SimulatorApp",
    "app_from_environment",
    "create_app",
    "serve",
]

ENV_CONNECTIONS = "REFUNDWATCH_SIMULATOR_CONNECTIONS"
ENV_WEBHOOK_URL = "REFUNDWATCH_SIMULATOR_WEBHOOK_URL"
ENV_PAYPAL_CERT_DIR = "REFUNDWATCH_SIMULATOR_PAYPAL_CERT_DIR"
ENV_PUBLIC_URL = "REFUNDWATCH_SIMULATOR_PUBLIC_URL"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8900"

ServerName = Literal["auto", "uvicorn", "granian"]


class SimulatorApp(Litestar):
    """Litestar, plus the server's raw ``send`` kept in the scope so a handler can drop the connection."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_KEY] = send
        await super().__call__(scope, receive, send)


def _unknown_route(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Unknown paths: in the processor's own error format under its prefix."""
    path = request.scope["path"]
    if path == "/stripe" or path.startswith("/stripe/"):
        body = stripe_processor.unrecognized_url(request.method, path.removeprefix("/stripe"))
        return Response(body, status_code=404, headers={"Request-Id": random_id("req_", 14)})
    if path == "/adyen" or path.startswith("/adyen/"):
        return Response(adyen_processor.not_found(path.removeprefix("/adyen")), status_code=404)
    if path == "/paypal" or path.startswith("/paypal/"):
        return Response(paypal_unknown_path(), status_code=404)
    if path == "/checkout" or path.startswith("/checkout/"):
        return Response(b"", status_code=404)  # Checkout.com's 404s carry no body
    status = 405 if isinstance(exc, MethodNotAllowedException) else 404
    return Response({"error": "not found" if status == 404 else "method not allowed"}, status_code=status)


def create_app(
    connections_path: Path | None = None,
    webhook_url: str | None = None,
    *,
    paypal_cert_dir: Path | None = None,
    public_url: str | None = None,
) -> Litestar:
    """Build the simulator: every processor under its name, the control API under ``/_control``.

    ``connections_path`` is a TOML connections file (CONTRACT §6): with it, only its credentials are
    accepted and its webhook secrets sign the webhooks sent to ``webhook_url`` (a template with
    ``{connection}``). Raises :class:`~.connections.ConnectionsFileError` for a bad file.
    ``paypal_cert_dir`` keeps PayPal's test CA and signing certificate (``paypal/certs.py``; default: a
    new temporary directory); ``public_url`` is the simulator's own base URL as its clients reach it
    (PayPal's ``PAYPAL-CERT-URL`` and links start with it; default ``http://127.0.0.1:8900``).
    """
    connections = load_connections(connections_path) if connections_path is not None else Connections()
    store = Store()
    faults = Faults()
    webhooks = WebhookSender(webhook_url)
    stripe = stripe_processor.StripeSimulator(store, faults, webhooks, connections)
    adyen = adyen_processor.AdyenSimulator(store, faults, webhooks, connections)
    paypal = PayPalSimulator(
        store,
        faults,
        webhooks,
        connections,
        load_paypal_certificates(paypal_cert_dir),
        public_url or DEFAULT_PUBLIC_URL,
    )
    checkout = CheckoutSimulator(store, faults, webhooks, connections, public_url or DEFAULT_PUBLIC_URL)
    reports = Reports(store)
    stripe_schedule = Schedule()
    stripe_settlement.register(reports, stripe_schedule)
    stripe_payouts = StripePayouts(stripe, reports, stripe_schedule)
    adyen_files = adyen_reports.Publications(reports, connections, adyen.notifier, faults)
    adyen_settlement.register(reports, connections, adyen_files.cuts)
    paypal_reports.register(reports)
    checkout_reports.register(reports)
    app = SimulatorApp(
        route_handlers=[
            stripe.router(),
            stripe_payouts.router(),
            adyen.router(),
            *adyen_files.routers(),
            paypal.router(),
            build_paypal_control_router(paypal),
            checkout.router(),
            build_control_router(store, faults, webhooks, reports, connections),
            stripe_payouts.control_router(),
        ],
        on_startup=[webhooks.start, stripe_payouts.start],
        on_shutdown=[stripe_payouts.close, webhooks.close],
        exception_handlers={NotFoundException: _unknown_route, MethodNotAllowedException: _unknown_route},
        openapi_config=None,
        debug=False,
    )
    app.state.update(
        {
            "store": store,
            "faults": faults,
            "webhooks": webhooks,
            "connections": connections,
            "reports": reports,
        }
    )
    return app


def app_from_environment() -> Litestar:
    """Factory for servers that import the app by name (granian): settings come from the environment."""
    connections = os.environ.get(ENV_CONNECTIONS)
    cert_dir = os.environ.get(ENV_PAYPAL_CERT_DIR)
    return create_app(
        Path(connections) if connections else None,
        os.environ.get(ENV_WEBHOOK_URL) or None,
        paypal_cert_dir=Path(cert_dir) if cert_dir else None,
        public_url=os.environ.get(ENV_PUBLIC_URL) or None,
    )


def _pick_server(server: ServerName) -> Literal["uvicorn", "granian"]:
    if server != "auto":
        return server
    return "uvicorn" if importlib.util.find_spec("uvicorn") is not None else "granian"


def serve(
    host: str,
    port: int,
    connections_path: Path | None,
    webhook_url: str | None,
    *,
    server: ServerName = "auto",
    paypal_cert_dir: Path | None = None,
    public_url: str | None = None,
) -> None:
    """Run the simulator until interrupted (blocking).

    ``server="auto"`` uses uvicorn when it is installed (it can drop a connection without any
    answer, which ``reset_rate`` needs), else granian (which cuts the answer short instead).
    ``public_url`` defaults to ``http://{host}:{port}``.
    """
    if connections_path is not None:
        load_connections(connections_path)  # fail fast, before any server starts
    public_url = public_url or f"http://{host}:{port}"
    if paypal_cert_dir is not None:
        _serve(host, port, connections_path, webhook_url, server, paypal_cert_dir, public_url)
        return
    # One directory for the process, whichever server builds the app; a temporary one holds a CA's
    # private key, so it goes with the process.
    made = load_paypal_certificates(None).directory
    # uvicorn raises the SIGTERM it caught again once it has shut down; as an exception here, not the
    # default handler's instant death, it lets the directory go too.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _serve(host, port, connections_path, webhook_url, server, made, public_url)
    finally:
        shutil.rmtree(made, ignore_errors=True)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _serve(
    host: str,
    port: int,
    connections_path: Path | None,
    webhook_url: str | None,
    server: ServerName,
    paypal_cert_dir: Path,
    public_url: str,
) -> None:
    if _pick_server(server) == "uvicorn":
        import uvicorn

        uvicorn.run(
            create_app(connections_path, webhook_url, paypal_cert_dir=paypal_cert_dir, public_url=public_url),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            backlog=4096,
            timeout_keep_alive=75,
            lifespan="on",
        )
        return
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    if connections_path is not None:
        os.environ[ENV_CONNECTIONS] = str(connections_path.resolve())
    else:
        os.environ.pop(ENV_CONNECTIONS, None)
    if webhook_url:
        os.environ[ENV_WEBHOOK_URL] = webhook_url
    else:
        os.environ.pop(ENV_WEBHOOK_URL, None)
    os.environ[ENV_PAYPAL_CERT_DIR] = str(paypal_cert_dir.resolve())
    os.environ[ENV_PUBLIC_URL] = public_url
    granian = cast(Any, Server)(
        f"{__name__}:app_from_environment",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        backlog=4096,
        log_level=LogLevels.warning,
        log_access=False,
    )
    granian.serve()
