"""A day as members write it, for `领卡 <day>` (card pickup).

`parse_day(text, today)` understands, in Chinese and English:

- 今天/今日/today, 明天/明日/tomorrow/tmr, 后天/後天/"day after tomorrow";
- a weekday: 周六, 星期六, 礼拜六, 周日/周天/星期天, sat, saturday, … — the next
  such day, today included; 下周六 / "next sat" — that weekday in next week
  (the Monday-to-Sunday week after the current one);
- a date: YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD, YYYY年M月D日, MM-DD, M/D, M.D,
  M月D日, M月D号. A date without a year is this year's, unless that was more than
  30 days ago — then it is next year's (in late December "01-05" means January).

- 大后天 (in three days); 这周六/本周六/这个周六 and "this sat"/"on saturday" (as 周六);
  下下周六 (the week after next); a day of the month alone: 12号, 12日, "the 12th"
  (this month's, else next month's when it has passed); month names: "dec 12",
  "12 december", "december 12th"; Chinese numerals in dates (十二月十二号, 周六);
- a time of day after the day is ignored (周六下午, 明天上午10点, "tomorrow afternoon",
  "sat at 3pm").

It returns None when the text is no day it knows (or no such date exists);
whether the day is acceptable (not past, not too far) is the caller's rule.

`day_phrase(text)` finds such a day inside a sentence ("我明天下午去店里拿卡" →
"明天下午"), for `bot.understand`.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_RELATIVE = {
    "今天": 0,
    "今日": 0,
    "今儿": 0,
    "today": 0,
    "明天": 1,
    "明日": 1,
    "明儿": 1,
    "tomorrow": 1,
    "tmr": 1,
    "后天": 2,
    "後天": 2,
    "day after tomorrow": 2,
    "the day after tomorrow": 2,
    "大后天": 3,
    "大後天": 3,
}
_ZH_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6}
_EN_WEEKDAY = {
    "mon": 0,
    "monday": 0,
    "tue": 1,
    "tues": 1,
    "tuesday": 1,
    "wed": 2,
    "wednesday": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "thursday": 3,
    "fri": 4,
    "friday": 4,
    "sat": 5,
    "saturday": 5,
    "sun": 6,
    "sunday": 6,
}
_ZH_WEEKDAY_RE = re.compile(
    r"^(下下个?|下个?|这个?|本)?(?:周|星期|礼拜|禮拜|週)([一二三四五六日天七])$"
)
_EN_WEEKDAY_RE = re.compile(r"^(next\s+|this\s+|on\s+|this\s+coming\s+|coming\s+)?([a-z]+)$")
_EN_MONTHS = {
    m: i + 1
    for i, names in enumerate((
        "jan january", "feb february", "mar march", "apr april", "may", "jun june",
        "jul july", "aug august", "sep sept september", "oct october", "nov november",
        "dec december",
    ))
    for m in names.split()
}  # fmt: skip
_EN_DATE = re.compile(
    r"^(?:on\s+)?(?:the\s+)?(?:([a-z]+)\s+([0-9]{1,2})(?:st|nd|rd|th)?"
    r"|([0-9]{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]+))$"
)
_MONTH_DAY = re.compile(r"^(?:on\s+)?(?:the\s+)?([0-9]{1,2})\s*(?:st|nd|rd|th|号|號|日)$")
_TIME_OF_DAY = re.compile(
    r"(?:上午|下午|中午|晚上|早上|傍晚|白天|晚些|早点|[0-9]{1,2}(?::[0-9]{2}|点半?钟?|點半?))+$"
    r"|(?:\s+(?:in\s+the\s+)?(?:morning|afternoon|evening|noon|at\s+noon|after\s+work|"
    r"(?:at\s+|around\s+)?[0-9]{1,2}(?::[0-9]{2})?\s*(?:am|pm|o'?clock)?))+$"
)
_CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}  # fmt: skip
_CN_NUMBER = re.compile(r"[一二三四五六七八九十]+(?=[月日号號])")
DAY_PHRASE = re.compile(
    r"大?后天|後天|今天|今日|今儿|明天|明日|明儿"
    r"|(?:下下个?|下个?|这个?|本)?(?:周|星期|礼拜|禮拜|週)[一二三四五六日天七]"
    r"|(?:[0-9]{4}\s*[-/.年]\s*)?[0-9一二三四五六七八九十]{1,3}\s*[-/.月]\s*[0-9一二三四五六七八九十]{1,3}\s*[日号號]?"
    r"|[0-9一二三四五六七八九十]{1,3}[号號日]"
    r"|\b(?:the\s+)?day\s+after\s+tomorrow\b|\btoday\b|\btomorrow\b|\btmr\b"
    r"|\b(?:next\s+|this\s+(?:coming\s+)?)?(?:mon|tues?|wed|thu(?:rs?)?|fri|sat|sun)(?:day|nesday|urday|sday)?\b"
    r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\s+[0-9]{1,2}(?:st|nd|rd|th)?\b"
    r"|\b[0-9]{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b"
    r"|\bthe\s+[0-9]{1,2}(?:st|nd|rd|th)\b"
)
_DAY_TIME = re.compile(_TIME_OF_DAY.pattern.replace("+$", "+"))
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


def _cn_number(text: str) -> str:
    """十二 → 12, 三十一 → 31, 五 → 5 (the numbers of a date)."""
    tens, _, ones = text.partition("十")
    if "十" not in text:
        return str(_CN_DIGITS.get(text, 0)) if len(text) == 1 else text
    return str((_CN_DIGITS.get(tens, 0) if tens else 1) * 10 + _CN_DIGITS.get(ones, 0))


def day_phrase(text: str) -> str | None:
    """The first day named in `text` (with a time of day right after it), or None."""
    m = DAY_PHRASE.search(text)
    if m is None:
        return None
    end = m.end()
    t = _DAY_TIME.match(text, end)
    return text[m.start() : t.end() if t else end].strip()


def parse_day(text: str, today: date) -> date | None:
    s = " ".join(text.casefold().split())
    s = _CN_NUMBER.sub(lambda m: _cn_number(m.group()), s)
    found = _parse(s, today)
    if found is None:
        bare = _TIME_OF_DAY.sub("", s).strip()
        if bare and bare != s:
            found = _parse(bare, today)
    return found


def _parse(s: str, today: date) -> date | None:
    if s in _RELATIVE:
        return today + timedelta(days=_RELATIVE[s])
    m = _ZH_WEEKDAY_RE.match(s.replace(" ", ""))
    if m:
        prefix = m.group(1) or ""
        day = _weekday(_ZH_WEEKDAY[m.group(2)], today, prefix.startswith("下"))
        return day + timedelta(days=7) if prefix.startswith("下下") else day
    m = _EN_WEEKDAY_RE.match(s)
    if m and m.group(2) in _EN_WEEKDAY:
        return _weekday(_EN_WEEKDAY[m.group(2)], today, (m.group(1) or "").startswith("next"))
    m = _EN_DATE.match(s)
    if m:
        month = _EN_MONTHS.get(m.group(1) or m.group(4) or "")
        if month is not None:
            return _this_or_next_year(today, month, int(m.group(2) or m.group(3)))
    m = _MONTH_DAY.match(s)
    if m:
        day = int(m.group(1))
        found = _make(today.year, today.month, day)
        if found is None or found < today:
            following = date(today.year, today.month, 28) + timedelta(days=4)
            found = _make(following.year, following.month, day)
        return found
    m = _FULL.match(s)
    if m:
        return _make(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = _SHORT.match(s)
    if m:
        return _this_or_next_year(today, int(m.group(1)), int(m.group(2)))
    return None


def _this_or_next_year(today: date, month: int, day: int) -> date | None:
    found = _make(today.year, month, day)
    if found is None and (month, day) == (2, 29):
        found = _make(today.year + 1, month, day)  # only next year may have it
    if found is not None and found < today - timedelta(days=_LOOKBACK_DAYS):
        found = _make(today.year + 1, month, day)
    return found
