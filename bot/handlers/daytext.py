"""A day as members write it, for `领卡 <day>` (card pickup).

`parse_day(text, today)` understands, in Chinese and English:

- 今天/今日/today, 明天/明日/tomorrow/tmr, 后天/後天/"day after tomorrow";
- a weekday: 周六, 星期六, 礼拜六, 周日/周天/星期天, sat, saturday, … — the next
  such day, today included; 下周六 / "next sat" — that weekday in next week
  (the Monday-to-Sunday week after the current one);
- a date: YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD, YYYY年M月D日, MM-DD, M/D, M.D,
  M月D日, M月D号. A date without a year is this year's, unless that was more than
  30 days ago — then it is next year's (in late December "01-05" means January).

It returns None when the text is no day it knows (or no such date exists);
whether the day is acceptable (not past, not too far) is the caller's rule.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_RELATIVE = {
    "今天": 0, "今日": 0, "today": 0,
    "明天": 1, "明日": 1, "tomorrow": 1, "tmr": 1,
    "后天": 2, "後天": 2, "day after tomorrow": 2,
}
_ZH_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6}
_EN_WEEKDAY = {
    "mon": 0, "monday": 0, "tue": 1, "tues": 1, "tuesday": 1, "wed": 2, "wednesday": 2,
    "thu": 3, "thur": 3, "thurs": 3, "thursday": 3, "fri": 4, "friday": 4,
    "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}
_ZH_WEEKDAY_RE = re.compile(r"^(下个?)?(?:周|星期|礼拜|禮拜)([一二三四五六日天七])$")
_EN_WEEKDAY_RE = re.compile(r"^(next\s+)?([a-z]+)$")
_FULL = re.compile(r"^([0-9]{4})\s*[-/.年]\s*([0-9]{1,2})\s*[-/.月]\s*([0-9]{1,2})\s*[日号號]?$")
_SHORT = re.compile(r"^([0-9]{1,2})\s*[-/.月]\s*([0-9]{1,2})\s*[日号號]?$")
_LOOKBACK_DAYS = 30


def _weekday(target: int, today: date, next_week: bool) -> date:
    if next_week:
        monday_next = today + timedelta(days=7 - today.weekday())
        return monday_next + timedelta(days=target)
    return today + timedelta(days=(target - today.weekday()) % 7)


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_day(text: str, today: date) -> date | None:
    s = " ".join(text.casefold().split())
    if s in _RELATIVE:
        return today + timedelta(days=_RELATIVE[s])
    m = _ZH_WEEKDAY_RE.match(s.replace(" ", ""))
    if m:
        return _weekday(_ZH_WEEKDAY[m.group(2)], today, bool(m.group(1)))
    m = _EN_WEEKDAY_RE.match(s)
    if m and m.group(2) in _EN_WEEKDAY:
        return _weekday(_EN_WEEKDAY[m.group(2)], today, bool(m.group(1)))
    m = _FULL.match(s)
    if m:
        return _make(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = _SHORT.match(s)
    if m:
        month, day = int(m.group(1)), int(m.group(2))
        found = _make(today.year, month, day)
        if found is None and (month, day) == (2, 29):
            found = _make(today.year + 1, month, day)  # only next year may have it
        if found is not None and found < today - timedelta(days=_LOOKBACK_DAYS):
            found = _make(today.year + 1, month, day)
        return found
    return None
