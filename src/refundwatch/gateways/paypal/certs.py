"""PayPal's webhook signing certificate: where it may come from, how it is fetched and checked, and
the verified keys kept by URL.

PAYPAL-CERT-URL is outside input: whoever posts to the webhook endpoint chooses it. So the URL is
checked before anything is sent (:func:`check_cert_url`): ``https`` (plain ``http`` only in demo and
test mode), no credentials, query or fragment, a host from ``REFUNDWATCH_PAYPAL_CERT_HOSTS`` and a path
that ends in PayPal's ``/v1/notifications/certs/<id>``. A URL that fails any of these is refused with no
request at all, so the endpoint cannot be used to reach other hosts (SSRF).

The PEM it serves (the leaf first, then intermediates) is fetched with the shared client: a short
timeout, no redirects, at most :data:`MAX_PEM_BYTES`. The chain must lead to an anchor of
``REFUNDWATCH_PAYPAL_TRUST_STORE`` (the PEM's other certificates are untrusted intermediates), the leaf
must be valid now, carry ``REFUNDWATCH_PAYPAL_CERT_SUBJECT`` as a DNS name in its subjectAltName, allow
serverAuth where it names key usages, and hold an RSA key of at least 2,048 bits. cryptography's
WebPKI verifier does the path building; its extension rules are kept except three that ordinary
OpenSSL verification does not demand either (see :func:`_extension_policies`).

Verified keys are cached per policy and URL, at most :data:`CACHE_SIZE` of them, each until the
earliest ``not_after`` in its chain or :data:`CACHE_SECONDS`, whichever comes first; one fetch per URL
runs at a time however many deliveries wait for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import re
import ssl
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from refundwatch.gateways.base import WebhookVerificationError, WebhookVerificationUnavailable
from refundwatch.lib.http import timeout_for

if TYPE_CHECKING:
    from refundwatch.config import Settings

DEFAULT_CERT_HOSTS = "api.paypal.com,api.sandbox.paypal.com,api-m.paypal.com,api-m.sandbox.paypal.com"
DEFAULT_CERT_SUBJECT = "messageverificationcerts.paypal.com"
MAX_URL = 500  # the verify-webhook-signature API's own limit for cert_url
MAX_PEM_BYTES = 64 * 1024  # a leaf and an intermediate are about 4 KB
MAX_CHAIN = 5
FETCH_TIMEOUT_SECONDS = 5.0
CACHE_SIZE = 64
CACHE_SECONDS = 24 * 3600.0  # re-check the chain at least daily, even for a long-lived leaf
MIN_RSA_BITS = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_CERT_PATH = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*/v1/notifications/certs/[A-Za-z0-9._-]{1,128}$")


class TrustStoreError(ValueError):
    """The configured trust store cannot be read or holds no certificate (start-up refuses)."""


def _parse_hosts(raw: str) -> frozenset[tuple[str, int | None]]:
    """``host`` (the scheme's default port) or ``host:port`` entries; ``[::1]:8443`` for IPv6."""
    entries: set[tuple[str, int | None]] = set()
    for item in (part.strip().lower() for part in raw.split(",")):
        if not item:
            continue
        parsed = urlsplit(f"//{item}")
        try:
            port = parsed.port
        except ValueError:
            raise ValueError(f"{item!r} has a bad port") from None
        host = (parsed.hostname or "").rstrip(".")
        if not host or parsed.path or parsed.username is not None:
            raise ValueError(f"{item!r} is not a host or host:port")
        entries.add((host, port))
    return frozenset(entries)


def default_trust_store() -> str:
    """certifi's bundle when it is installed, else the system's."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx2
        paths = ssl.get_default_verify_paths()
        return paths.cafile or paths.openssl_cafile
    return str(certifi.where())


def load_trust_store(path: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle. One that cryptography cannot load (system bundles hold a
    few odd old roots, e.g. with a negative serial) is skipped rather than failing the rest."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TrustStoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    anchors: list[x509.Certificate] = []
    for block in _PEM_BLOCK.findall(data):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                anchors.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            continue
    if not anchors:
        raise TrustStoreError(f"{path} holds no PEM certificate")
    return anchors


@dataclass(frozen=True, slots=True)
class _Cached:
    key: RSAPublicKey
    until: float


@dataclass(eq=False)
class CertPolicy:
    """Where PayPal certificates may come from and what they must be. One instance per distinct
    setting (``from_settings`` is cached), holding the verified keys by URL."""

    hosts: frozenset[tuple[str, int | None]]
    anchors: list[x509.Certificate]
    subject: str = DEFAULT_CERT_SUBJECT
    allow_http: bool = False  # demo and test mode only
    fetch_timeout_seconds: float = FETCH_TIMEOUT_SECONDS
    cache_size: int = CACHE_SIZE
    _store: Store = field(init=False, repr=False)
    _cache: OrderedDict[str, _Cached] = field(init=False, repr=False, default_factory=OrderedDict)
    _inflight: dict[str, asyncio.Task[_Cached]] = field(init=False, repr=False, default_factory=dict)
    fetches: int = field(init=False, default=0)  # certificate requests sent, for tests and the bench

    def __post_init__(self) -> None:
        if not self.anchors:
            raise TrustStoreError("the trust store holds no certificate")
        self._store = Store(self.anchors)

    @classmethod
    def build(
        cls, *, hosts: str, trust_store: str, subject: str = DEFAULT_CERT_SUBJECT, allow_http: bool = False
    ) -> CertPolicy:
        return cls(_parse_hosts(hosts), load_trust_store(trust_store), subject.strip().lower(), allow_http)

    @classmethod
    def from_settings(cls, settings: Settings) -> CertPolicy:
        """The policy for these settings; raises ValueError (TrustStoreError) when they are bad."""
        path = settings.paypal_trust_store or default_trust_store()
        try:  # a trust store rewritten in place (a new test CA) gets a new policy and an empty cache
            version = os.stat(path).st_mtime_ns
        except OSError:
            version = -1  # load_trust_store says what is wrong
        return _policy_for(
            settings.paypal_cert_hosts, path, version, settings.paypal_cert_subject, settings.is_dev
        )

    def forget(self) -> None:
        """Drop every cached key (tests, or after the trust store changed)."""
        self._cache.clear()


@functools.lru_cache(maxsize=8)
def _policy_for(hosts: str, trust_store: str, _version: int, subject: str, allow_http: bool) -> CertPolicy:
    return CertPolicy.build(hosts=hosts, trust_store=trust_store, subject=subject, allow_http=allow_http)


def check_cert_url(url: str, policy: CertPolicy) -> None:
    """Refuse a certificate URL that may not be fetched. Sends nothing."""
    if not url or len(url) > MAX_URL or not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookVerificationError("PAYPAL-CERT-URL is not a valid URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and policy.allow_http):
        raise WebhookVerificationError("PAYPAL-CERT-URL must be https")
    try:
        port = parts.port
    except ValueError:
        raise WebhookVerificationError("PAYPAL-CERT-URL has a bad port") from None
    host = (parts.hostname or "").rstrip(".")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise WebhookVerificationError("PAYPAL-CERT-URL may not carry credentials, a query or a fragment")
    default = _DEFAULT_PORTS[scheme]
    allowed = (
        (host, port) in policy.hosts
        or ((host, None) in policy.hosts and port in (None, default))
        or (port is None and (host, default) in policy.hosts)
    )
    if not host or not allowed:
        raise WebhookVerificationError("PAYPAL-CERT-URL is not on an allowed certificate host")
    if not _CERT_PATH.match(parts.path):
        raise WebhookVerificationError("PAYPAL-CERT-URL is not a PayPal certificate path")


async def public_key(client: httpx2.AsyncClient, url: str, policy: CertPolicy, now: float) -> RSAPublicKey:
    """The verified RSA key of the certificate at ``url`` (checked with :func:`check_cert_url` first)."""
    check_cert_url(url, policy)
    cached = policy._cache.get(url)
    if cached is not None and now < cached.until:
        policy._cache.move_to_end(url)
        return cached.key
    task = policy._inflight.get(url)
    if task is None or task.done():
        task = asyncio.ensure_future(_fetch_and_verify(client, url, policy, now))
        policy._inflight[url] = task
        task.add_done_callback(lambda done: _settled(policy, url, done))
    # A waiter that gives up (its request timed out) does not cancel the fetch the others wait for.
    entry = await asyncio.shield(task)
    return entry.key


def _settled(policy: CertPolicy, url: str, task: asyncio.Task[_Cached]) -> None:
    if policy._inflight.get(url) is task:
        del policy._inflight[url]
    if task.cancelled() or task.exception() is not None:
        return
    policy._cache[url] = task.result()
    policy._cache.move_to_end(url)
    while len(policy._cache) > policy.cache_size:
        policy._cache.popitem(last=False)


async def _fetch_and_verify(client: httpx2.AsyncClient, url: str, policy: CertPolicy, now: float) -> _Cached:
    pem = await _fetch(client, url, policy)
    return verify_chain(pem, policy, now)


async def _fetch(client: httpx2.AsyncClient, url: str, policy: CertPolicy) -> bytes:
    policy.fetches += 1
    try:
        async with client.stream(
            "GET",
            url,
            headers={"Accept": "application/x-pem-file, text/plain, */*"},
            timeout=timeout_for(policy.fetch_timeout_seconds),
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                # Busy or down is no verdict on the delivery; any other answer is.
                busy = answered_not_now(response.status_code)
                error = WebhookVerificationUnavailable if busy else WebhookVerificationError
                raise error(f"the certificate host answered {response.status_code} for PAYPAL-CERT-URL")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_PEM_BYTES:
                raise WebhookVerificationError("the certificate at PAYPAL-CERT-URL is too large")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_PEM_BYTES:
                    raise WebhookVerificationError("the certificate at PAYPAL-CERT-URL is too large")
            return bytes(body)
    except httpx2.TimeoutException:
        raise WebhookVerificationUnavailable("the certificate host did not answer in time") from None
    except httpx2.HTTPError as exc:
        reason = type(exc).__name__
        raise WebhookVerificationUnavailable(
            f"the certificate host could not be reached ({reason})"
        ) from None


def answered_not_now(status: int) -> bool:
    """An answer that says "not now" (throttled or failing), not "no such certificate"."""
    return status == 429 or status >= 500


def _basic_constraints(_policy: object, _cert: x509.Certificate, ext: x509.BasicConstraints) -> None:
    if not ext.ca:
        raise ValueError("basicConstraints must say CA:true")


def _ca_key_usage(_policy: object, _cert: x509.Certificate, ext: x509.KeyUsage | None) -> None:
    if ext is not None and not ext.key_cert_sign:
        raise ValueError("keyUsage must allow keyCertSign")


def _extension_policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """WebPKI's rules, but (as OpenSSL's verification) a CA's basicConstraints need not be critical,
    a CA need not carry keyUsage (when it does, it must allow keyCertSign) and a leaf need not carry an
    authorityKeyIdentifier. basicConstraints CA:true stays required of every issuer, and every
    signature along the chain is still checked."""
    ca = (
        ExtensionPolicy.webpki_defaults_ca()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _basic_constraints)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
    )
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None
    )
    return ca, ee


def verify_chain(pem: bytes, policy: CertPolicy, now: float) -> _Cached:
    """Check a PEM bundle (leaf first) against the policy; the leaf's key and how long it may be kept."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise WebhookVerificationError("PAYPAL-CERT-URL did not serve a PEM certificate") from None
    if len(certs) > MAX_CHAIN:
        raise WebhookVerificationError("PAYPAL-CERT-URL served too many certificates")
    leaf, intermediates = certs[0], certs[1:]
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    if leaf.not_valid_after_utc <= moment:
        raise WebhookVerificationError("the PayPal certificate has expired")
    if leaf.not_valid_before_utc > moment:
        raise WebhookVerificationError("the PayPal certificate is not valid yet")
    if policy.subject not in _dns_names(leaf):
        raise WebhookVerificationError(f"the certificate is not issued to {policy.subject}")
    key = leaf.public_key()
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise WebhookVerificationError(f"the certificate's key is not RSA of at least {MIN_RSA_BITS} bits")
    ca_policy, ee_policy = _extension_policies()
    verifier = (
        PolicyBuilder()
        .store(policy._store)
        .time(moment)
        .max_chain_depth(MAX_CHAIN)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_server_verifier(x509.DNSName(policy.subject))
    )
    try:
        chain = verifier.verify(leaf, intermediates)
    except VerificationError:
        raise WebhookVerificationError("the certificate does not chain to a trusted authority") from None
    until = min(c.not_valid_after_utc.timestamp() for c in chain)
    return _Cached(key, min(until, now + CACHE_SECONDS))


def _dns_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName)}
