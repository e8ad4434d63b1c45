"""The client's address behind the load balancers (`server.trusted_proxies`).

A proxy appends the address it received a request from to `X-Forwarded-For`, so the
header reads client, proxy 1, …, and the last proxy is the direct peer. Anyone can
send the header, so it is believed only as far as trusted proxies wrote it: when the
direct peer is trusted, the addresses are read from the right and the first one that
is not a trusted proxy is the client. A peer that is not trusted is the client
itself, whatever it sent (a spoofed header cannot move a failed sign-in to someone
else's count). Every entry being a trusted proxy (a request from inside the proxies'
own network) gives the leftmost one; an entry that is not an address (only a client
writes such a thing) stops the walk at the trusted hop to its right.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import hdrs, web

from bot.appkeys import SETTINGS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[v6]" or "[v6]:port"
        text = text[1 : text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:a.b.c.d on a dual-stack socket
    return mapped or address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in n for n in networks)


def forwarded_client(peer: str | None, forwarded: list[str], trusted: tuple[str, ...]) -> str:
    """The client address for a request from `peer` carrying the `X-Forwarded-For`
    header values `forwarded`, with the `trusted` proxy networks."""
    networks = _networks(trusted)
    peer_address = _address(peer) if peer else None
    if peer_address is None or not networks or not _trusted(peer_address, networks):
        return peer or "unknown"
    hops = [hop for value in forwarded for hop in value.split(",")]
    client = peer_address
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, networks):
            break
    return str(client)


def client_address(request: web.Request) -> str:
    """The address of the client behind any trusted proxies (see the module)."""
    trusted = tuple(request.app[SETTINGS].server.trusted_proxies)
    if not trusted:
        return request.remote or "unknown"
    return forwarded_client(
        request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, []), trusted
    )
