"""``python -m refundwatch.simulator [--host H] [--port P] [--connections FILE] [--webhook-url TEMPLATE]
[--paypal-cert-dir DIR] [--public-url URL]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .app import serve
from .connections import ConnectionsFileError, load_connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m refundwatch.simulator", description="The gateway simulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port to bind (default 8900)")
    parser.add_argument("--connections", type=Path, default=None, help="gateway connections file (TOML)")
    parser.add_argument(
        "--webhook-url",
        default=None,
        help="webhook URL template with {connection}, e.g. http://127.0.0.1:8000/webhooks/{connection}",
    )
    parser.add_argument(
        "--paypal-cert-dir",
        type=Path,
        default=None,
        help="where PayPal's test CA and webhook signing certificate are kept (reused when present, made "
        "otherwise; default: a new temporary directory); GET /_control/paypal/ca.pem serves the CA",
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="the simulator's base URL as clients reach it, for PayPal's PAYPAL-CERT-URL and links "
        "(default http://HOST:PORT)",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "uvicorn", "granian"),
        default="auto",
        help="HTTP server (default: uvicorn if installed, else granian)",
    )
    args = parser.parse_args(argv)
    if args.connections is not None:
        try:
            load_connections(args.connections)
        except ConnectionsFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    serve(
        args.host,
        args.port,
        args.connections,
        args.webhook_url,
        server=args.server,
        paypal_cert_dir=args.paypal_cert_dir,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
