"""`models.locale_format.local_name`: the one place a tier level's or reward's name is
chosen for a locale (the chat replies, the staff console and the planned messages)."""

from __future__ import annotations

import pytest

from models.locale_format import local_name
from models.rules import LoyaltyRules, Reward, TierLevel

GOLD = TierLevel(code="gold", name="金卡", name_en="Gold card")
NO_ENGLISH = TierLevel(code="silver", name="银卡")
VOUCHER = Reward(
    code="v300", name="300元代金券", name_en="300-yuan voucher", cost=3000, voucher_value=300
)
NO_ENGLISH_VOUCHER = Reward(code="v50", name="50元代金券", cost=500, voucher_value=50)


@pytest.mark.parametrize(
    ("thing", "locale", "expected"),
    [
        (GOLD, "zh_CN", "金卡"),
        (GOLD, "en", "Gold card"),
        (NO_ENGLISH, "en", "银卡"),  # no English name: the Chinese one
        (NO_ENGLISH, "zh_CN", "银卡"),
        (VOUCHER, "en", "300-yuan voucher"),
        (VOUCHER, "zh_CN", "300元代金券"),
        (NO_ENGLISH_VOUCHER, "en", "50元代金券"),
    ],
)
def test_local_name(thing, locale, expected):
    assert local_name(thing, locale) == expected


def test_the_default_rules_name_every_tier_and_reward_in_both_locales():
    rules = LoyaltyRules()
    for thing in (*rules.tiers.levels, *rules.rewards.catalogue):
        assert local_name(thing, "zh_CN") == thing.name
        assert local_name(thing, "en") == thing.name_en
