"""scheduler.policy: quiet hours, channel choice and the weekly cap (pure, explicit dates)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler import policy
from scheduler.policy import (
    ChannelChoice,
    Suppressed,
    WeChatIdentityInfo,
    apply_cap,
    choose_channel,
    next_allowed,
    parse_window,
    send_after,
)

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
DAY = date(2026, 11, 7)


def sh(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SH)


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("text", "intervals"),
    [
        ("09:00-21:00", ((540, 1260),)),
        ("09:00-24:00", ((540, 1440),)),
        ("00:00-24:00", ((0, 1440),)),
        ("21:00-02:00", ((0, 120), (1260, 1440))),
        ("22:00-00:00", ((1320, 1440),)),
        ("08:00-08:00", ((0, 1440),)),
        (" 9:30 - 11:00 ", ((570, 660),)),
        ("", None),
        (None, None),
        ("evening", None),
        ("25:00-26:00", None),
        ("09:60-10:00", None),
        ("24:30-10:00", None),
    ],
)
def test_parse_window(text, intervals):
    assert parse_window(text) == intervals


def test_send_after_is_the_window_start_in_brand_time():
    at = send_after(DAY, tz=SH, send_window="09:00-21:00", preferred_contact=None)
    assert at == sh(DAY, 9)
    assert at.tzinfo is UTC and at == datetime(2026, 11, 7, 1, 0, tzinfo=UTC)


def test_preferred_contact_window_moves_the_send_time():
    at = send_after(DAY, tz=SH, send_window="09:00-21:00", preferred_contact="19:00-21:00")
    assert at == sh(DAY, 19)


def test_preferred_window_partly_outside_the_send_window_is_clipped():
    at = send_after(DAY, tz=SH, send_window="09:00-21:00", preferred_contact="07:30-10:00")
    assert at == sh(DAY, 9)
    at = send_after(DAY, tz=SH, send_window="09:00-21:00", preferred_contact="20:30-23:00")
    assert at == sh(DAY, 20, 30)


def test_preferred_window_outside_the_send_window_is_ignored():
    at = send_after(DAY, tz=SH, send_window="09:00-21:00", preferred_contact="06:00-08:00")
    assert at == sh(DAY, 9)


def test_malformed_preferred_window_is_ignored():
    at = send_after(DAY, tz=SH, send_window="09:00-21:00", preferred_contact="evenings")
    assert at == sh(DAY, 9)


def test_send_window_wrapping_midnight_stays_on_the_day():
    # 20:00-02:00: on the 7th the allowed minutes are 00:00-02:00 and 20:00-24:00.
    assert send_after(DAY, tz=SH, send_window="20:00-02:00", preferred_contact=None) == sh(DAY, 0)
    at = send_after(DAY, tz=SH, send_window="20:00-02:00", preferred_contact="21:00-23:00")
    assert at == sh(DAY, 21)
    at = send_after(DAY, tz=SH, send_window="20:00-02:00", preferred_contact="23:00-01:00")
    assert at == sh(DAY, 0)  # 00:00-01:00 is allowed and comes first in the day


def test_send_after_in_a_dst_zone():
    spring_forward = date(2026, 3, 8)  # New York: 02:00 EST → 03:00 EDT
    at = send_after(spring_forward, tz=NY, send_window="09:00-21:00", preferred_contact=None)
    assert at == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)  # 09:00 EDT (UTC-4)
    at = send_after(date(2026, 3, 7), tz=NY, send_window="09:00-21:00", preferred_contact=None)
    assert at == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)  # 09:00 EST (UTC-5)


def test_bad_send_window_is_an_error():
    with pytest.raises(ValueError, match="send window"):
        send_after(DAY, tz=SH, send_window="whenever", preferred_contact=None)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (sh(DAY, 12), sh(DAY, 12)),
        (sh(DAY, 9), sh(DAY, 9)),
        (sh(DAY, 8, 59), sh(DAY, 9)),
        (sh(DAY, 20, 59), sh(DAY, 20, 59)),
        (sh(DAY, 21), sh(DAY + timedelta(days=1), 9)),
        (sh(DAY, 23, 30), sh(DAY + timedelta(days=1), 9)),
        (sh(DAY, 0, 0), sh(DAY, 9)),
    ],
)
def test_next_allowed_default_window(now, expected):
    got = next_allowed(now, tz=SH, send_window="09:00-21:00", preferred_contact=None)
    assert got == expected


def test_next_allowed_returns_now_unchanged_when_allowed():
    now = sh(DAY, 12, 34).astimezone(UTC) + timedelta(seconds=56)
    assert next_allowed(now, tz=SH, send_window="09:00-21:00", preferred_contact=None) is now


def test_next_allowed_with_a_preferred_window():
    kw = {"tz": SH, "send_window": "09:00-21:00", "preferred_contact": "19:00-21:00"}
    assert next_allowed(sh(DAY, 12), **kw) == sh(DAY, 19)
    assert next_allowed(sh(DAY, 19, 30), **kw) == sh(DAY, 19, 30)
    assert next_allowed(sh(DAY, 21), **kw) == sh(DAY + timedelta(days=1), 19)


def test_next_allowed_across_midnight():
    kw = {"tz": SH, "send_window": "21:00-02:00", "preferred_contact": None}
    assert next_allowed(sh(DAY, 8), **kw) == sh(DAY, 21)
    assert next_allowed(sh(DAY, 22), **kw) == sh(DAY, 22)
    assert next_allowed(sh(DAY, 1, 59), **kw) == sh(DAY, 1, 59)
    assert next_allowed(sh(DAY, 2), **kw) == sh(DAY, 21)


def test_window_ending_at_midnight():
    kw = {"tz": SH, "send_window": "09:00-24:00", "preferred_contact": None}
    assert next_allowed(sh(DAY, 23, 59), **kw) == sh(DAY, 23, 59)
    assert next_allowed(sh(DAY, 0), **kw) == sh(DAY, 9)


def test_next_allowed_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="naive"):
        next_allowed(
            datetime(2026, 11, 7, 12), tz=SH, send_window="09:00-21:00", preferred_contact=None
        )


# --------------------------------------------------------------------------- channels

AT = sh(DAY, 9)


def channel(kind="birthday", **kw):
    args = {
        "kind": kind,
        "member_stopped": False,
        "wechat": None,
        "phone": "+8613800138000",
        "phone_bad": False,
        "at": AT,
        "template_ids": {},
        "sms_provider": "twilio",
    }
    args.update(kw)
    return choose_channel(**args)


def wx(hours_ago: float | None = None, sent: int = 0, active: bool = True) -> WeChatIdentityInfo:
    last = AT - timedelta(hours=hours_ago) if hours_ago is not None else None
    return WeChatIdentityInfo("oOPENID", active, last, sent)


def test_stopped_member_is_suppressed_whatever_the_channels():
    got = channel(member_stopped=True, wechat=wx(1))
    assert got == Suppressed("stopped")


def test_customer_service_message_inside_the_48_hour_window():
    assert channel(wechat=wx(47.9)) == ChannelChoice("wechat", "customer_service", "oOPENID")
    assert channel(wechat=wx(0)) == ChannelChoice("wechat", "customer_service", "oOPENID")


def test_customer_service_window_closes_after_48_hours_or_5_messages():
    assert channel(wechat=wx(48)) == ChannelChoice("sms", "twilio", "+8613800138000")
    assert channel(wechat=wx(1, sent=4)).via == "customer_service"
    assert channel(wechat=wx(1, sent=5)) == ChannelChoice("sms", "twilio", "+8613800138000")


def test_window_not_yet_open_at_send_time_is_not_used():
    # The member's message arrives after the send time: it cannot open the window for it.
    assert channel(wechat=wx(-1)).channel == "sms"


def test_unfollowed_wechat_identity_is_not_used():
    assert channel(wechat=wx(1, active=False)).channel == "sms"
    ids = {"points_notice": "TMPL"}
    got = channel("points_notice", wechat=wx(None, active=False), template_ids=ids)
    assert got.channel == "sms"


def test_template_message_for_service_notices_with_a_template_id_only():
    ids = {"points_notice": "TMPL1"}
    got = channel("points_notice", wechat=wx(None), template_ids=ids)
    assert got == ChannelChoice("wechat", "template", "oOPENID")
    # no id for that notice, a care message, a greeting: never a template message
    assert channel("card_pickup", wechat=wx(None), template_ids=ids).channel == "sms"
    assert channel("care_d3", wechat=wx(None), template_ids=ids).channel == "sms"
    assert channel("birthday", wechat=wx(None), template_ids={"birthday": "X"}).channel == "sms"


def test_sms_via_console_when_the_provider_is_console():
    assert channel(sms_provider="console") == ChannelChoice("sms", "console", "+8613800138000")


def test_no_channel_when_the_number_is_bad_and_no_wechat_window():
    assert channel(phone_bad=True) == Suppressed("no_channel")
    assert channel(phone=None) == Suppressed("no_channel")
    assert channel(phone_bad=True, wechat=wx(72)) == Suppressed("no_channel")
    assert channel(phone_bad=True, wechat=wx(2)).via == "customer_service"


# --------------------------------------------------------------------------- weekly cap


@dataclass
class M:
    kind: str
    name: str = ""


def test_cap_keeps_greetings_then_service_notices_then_care():
    care, notice, greeting = M("care_d3"), M("points_notice"), M("birthday")
    kept, capped = apply_cap([care, notice, greeting], already_counted=0, cap=2)
    assert kept == [greeting, notice]
    assert capped == [care]


def test_cap_counts_messages_already_sent():
    kept, capped = apply_cap([M("care_d3"), M("care_d30")], already_counted=1, cap=2)
    assert [m.kind for m in kept] == ["care_d3"]
    assert [m.kind for m in capped] == ["care_d30"]


def test_greetings_on_the_day_are_never_dropped_but_count():
    greeting, notice = M("holiday"), M("points_notice")
    kept, capped = apply_cap([notice, greeting], already_counted=2, cap=2)
    assert kept == [greeting] and capped == [notice]
    kept, capped = apply_cap([M("birthday"), M("seasonal"), M("holiday")], 0, cap=0)
    assert len(kept) == 3 and capped == []
    kept, capped = apply_cap([M("birthday"), M("care_d3")], already_counted=1, cap=2)
    assert [m.kind for m in kept] == ["birthday"] and [m.kind for m in capped] == ["care_d3"]


def test_cap_keeps_the_given_order_within_a_class():
    a, b, c = M("care_d30", "a"), M("care_d3", "b"), M("care_d120", "c")
    kept, capped = apply_cap([a, b, c], already_counted=0, cap=2)
    assert kept == [a, b] and capped == [c]


def test_cap_priority_of_an_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown"):
        policy.cap_priority("newsletter")
