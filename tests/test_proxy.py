"""The client address behind the load balancers (`server.trusted_proxies`, bot/proxy.py):
X-Forwarded-For is believed only as far as trusted proxies wrote it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.app import create_app
from bot.proxy import forwarded_client
from models.settings import Settings
from tests.test_staff_sign_in_limit import attempt, world  # noqa: F401 (fixture)

LB = ("127.0.0.1", "10.0.0.0/24")


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        # no trusted proxies: the header is ignored
        ("203.0.113.9", ["198.51.100.1"], (), "203.0.113.9"),
        # an untrusted peer's header is ignored (spoofed)
        ("203.0.113.9", ["198.51.100.1"], LB, "203.0.113.9"),
        # through the load balancer: the address it appended
        ("127.0.0.1", ["198.51.100.7"], LB, "198.51.100.7"),
        # a client's own fake entries to the left of the proxy's are not believed
        ("127.0.0.1", ["6.6.6.6, 198.51.100.7"], LB, "198.51.100.7"),
        ("127.0.0.1", ["6.6.6.6", "198.51.100.7"], LB, "198.51.100.7"),
        # two trusted hops (an edge proxy at 10.0.0.5, then haproxy on loopback)
        ("127.0.0.1", ["6.6.6.6, 198.51.100.7, 10.0.0.5"], LB, "198.51.100.7"),
        # everything inside the trusted networks: the leftmost
        ("127.0.0.1", ["10.0.0.8, 10.0.0.5"], LB, "10.0.0.8"),
        # garbage written by the client stops the walk at the trusted hop to its right
        ("127.0.0.1", ["not-an-ip, 10.0.0.5"], LB, "10.0.0.5"),
        # no header from a trusted peer: the peer
        ("127.0.0.1", [], LB, "127.0.0.1"),
        # IPv6, bracketed, and an IPv4-mapped peer on a dual-stack socket
        ("::ffff:127.0.0.1", ["[2001:db8::1]"], LB, "2001:db8::1"),
        ("::1", ["2001:db8::2"], ("::1",), "2001:db8::2"),
    ],
)
def test_forwarded_client(peer, forwarded, trusted, client):
    assert forwarded_client(peer, forwarded, trusted) == client


def test_trusted_proxies_are_checked_and_normalised():
    settings = Settings(server={"trusted_proxies": ["10.0.0.1/24", "::1"]})
    assert settings.server.trusted_proxies == ["10.0.0.0/24", "::1/128"]
    with pytest.raises(ValidationError, match="not an IP address"):
        Settings(server={"trusted_proxies": ["proxy.internal"]})


def _limited(make_settings, trusted):
    return make_settings(
        server={"trusted_proxies": trusted},
        staff={"sign_in_window": 900, "sign_in_attempts": 2, "sign_in_attempts_per_account": 100},
    )


async def guess(client, forwarded_for: str):
    return await client.post(
        "/staff/signin",
        data={"secret": "wrong guess", "code": ""},
        headers={"X-Forwarded-For": forwarded_for},
        allow_redirects=False,
    )


async def test_behind_a_trusted_proxy_each_client_has_its_own_count(
    aiohttp_client,
    make_settings,
    world,  # noqa: F811
):
    client = await aiohttp_client(create_app(_limited(make_settings, ["127.0.0.1", "::1"])))
    for _ in range(2):
        assert (await guess(client, "198.51.100.1")).status == 401
    assert (await guess(client, "198.51.100.1")).status == 429
    # another customer behind the same load balancer is not locked out
    assert (await guess(client, "198.51.100.2")).status == 401


async def test_a_spoofed_header_from_an_untrusted_peer_is_ignored(
    aiohttp_client,
    make_settings,
    world,  # noqa: F811
):
    # The test client connects from loopback, which is not trusted here.
    client = await aiohttp_client(create_app(_limited(make_settings, ["10.9.9.9"])))
    assert (await guess(client, "198.51.100.1")).status == 401
    assert (await guess(client, "198.51.100.2")).status == 401
    # a fresh forged address does not give a fresh count: the peer's is full
    assert (await guess(client, "198.51.100.3")).status == 429
    assert (await attempt(client, "wrong guess")).status == 429
