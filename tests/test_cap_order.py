"""The weekly cap drops an assistant's extra greetings, never the member's own notices.

Explicit brand days; greetings go through `scheduler.greetings`
(what `POST /api/greetings`, `memberbot greet` and the console call), the planner
through `plan_day` + `save_plan` (the daily job).
"""

from __future__ import annotations

from datetime import date, timedelta

from scheduler import greetings
from scheduler.policy import apply_cap
from tests.test_planner import buy, local, member, of, plan_and_save, shop

SALE = date(2026, 5, 10)


async def _greet(sessions, settings, m, helper, day: date, note: str):
    async with sessions() as session, session.begin():
        row, created = await greetings.queue_greeting(
            session, settings=settings, assistant_id=helper.id, member_id=m.id,
            occasion="other", note=note, now=local(day, 11),
        )  # fmt: skip
        assert created
        return row.status, row.reason


async def test_two_personal_greetings_do_not_push_out_the_notices_and_care(sessions, make_settings):
    settings = make_settings(messaging={"weekly_cap": 3})
    async with sessions() as session, session.begin():
        store, helper = await shop(session)
        m = await member(session, store, helper, tier="gold")  # VIP: care_d7, not care_d10
        await buy(session, m, SALE)
    # On the day of the sale the assistant sends two personal greetings: both fit.
    assert await _greet(sessions, settings, m, helper, SALE, "谢谢您今天来店里") == ("queued", None)
    assert await _greet(sessions, settings, m, helper, SALE, "大衣改好了告诉您") == ("queued", None)
    got = {}
    for n in (2, 3, 7):
        day = SALE + timedelta(days=n - 1)
        got.update(
            {
                p.kind: (p.status, p.reason)
                for p in of(await plan_and_save(sessions, settings, day), m)
            }
        )
    assert got == {
        "points_notice": ("queued", None),
        "care_d3": ("queued", None),
        "care_d7": ("queued", None),
    }
    # The week is full now (two greetings, the notice and the day-3 care on day 3): a third
    # greeting is what the cap drops.
    third = await _greet(sessions, settings, m, helper, SALE + timedelta(days=2), "天冷加衣")
    assert third == ("suppressed", "capped")


class _M:
    def __init__(self, kind):
        self.kind = kind


def test_apply_cap_gives_personal_greetings_the_last_slots():
    extra, notice, care, birthday = (
        _M("personal_greeting"), _M("points_notice"), _M("care_d3"), _M("birthday"),
    )  # fmt: skip
    kept, capped = apply_cap([extra, care, notice, birthday], already_counted=0, cap=2)
    assert kept == [birthday, notice] and capped == [care, extra]
    kept, capped = apply_cap([extra], already_counted=2, cap=2)  # not exempt like a birthday
    assert kept == [] and capped == [extra]
