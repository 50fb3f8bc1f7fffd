"""The test identity provider: ``node idp/provider.mjs`` (oidc-provider) on a free loopback port.

``IdentityProvider`` starts and stops it and knows its built-in clients and users; ``sign_in`` and
``sign_out`` drive its login and logout pages with a plain ``httpx2.Client`` (no browser); ``sign``
and ``register_web_client`` use its test hooks (``IDP_TEST_HOOKS``). See ``idp/provider.mjs`` for
the provider side and every setting.

The ``idp`` fixture (session scope) is one provider for the whole run. Use it from a conftest with
``pytest_plugins = ["idp"]``. Its web client ``refundwatch-web`` only accepts
``http://127.0.0.1:8000/auth/callback``; a refundwatch server on another port registers its own
client with ``idp.register_web_client(base_url)``, or the test starts its own ``IdentityProvider``.

Node and ``npm ci`` are required: the provider runs from the repository's ``node_modules``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx2
import pytest

__all__ = [
    "API_AUDIENCE",
    "API_SCOPES",
    "DEFAULT_PASSWORD",
    "MACHINE_CLIENT",
    "READER_CLIENT",
    "ROLE_MAP",
    "USERS",
    "WEB_CLIENT",
    "IdentityProvider",
    "IdpError",
    "OidcClient",
    "TestUser",
    "idp",
    "pkce_pair",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
PROVIDER_SCRIPT = REPO_ROOT / "idp" / "provider.mjs"

DEFAULT_PASSWORD = "password"
API_AUDIENCE = "urn:refundwatch:api"
API_SCOPES = ("refunds:read", "refunds:write", "payments:write", "webhooks:write")
#: ``REFUNDWATCH_ROLE_MAP`` matching the built-in users' groups.
ROLE_MAP = (
    "refundwatch-viewers=viewer,refundwatch-initiators=initiator,"
    "refundwatch-approvers=approver,refundwatch-admins=admin"
)

_READY_RE = re.compile(r"^idp listening on (http://\S+)$", re.MULTILINE)
_TAG_RE = re.compile(r"<(?P<tag>form|input)\b(?P<attrs>[^>]*)>", re.IGNORECASE)
_ATTR_RE = re.compile(r"(?P<name>[\w.:-]+)\s*=\s*\"(?P<value>[^\"]*)\"")


class IdpError(RuntimeError):
    """The identity provider could not be started, or a flow through it did not go as expected."""


@dataclass(frozen=True)
class OidcClient:
    client_id: str
    client_secret: str

    @property
    def auth(self) -> tuple[str, str]:
        """For ``httpx2`` basic authentication (client_secret_basic)."""
        return (self.client_id, self.client_secret)


@dataclass(frozen=True)
class TestUser:
    username: str
    password: str
    #: The refundwatch role the user's groups map to through ``ROLE_MAP`` (None: no role).
    role: str | None
    #: None: the user has no ``groups`` claim at all.
    groups: tuple[str, ...] | None

    __test__ = False  # not a pytest test class


WEB_CLIENT = OidcClient("refundwatch-web", "refundwatch-web-secret")
MACHINE_CLIENT = OidcClient("refundwatch-machine", "refundwatch-machine-secret")
#: A machine client allowed only ``refunds:read`` (asking for more is ``invalid_scope``).
READER_CLIENT = OidcClient("refundwatch-reader", "refundwatch-reader-secret")

#: The built-in users, by what they are for. All use ``DEFAULT_PASSWORD``.
USERS: dict[str, TestUser] = {
    "viewer": TestUser("alice-viewer", DEFAULT_PASSWORD, "viewer", ("refundwatch-viewers",)),
    "initiator": TestUser("ivan-initiator", DEFAULT_PASSWORD, "initiator", ("refundwatch-initiators",)),
    "approver": TestUser("amy-approver", DEFAULT_PASSWORD, "approver", ("refundwatch-approvers",)),
    "approver2": TestUser("bob-approver", DEFAULT_PASSWORD, "approver", ("refundwatch-approvers",)),
    "admin": TestUser("ada-admin", DEFAULT_PASSWORD, "admin", ("refundwatch-admins",)),
    "nogroups": TestUser("nina-nogroups", DEFAULT_PASSWORD, None, None),
    "outsider": TestUser("oscar-outsider", DEFAULT_PASSWORD, None, ("marketing",)),
}


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` for method S256."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise IdpError("node not found: the test identity provider needs Node.js 20+ (and `npm ci`)")
    return node


def _check_node_modules() -> None:
    if not (REPO_ROOT / "node_modules" / "oidc-provider" / "package.json").exists():
        raise IdpError(
            f"{REPO_ROOT / 'node_modules' / 'oidc-provider'} is missing: "
            f"run `npm ci` in {REPO_ROOT} (the test identity provider runs on oidc-provider)"
        )


class IdentityProvider:
    """One ``node idp/provider.mjs`` process. Every argument is optional (see ``idp/provider.mjs``)."""

    def __init__(
        self,
        *,
        port: int = 0,
        rp_base_url: str = "http://127.0.0.1:8000",
        redirect_uris: list[str] | None = None,
        post_logout_redirect_uris: list[str] | None = None,
        users: list[dict[str, Any]] | None = None,
        extra_users: list[dict[str, Any]] | None = None,
        audience: str = API_AUDIENCE,
        access_token_ttl: int | None = None,
        id_token_ttl: int | None = None,
        test_hooks: bool = True,
        auto_confirm_logout: bool = False,
        config: dict[str, Any] | None = None,
        log_path: Path | None = None,
    ) -> None:
        web_client: dict[str, Any] = {
            "client_id": WEB_CLIENT.client_id,
            "client_secret": WEB_CLIENT.client_secret,
        }
        if redirect_uris is not None:
            web_client["redirect_uris"] = redirect_uris
        if post_logout_redirect_uris is not None:
            web_client["post_logout_redirect_uris"] = post_logout_redirect_uris
        ttl: dict[str, int] = {}
        if access_token_ttl is not None:
            ttl["accessToken"] = access_token_ttl
        if id_token_ttl is not None:
            ttl["idToken"] = id_token_ttl
        self.config: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": port,
            "rpBaseUrl": rp_base_url,
            "audience": audience,
            "testHooks": test_hooks,
            "autoConfirmLogout": auto_confirm_logout,
            "webClients": [web_client],
            "ttl": ttl,
            "extraUsers": list(extra_users or []),
        }
        if users is not None:
            self.config["users"] = users
        self.config.update(config or {})
        self.audience = audience
        self._log_path = log_path
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._discovery: dict[str, Any] | None = None
        #: The exit status of the last process ``stop()`` ended (0 after a clean SIGTERM shutdown).
        self.returncode: int | None = None

    # --- process ---------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> IdentityProvider:
        if self.alive:
            return self
        node = _node_binary()
        _check_node_modules()
        self._workdir = tempfile.TemporaryDirectory(prefix="refundwatch-idp-")
        workdir = Path(self._workdir.name)
        config_path = workdir / "idp.json"
        config_path.write_text(json.dumps(self.config))
        if self._log_path is None:
            self._log_path = workdir / "idp.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        with self._log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                [node, str(PROVIDER_SCRIPT), str(config_path)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._url is None:
            match = _READY_RE.search(self.tail(20_000))
            if match:
                self._url = match.group(1)
                break
            if not self.alive:
                raise IdpError(f"the identity provider exited early:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise IdpError(f"the identity provider did not start within {timeout}s:\n{self.tail()}")
            time.sleep(0.05)
        while True:
            with contextlib.suppress(httpx2.HTTPError):
                response = httpx2.get(self.discovery_url, timeout=2)
                if response.status_code == 200:
                    self._discovery = response.json()
                    return
            if not self.alive:
                raise IdpError(f"the identity provider exited early:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise IdpError(f"{self.discovery_url} did not answer within {timeout}s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        popen, self._popen = self._popen, None
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(10)
        if popen is not None:
            self.returncode = popen.returncode
        self._url = None
        self._discovery = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
            if self._log_path is not None and not self._log_path.exists():
                self._log_path = None

    def __enter__(self) -> IdentityProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:]

    # --- where it is -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self._url is None:
            raise IdpError("the identity provider is not running")
        return self._url

    @property
    def issuer(self) -> str:
        return str(self.discovery()["issuer"])

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 80)

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            response = httpx2.get(self.discovery_url, timeout=5)
            response.raise_for_status()
            self._discovery = response.json()
        return self._discovery

    def jwks(self) -> dict[str, Any]:
        response = httpx2.get(str(self.discovery()["jwks_uri"]), timeout=5)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def refundwatch_env(self, client: OidcClient = WEB_CLIENT) -> dict[str, str]:
        """The ``REFUNDWATCH_*`` settings that point refundwatch at this provider."""
        return {
            "REFUNDWATCH_OIDC_ISSUER": self.issuer,
            "REFUNDWATCH_OIDC_CLIENT_ID": client.client_id,
            "REFUNDWATCH_OIDC_CLIENT_SECRET": client.client_secret,
            "REFUNDWATCH_OIDC_ROLES_CLAIM": "groups",
            "REFUNDWATCH_ROLE_MAP": ROLE_MAP,
            "REFUNDWATCH_API_AUDIENCE": self.audience,
        }

    # --- tokens ------------------------------------------------------------------------------
    def client_credentials(
        self,
        scope: str | None = " ".join(API_SCOPES),
        client: OidcClient = MACHINE_CLIENT,
        resource: str | None = None,
    ) -> httpx2.Response:
        """The raw token response of a client_credentials request (client_secret_basic)."""
        data: dict[str, str] = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        if resource is not None:
            data["resource"] = resource
        return httpx2.post(str(self.discovery()["token_endpoint"]), data=data, auth=client.auth, timeout=10)

    def machine_token(self, scope: str = " ".join(API_SCOPES), client: OidcClient = MACHINE_CLIENT) -> str:
        """A real RFC 9068 access token for the API."""
        response = self.client_credentials(scope, client)
        if response.status_code != 200:
            raise IdpError(f"client_credentials failed: {response.status_code} {response.text}")
        return str(response.json()["access_token"])

    def access_token_claims(self, **overrides: Any) -> dict[str, Any]:
        """Claims like those of a real machine access token (5 minutes), for ``sign``; None drops one."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": MACHINE_CLIENT.client_id,
            "client_id": MACHINE_CLIENT.client_id,
            "aud": self.audience,
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(16),
            "scope": " ".join(API_SCOPES),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(
        self,
        claims: dict[str, Any],
        *,
        header: dict[str, Any] | None = None,
        key: str = "provider",
        secret: str | None = None,
    ) -> str:
        """A JWT with exactly these claims (test hook). ``key``: provider | unknown | none | hs256.

        ``header`` is merged over ``{alg, kid}`` (None removes a field); pass ``{"typ": "at+jwt"}``
        for an access token.
        """
        body: dict[str, Any] = {"claims": claims, "header": header or {}, "key": key}
        if secret is not None:
            body["secret"] = secret
        response = httpx2.post(f"{self.url}/__test/sign", json=body, timeout=10)
        if response.status_code != 200:
            raise IdpError(f"/__test/sign failed ({response.status_code}): {response.text}")
        return str(response.json()["token"])

    # --- test hooks for users and clients --------------------------------------------------------
    def add_user(
        self, username: str, password: str = DEFAULT_PASSWORD, groups: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Adds (or replaces) a user in the running provider; ``groups=None``: no groups claim."""
        body: dict[str, Any] = {"username": username, "password": password, **extra}
        if groups is not None:
            body["groups"] = groups
        response = httpx2.post(f"{self.url}/__test/users", json=body, timeout=10)
        if response.status_code != 200:
            raise IdpError(f"/__test/users failed ({response.status_code}): {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def update_user(self, username: str, **changes: Any) -> dict[str, Any]:
        """Changes a user in the running provider (``groups=None`` removes the groups claim,
        ``disabled=True`` refuses their sign-ins and tokens); later refreshes see it."""
        response = httpx2.post(f"{self.url}/__test/users/{username}", json=changes, timeout=10)
        if response.status_code != 200:
            raise IdpError(f"/__test/users/{username} failed ({response.status_code}): {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def register_web_client(
        self, base_url: str, *, post_logout_redirect_uris: list[str] | None = None
    ) -> OidcClient:
        """A new confidential web client for a refundwatch at ``base_url`` (redirect ``/auth/callback``)."""
        base = base_url.rstrip("/")
        body = {
            "redirect_uris": [f"{base}/auth/callback"],
            "post_logout_redirect_uris": post_logout_redirect_uris or [f"{base}/", f"{base}/auth/login"],
        }
        response = httpx2.post(f"{self.url}/__test/clients", json=body, timeout=10)
        if response.status_code != 200:
            raise IdpError(f"/__test/clients failed ({response.status_code}): {response.text}")
        data = response.json()
        return OidcClient(str(data["client_id"]), str(data["client_secret"]))

    # --- browserless flows ---------------------------------------------------------------------
    def _on_idp(self, url: str) -> bool:
        parts, mine = urlsplit(url), urlsplit(self.url)
        return (parts.scheme, parts.netloc) == (mine.scheme, mine.netloc)

    def sign_in(
        self, client: httpx2.Client, url: str, username: str, password: str, max_hops: int = 20
    ) -> str:
        """Follows ``url`` (an authorization URL, or an application URL that redirects to one) through
        the login form and returns the first redirect that leaves the provider (the application's
        callback with ``code`` and ``state``) without requesting it. ``client`` keeps the cookies:
        do not let it follow redirects itself.
        """
        been_on_idp = False
        response = client.get(url)
        for _ in range(max_hops):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if been_on_idp and not self._on_idp(target):
                    return target
                been_on_idp = been_on_idp or self._on_idp(target)
                response = client.get(target)
                continue
            if not self._on_idp(str(response.url)):
                raise IdpError(
                    f"expected a redirect to the provider, got {response.status_code} at {response.url}"
                )
            been_on_idp = True
            form = _find_form(response.text, "login")
            if form is None:
                raise IdpError(
                    f"no login form at {response.url} ({response.status_code}): {response.text[:500]}"
                )
            if response.status_code == 401:
                raise IdpError(f"the provider refused the credentials of {username!r}")
            action = urljoin(str(response.url), form)
            response = client.post(action, data={"username": username, "password": password})
        raise IdpError(f"no redirect out of the provider after {max_hops} hops")

    def sign_out(self, client: httpx2.Client, url: str, max_hops: int = 20) -> str | None:
        """Follows ``url`` (the end_session URL, or an application logout URL that redirects to it),
        confirms the logout form and returns the first redirect that leaves the provider (the
        post_logout_redirect_uri), or None when the provider ends on its own "signed out" page.
        """
        been_on_idp = False
        response = client.get(url)
        for _ in range(max_hops):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if been_on_idp and not self._on_idp(target):
                    return target
                been_on_idp = been_on_idp or self._on_idp(target)
                response = client.get(target)
                continue
            if not self._on_idp(str(response.url)) or response.status_code != 200:
                raise IdpError(f"unexpected {response.status_code} at {response.url}: {response.text[:500]}")
            been_on_idp = True
            # The confirmation page, or (without a provider session) oidc-provider's auto-submit form.
            form = _find_form(response.text, "op.logoutForm") or _find_form(response.text, None)
            if form is None:
                if "signed out" in response.text.lower():
                    return None
                raise IdpError(f"no logout form at {response.url}: {response.text[:500]}")
            data = _hidden_inputs(response.text)
            data["logout"] = "yes"
            response = client.post(urljoin(str(response.url), form), data=data)
        raise IdpError(f"no redirect out of the provider after {max_hops} hops")


def _attrs(raw: str) -> dict[str, str]:
    return {m.group("name").lower(): html.unescape(m.group("value")) for m in _ATTR_RE.finditer(raw)}


def _find_form(page: str, form_id: str | None) -> str | None:
    """The action of the form with this id (None: of the first form)."""
    for match in _TAG_RE.finditer(page):
        if match.group("tag").lower() != "form":
            continue
        attrs = _attrs(match.group("attrs"))
        if form_id is None or attrs.get("id") == form_id:
            return attrs.get("action")
    return None


def _hidden_inputs(page: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for match in _TAG_RE.finditer(page):
        attrs = _attrs(match.group("attrs"))
        if match.group("tag").lower() == "input" and attrs.get("type") == "hidden" and "name" in attrs:
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


# --- URL and token helpers shared by the auth tests ------------------------------------------------
def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **changes: str | None) -> str:
    """``url`` with query parameters replaced (None removes one)."""
    parts = urlsplit(url)
    params = query(url)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return urlunsplit(parts._replace(query=urlencode(params)))


def flip_signature(token: str) -> str:
    """The same header and claims with one signature byte changed (in the middle: the last base64
    character may only carry padding bits)."""
    head, body, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{body}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


def swap_claims(token: str, **changes: Any) -> str:
    """The original signature over claims that were changed afterwards."""
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    new_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{new_body}.{signature}"


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    """One running test identity provider (test hooks on) for the whole session."""
    log_path = tmp_path_factory.mktemp("idp") / "idp.log"
    provider = IdentityProvider(log_path=log_path)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
