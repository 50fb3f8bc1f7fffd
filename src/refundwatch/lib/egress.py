"""Where refundwatch may send requests that outside input points at (outgoing webhook endpoints).

An endpoint URL must be ``https`` (plain ``http`` too in demo and test mode), carry no credentials, and
its host must resolve only to public addresses: private, loopback, link-local and other special
addresses are refused unless ``REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS`` names the host or a network that
holds the address. The same check runs when the endpoint is registered and again before every send,
on the addresses the name resolves to then; the request then goes to the address that was checked
(:func:`resolve_target`), so a name that resolves elsewhere a moment later (DNS rebinding) changes
nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from refundwatch.lib.exceptions import ValidationFailed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[Address]]]

NOT_ALLOWED = "endpoint_not_allowed"
_PORTS = {"https": 443, "http": 80}
MAX_URL = 2048


class EndpointNotAllowed(ValidationFailed):
    """The URL or the address it leads to may not be sent to; the message says why (safe to show)."""

    code = NOT_ALLOWED


@dataclass(frozen=True, slots=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, raw: str) -> AllowList:
        """``127.0.0.1,10.0.0.0/8,hooks.internal``: addresses, networks or host names."""
        hosts: set[str] = set()
        networks: list[Network] = []
        for item in (part.strip().lower() for part in raw.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                hosts.add(item.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, address: Address) -> bool:
        return any(address in network for network in self.networks)


# IPv6 forms that carry an IPv4 address a translator or tunnel delivers to: each must carry a public one
# (``[64:ff9b::7f00:1]`` reaches 127.0.0.1 through a NAT64 gateway).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local use, never public
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    """A globally routable unicast address. An IPv6 address that carries an IPv4 one (mapped, 6to4,
    NAT64, IPv4-compatible) is public only if that IPv4 address is too."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        address = _carried_ipv4(address) or address
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: the URL as registered, and the checked address it connects to."""

    url: str
    scheme: str
    host: str
    port: int
    address: Address | None  # None: the host is allow-listed by name, connected as resolved

    def connect_url(self) -> str:
        """The URL with the checked address in place of the host name (Host header and TLS name
        stay the host's: :func:`request_extras`)."""
        if self.address is None:
            return self.url
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return parts._replace(netloc=f"{host}:{self.port}").geturl()

    def request_extras(self) -> tuple[dict[str, str], dict[str, object]]:
        """(headers, httpx extensions) that keep the host's name on a request sent to its address."""
        if self.address is None:
            return {}, {}
        default = _PORTS[self.scheme] == self.port
        host = self.host if default else f"{self.host}:{self.port}"
        extensions: dict[str, object] = {"sni_hostname": self.host} if self.scheme == "https" else {}
        return {"Host": host}, extensions


def check_url(url: str, *, allow_http: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable endpoint URL; :class:`EndpointNotAllowed` otherwise."""
    if not url or len(url) > MAX_URL or not url.isascii() or not url.isprintable() or " " in url:
        raise EndpointNotAllowed(f"the URL must be a plain URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EndpointNotAllowed("the URL cannot be read") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise EndpointNotAllowed(
            "the URL must be https" if not allow_http else "the URL must be http or https"
        )
    if port == 0:
        raise EndpointNotAllowed("the URL's port must be 1 to 65535")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise EndpointNotAllowed("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointNotAllowed("the URL must not carry credentials")
    if parts.fragment:
        raise EndpointNotAllowed("the URL must not carry a fragment")
    return parts.scheme, host.lower(), port if port is not None else _PORTS[parts.scheme]


async def system_resolver(host: str, port: int) -> list[Address]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])  # no IPv6 zone id
        if address not in found:
            found.append(address)
    return found


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve_target(
    url: str, allow: AllowList, *, allow_http: bool, resolver: Resolver = system_resolver
) -> Target:
    """The checked target of ``url``: every address its host resolves to must be public or
    allow-listed (one that is not refuses the whole name: a mix is how rebinding looks), and the
    request goes to the first of them. A host allow-listed by name is connected as it resolves."""
    scheme, host, port = check_url(url, allow_http=allow_http)
    if host in allow.hosts:
        return Target(url, scheme, host, port, None)
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await resolver(host, port)
        except (OSError, UnicodeError):
            raise EndpointNotAllowed(f"{host} does not resolve") from None
        if not addresses:
            raise EndpointNotAllowed(f"{host} does not resolve")
    for address in addresses:
        if not is_public(address) and not allow.allows(address):
            raise EndpointNotAllowed(
                f"{host} is {address}, a private, loopback or link-local address: add it to "
                "REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS to allow it"
            )
    return Target(url, scheme, host, port, None if literal is not None else addresses[0])
