"""A greeting for a date-tied occasion is accepted only near that date (422 otherwise).

Through `POST /api/greetings` with the API's clock set (tests/test_greetings_api.py);
`memberbot greet` and the console call the same `scheduler.greetings` (the CLI's refusal
is in tests/test_greet_cli.py). Default window: 3 days either side.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.test_greetings_api import SH, _client, call, clock, operator, seed  # noqa: F401

NEWCOMER = "+8613900139000"


def noon(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 12, 0, tzinfo=SH)


async def _member(client, **fields) -> None:
    await operator(
        client,
        "/api/members",
        {"phone": NEWCOMER, "name": "王五", "store": "S001", "assistant": "A001", **fields},
    )


async def _greet(client, tokens, clock, when: datetime, occasion: str, note: str = ""):  # noqa: F811
    clock.at = when
    status, body, _ = await call(
        client, {"member": NEWCOMER, "occasion": occasion, "note": note}, tokens["A001"]
    )
    return status, body


@pytest.fixture
async def client(aiohttp_client, make_settings):
    return await _client(aiohttp_client, make_settings)


async def test_a_29_february_birthday_in_a_common_year(client, clock):  # noqa: F811
    tokens = await seed(client)
    await _member(client, birthday="1992-02-29")
    status, body = await _greet(client, tokens, clock, noon(2026, 12, 2), "birthday")
    assert status == 422, body
    assert body["field"] == "occasion" and body["rule"] == "not_near_occasion"
    assert "02-29" in body["error"] and "2026-12-02" in body["error"], body
    # Celebrated on 28 Feb in 2027: three days before is fine, four days after is not.
    assert (await _greet(client, tokens, clock, noon(2027, 2, 25), "birthday"))[0] == 202
    assert (await _greet(client, tokens, clock, noon(2027, 3, 3), "birthday"))[0] == 202
    assert (await _greet(client, tokens, clock, noon(2027, 3, 4), "birthday", "x"))[0] == 422


async def test_a_lunar_birthday(client, clock):  # noqa: F811
    tokens = await seed(client)
    await _member(client, birthday="08-15", birthday_calendar="lunar")  # 2026-09-25
    assert (await _greet(client, tokens, clock, noon(2026, 9, 27), "birthday"))[0] == 202
    status, body = await _greet(client, tokens, clock, noon(2026, 9, 29), "birthday", "x")
    assert status == 422 and "lunar birthday (08-15)" in body["error"], body


async def test_no_birthday_or_wedding_on_file_is_refused(client, clock):  # noqa: F811
    tokens = await seed(client)
    await _member(client)
    for occasion in ("birthday", "wedding_anniversary"):
        status, body = await _greet(client, tokens, clock, noon(2026, 12, 2), occasion)
        assert (status, body["field"]) == (422, "occasion"), body
        assert "on file" in body["error"], body


async def test_wedding_and_join_anniversaries(client, clock):  # noqa: F811
    tokens = await seed(client)
    await _member(client, wedding_anniversary="2020-12-04")
    assert (await _greet(client, tokens, clock, noon(2026, 12, 2), "wedding_anniversary"))[0] == 202
    status, body = await _greet(
        client, tokens, clock, noon(2026, 12, 10), "wedding_anniversary", "x"
    )
    assert status == 422 and "(12-04)" in body["error"], body
    # Joined today (the API's day of enrolment is the real day): no anniversary this year.
    status, body = await _greet(client, tokens, clock, noon(2026, 12, 2), "join_anniversary")
    assert status == 422 and "join anniversary" in body["error"], body


async def test_festivals_seasons_and_the_undated_occasions(client, clock):  # noqa: F811
    tokens = await seed(client)
    await _member(client)
    assert (await _greet(client, tokens, clock, noon(2026, 12, 30), "holiday"))[0] == 202  # 元旦
    status, body = await _greet(client, tokens, clock, noon(2026, 12, 2), "holiday")
    assert status == 422 and "festival" in body["error"], body
    assert (await _greet(client, tokens, clock, noon(2026, 11, 5), "seasonal"))[0] == 202  # 立冬
    status, body = await _greet(client, tokens, clock, noon(2026, 11, 20), "seasonal")
    assert status == 422 and "season" in body["error"], body
    for occasion in ("other", "dormant", "personal_greeting"):
        assert (await _greet(client, tokens, clock, noon(2026, 12, 2), occasion))[0] == 202


async def test_the_window_is_configurable(aiohttp_client, make_settings, clock):  # noqa: F811
    client = await _client(aiohttp_client, make_settings, greetings={"occasion_window_days": 0})
    tokens = await seed(client)
    await _member(client, birthday="12-02")
    assert (await _greet(client, tokens, clock, noon(2026, 12, 1), "birthday"))[0] == 422
    assert (await _greet(client, tokens, clock, noon(2026, 12, 2), "birthday"))[0] == 202
