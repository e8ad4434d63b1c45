"""The arguments of a sentence, written as the keyword form's argument string.

- a reward (`reward_args`): by its number ("换第一个", "redeem number 2", "换1"),
  by its value ("300的券", "300元代金券", "a 300 yuan voucher", "¥300"), by its
  cost in points ("用3000分换") or by its name (the catalogue's names, zh and en)
  → "1"; a value or cost no reward has → "" (the list);
- a pickup day (`bot.handlers.daytext.day_phrase`) → the day phrase itself;
- a phone number for binding (`phone_args`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.router import item_number
from models.rules import Reward

_ORDINAL = re.compile(
    r"第\s*([0-9一二两三四五六七八九十]+)\s*(?:个|种|项|档|样)?"
    r"|([0-9一二两三四五六七八九十]+)\s*号(?:礼品|奖品)?"
    r"|(?:number|no|#|item|option)\s*([0-9]+)|\b(first|second|third|fourth|fifth)\b"
    r"|^(?:兑换|换|redeem)\s*([0-9]+)$|(?:兑换|换|redeem)\s*([0-9]{1,2})(?![0-9]|\s*(?:元|块|的|分"
    r"|积分|points"
    r"|yuan|rmb))"
)
_EN_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5}
_VALUE = re.compile(
    r"([0-9]+)\s*(?:元|块钱?|rmb|yuan|块的|元的|的)\s*(?:代金|优惠)?券?"
    r"|([0-9]+)\s*(?:代金|优惠)?券|¥\s*([0-9]+)|([0-9]+)\s*(?:yuan |rmb |dollar )?(?:vouchers"
    r"|coupon)"
)
_COST = re.compile(r"([0-9]+)\s*(?:分|积分|points)")
_PHONE = re.compile(r"(?:\+?86[\s-]?)?1[3-9][0-9](?:[\s-]?[0-9]{4}){2}")


def reward_args(text: str, zh: str, catalogue: Sequence[Reward]) -> str:
    """The argument string of `兑换` for this sentence ("" = show the list)."""
    m = _ORDINAL.search(text)
    if m:
        word = next(g for g in m.groups() if g)
        number = _EN_ORDINALS.get(word) or item_number(word)
        if number:
            return str(number)
    for reward_index, reward in enumerate(catalogue, start=1):
        names = {n.casefold() for n in (reward.name, reward.name_en) if n}
        if any(n and (n in text or n.replace(" ", "") in zh) for n in names):
            return str(reward_index)
    m = _VALUE.search(text)
    if m:
        value = int(next(g for g in m.groups() if g))
        return _index(catalogue, lambda r: r.voucher_value == value)
    m = _COST.search(text)
    if m:
        cost = int(m.group(1))
        found = _index(catalogue, lambda r: r.cost == cost)
        if found:
            return found
    return ""


def _index(catalogue: Sequence[Reward], ok) -> str:
    for n, reward in enumerate(catalogue, start=1):
        if ok(reward):
            return str(n)
    return ""


def phone_args(text: str) -> str:
    m = _PHONE.search(text)
    return re.sub(r"[\s-]", "", m.group()) if m else ""
