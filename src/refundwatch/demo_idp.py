"""The demo's own OpenID Connect provider: node's oidc-provider (idp/provider.mjs) with one user per role.

Started only when no provider is configured (REFUNDWATCH_OIDC_ISSUER unset) and node with the
project's node_modules is there (``make demo`` runs ``npm ci`` first). It points refundwatch's web
process at itself through the environment the demo's children inherit.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "idp" / "provider.mjs"
PREFERRED_PORT = 9400
PASSWORD = "password"  # noqa: S105 - the demo provider's published demo password
CLIENT_ID, CLIENT_SECRET = "refundwatch-web", "refundwatch-web-secret"
ROLE_MAP = (
    "refundwatch-viewers=viewer,refundwatch-initiators=initiator,"
    "refundwatch-approvers=approver,refundwatch-admins=admin"
)
USERS = (
    ("alice-viewer", "viewer"),
    ("ivan-initiator", "initiator"),
    ("amy-approver", "approver"),
    ("bob-approver", "approver (a second one, for four eyes)"),
    ("ada-admin", "admin"),
)


@dataclass(frozen=True, slots=True)
class DemoProvider:
    issuer: str
    argv: list[str]

    def logins(self) -> list[str]:
        return [f"{user} / {PASSWORD}  ({role})" for user, role in USERS]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan(web_url: str) -> DemoProvider | str:
    """What to start, with the environment set for it and for refundwatch; or why not (one line)."""
    if os.environ.get("REFUNDWATCH_OIDC_ISSUER"):
        return "using the configured provider (REFUNDWATCH_OIDC_ISSUER)"
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "oidc-provider").is_dir() or not SCRIPT.is_file():
        return "no sign-in: the demo provider needs node and npm ci (make demo does both)"
    port = PREFERRED_PORT if _port_free(PREFERRED_PORT) else _free_port()
    issuer = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "IDP_PORT": str(port),
            "IDP_RP_BASE_URL": web_url,
            "IDP_POST_LOGOUT_REDIRECT_URIS": f"{web_url}/auth/signed-out,{web_url}/",
            "IDP_WEB_CLIENT_ID": CLIENT_ID,
            "IDP_WEB_CLIENT_SECRET": CLIENT_SECRET,
            "REFUNDWATCH_OIDC_ISSUER": issuer,
            "REFUNDWATCH_OIDC_CLIENT_ID": CLIENT_ID,
            "REFUNDWATCH_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "REFUNDWATCH_ROLE_MAP": ROLE_MAP,
        }
    )
    return DemoProvider(issuer=issuer, argv=[node, str(SCRIPT)])
