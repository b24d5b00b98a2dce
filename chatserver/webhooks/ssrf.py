"""SSRF guard: which addresses a callback URL may reach, checked at create and at every delivery.

The host is judged exactly as the HTTP client will connect to it: yarl (which aiohttp uses) first
normalises it (IDNA/UTS 46: `①②⑦.0.0.1`, `１２７.０.０.１` and `127。0。0。1` all become
`127.0.0.1`), and a host still holding non-ASCII (or spaces, `%`, controls) after that is refused.
At create only the URL's text is judged (scheme, `localhost`, literal addresses in any spelling:
`127.1`, `0x7f.1`, `2130706433`, `[::ffff:127.0.0.1]`); hostnames are not looked up, so a name that
does not resolve yet is accepted. At delivery `GuardedResolver` resolves the name, refuses it when
any address is blocked, and hands aiohttp the validated addresses to connect to, so there is no
second lookup for DNS rebinding to exploit. `[webhooks] allowed_networks` lets listed CIDRs through.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Carrier-grade NAT is neither private nor global in Python's tables; name it explicitly.
_ALSO_BLOCKED = (ipaddress.ip_network("100.64.0.0/10"),)
# Hosts of digits, dots and hex that inet_aton reads as IPv4: 127.1, 0x7f.1, 0177.0.0.1, 2130706433.
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)
# What a host may hold once normalised: LDH labels (and `_`), or an IPv6 literal's hex and colons.
_HOST_CHARACTERS = re.compile(r"^[a-z0-9._:-]+$", re.IGNORECASE)
_LOCALHOST_ADDRESS = ipaddress.ip_address("127.0.0.1")


class BlockedAddress(OSError):
    """A callback URL's host is, or resolves to, an address outside the allowed ones."""


def connect_host(url: str) -> tuple[str, str] | None:
    """(scheme, host) as aiohttp will connect: yarl's parsing and IDNA/UTS 46 mapping; None when
    the URL is not absolute http(s) or its normalised host holds anything but ASCII letters,
    digits, `.`, `-`, `_` (and an IPv6 literal's `:`)."""
    try:
        parsed = URL(url)
        host = parsed.raw_host
    except (ValueError, UnicodeError):
        return None
    if parsed.scheme not in ("http", "https") or not host or not _HOST_CHARACTERS.match(host):
        return None
    return parsed.scheme, host


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling a resolver would accept; else None."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Global unicast only: not loopback, private, link-local, CGNAT, ULA, multicast, reserved..."""
    if ip.is_multicast or ip.is_reserved or not ip.is_global:
        return False
    return not any(ip in net for net in _ALSO_BLOCKED if net.version == ip.version)


# Said with every refusal: local development needs a receiver on loopback or a private network.
ALLOW_HINT = " (to allow one, list its network in [webhooks] allowed_networks, e.g. 127.0.0.0/8)"


class AddressPolicy:
    """Public addresses pass; blocked ones only when inside one of `allowed_networks`."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)

    def allows(self, ip: IPAddress) -> bool:
        inner = embedded_ipv4(ip)
        if inner is not None:
            # Judge the IPv4 address the packet really goes to.
            return self.allows(inner)
        if any(ip in net for net in self.allowed if net.version == ip.version):
            return True
        return is_public(ip)

    def check_host(self, host: str) -> str | None:
        """Why a URL host is refused without a lookup (localhost, blocked literal), or None."""
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            if self.allows(_LOCALHOST_ADDRESS):
                return None
            return f"must not point at localhost{ALLOW_HINT}"
        ip = literal_address(name)
        if ip is not None and not self.allows(ip):
            return f"must not point at a private or reserved address ({ip}){ALLOW_HINT}"
        return None

    def check_url(self, url: str) -> str | None:
        """Why a URL is refused before any lookup (scheme, host), or None."""
        target = connect_host(url)
        if target is None:
            return "must be an absolute http(s) URL with an ASCII or IDNA host"
        return self.check_host(target[1])


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` and refuses a name when any of its addresses is not allowed."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        reason = self.policy.check_host(host)
        if reason is not None:
            raise BlockedAddress(f"{host} {reason}")
        results = await self.inner.resolve(host, port, family)
        for result in results:
            ip = ipaddress.ip_address(result["host"].split("%", 1)[0])
            if not self.policy.allows(ip):
                raise BlockedAddress(f"{host} resolves to a blocked address ({ip})")
        return results

    async def close(self) -> None:
        await self.inner.close()
