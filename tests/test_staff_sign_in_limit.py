"""The staff console's sign-in limit (docs/staff-console.md "Signing in"): failures are
counted per client address and per assistant code, in the database, so a success
clears nobody else's count and replicas share it."""

from __future__ import annotations

import asyncio

import pytest

from bot.app import create_app
from models.db import transaction
from models.staff_auth import hash_password
from models.stores import create_or_update_assistant
from tests.test_staff_console import seed

PASSWORD = "correct horse 9"


@pytest.fixture
async def world(sessions, settings):
    world = await seed(sessions, settings)
    async with transaction(sessions) as s:
        await create_or_update_assistant(
            s, code="A001", name="王丽", store_code="S001", password_hash=hash_password(PASSWORD)
        )
    return world


def limited(make_settings, **staff):
    return make_settings(staff={"sign_in_window": 900, **staff})


async def attempt(client, secret: str, code: str = ""):
    return await client.post(
        "/staff/signin", data={"secret": secret, "code": code}, allow_redirects=False
    )


async def test_a_success_as_another_assistant_does_not_reset_the_count(
    aiohttp_client, make_settings, world
):
    """The issue's sequence: 9 wrong passwords for A001, one right sign-in as A002,
    repeat. The 11th wrong password for A001 is refused, and so is the right one."""
    settings = limited(make_settings, sign_in_attempts=20, sign_in_attempts_per_account=10)
    client = await aiohttp_client(create_app(settings))
    for _ in range(9):
        assert (await attempt(client, "wrong guess", "A001")).status == 401
    assert (await attempt(client, world.tokens["A002"])).status == 303
    assert (await attempt(client, "wrong guess", "A001")).status == 401  # the 10th
    resp = await attempt(client, "wrong guess", "A001")
    assert resp.status == 429
    assert "登录失败次数过多" in await resp.text()
    assert 0 < int(resp.headers["Retry-After"]) <= 900
    # The account is locked even for its own password ...
    resp = await attempt(client, PASSWORD, "A001")
    assert resp.status == 429
    assert "Set-Cookie" not in resp.headers
    # ... while another assistant may still sign in from this address (10 failures < 20).
    assert (await attempt(client, world.tokens["A002"])).status == 303


async def test_the_address_limit_holds_across_accounts_and_successes(
    aiohttp_client, make_settings, world
):
    settings = limited(make_settings, sign_in_attempts=5, sign_in_attempts_per_account=3)
    client = await aiohttp_client(create_app(settings))
    for code in ("A001", "A002", "X1", "X2"):
        assert (await attempt(client, "wrong guess", code)).status == 401
        assert (await attempt(client, world.tokens["A002"])).status == 303
    assert (await attempt(client, "wrong guess", "X3")).status == 401  # the 5th
    resp = await attempt(client, world.tokens["A002"])
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) > 0


async def test_two_replicas_on_one_database_share_the_count(aiohttp_client, make_settings, world):
    settings = limited(make_settings, sign_in_attempts=20, sign_in_attempts_per_account=3)
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))
    assert (await attempt(first, "wrong guess", "A001")).status == 401
    assert (await attempt(second, "wrong guess", "A001")).status == 401
    assert (await attempt(first, "wrong guess", "A001")).status == 401
    assert (await attempt(second, PASSWORD, "A001")).status == 429
    assert (await attempt(first, PASSWORD, "A001")).status == 429


async def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(
    aiohttp_client, make_settings, world
):
    settings = limited(make_settings, sign_in_attempts=20, sign_in_attempts_per_account=3)
    clients = [await aiohttp_client(create_app(settings)) for _ in range(2)]
    answers = await asyncio.gather(
        *(attempt(clients[i % 2], f"guess {i}", "A001") for i in range(8))
    )
    statuses = [r.status for r in answers]
    assert set(statuses) <= {401, 429}
    # Parallel attempts may refuse each other (never let more through): keep guessing
    # one at a time — the account gets exactly 3 checked guesses in all.
    checked = statuses.count(401)
    for i in range(4):
        resp = await attempt(clients[i % 2], f"late guess {i}", "A001")
        if resp.status == 429:
            break
        assert resp.status == 401
        checked += 1
    assert checked == 3
    assert (await attempt(clients[0], PASSWORD, "A001")).status == 429
