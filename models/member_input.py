"""The member JSON as the API and the CSV import receive it (`MemberIn`), validated,
and the day helpers of birthdays and anniversaries (`parse_day`, `check_day`,
`format_day`). The rules are described in `models.members`."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.errors import InvalidInput
from models.phone import normalise_phone

_DAY = re.compile(r"^(?:([0-9]{4})-)?([0-9]{2})-([0-9]{2})$")
_CONTACT = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
_GENDERS = {"M": "M", "F": "F", "m": "M", "f": "F", "男": "M", "女": "F"}

Code = Annotated[str, Field(min_length=1, max_length=64)]
Calendar = Literal["solar", "lunar"]


def parse_day(value: str) -> tuple[int | None, int, int]:
    """'05-20' → (None, 5, 20); '1990-05-20' → (1990, 5, 20). Format only."""
    m = _DAY.match(value)
    if not m:
        raise ValueError("expected MM-DD or YYYY-MM-DD")
    return (int(m.group(1)) if m.group(1) else None), int(m.group(2)), int(m.group(3))


def check_day(year: int | None, month: int, day: int, calendar: str) -> None:
    """Raise ValueError unless (year, month, day) is a possible date in `calendar`."""
    if year is not None and year < 1900:
        raise ValueError("year before 1900")
    if calendar == "lunar":
        if not (1 <= month <= 12 and 1 <= day <= 30):
            raise ValueError("a lunar date has month 1-12 and day 1-30")
        return
    try:
        date(year or 2000, month, day)  # 2000 is a leap year: 02-29 is a valid birthday
    except ValueError:
        raise ValueError("no such date") from None


def format_day(year: int | None, month: int | None, day: int | None) -> str | None:
    if month is None or day is None:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}"


class MemberIn(BaseModel):
    """The member JSON of CONTRACT.md (plus `address`, `locale`, `birthday_leap_month`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str
    name: Annotated[str, Field(max_length=100)] | None = None
    gender: Literal["M", "F"] | None = None
    birthday_calendar: Calendar | None = None
    """None: not given (a new member's birthday is solar; an update keeps the one on file).
    Declared before `birthday` so that the birthday validator can see it."""
    birthday_leap_month: StrictBool = False
    birthday: str | None = None
    wedding_anniversary: str | None = None
    store: Code | None = None
    assistant: Code | None = None
    card_no: Code | None = None
    preferred_contact: str | None = None
    wechat_openid: Code | None = None
    address: Annotated[str, Field(max_length=300)] | None = None
    locale: Literal["zh_CN", "en"] | None = None
    join_date: date | None = None
    """`YYYY-MM-DD`; a new member's default is the day it is created (`upsert_member`
    refuses a day in the future). Anniversaries of joining count from it."""

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str) -> str:
        try:
            return normalise_phone(v)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("gender", mode="before")
    @classmethod
    def _gender(cls, v: Any) -> Any:
        return _GENDERS.get(v.strip(), v) if isinstance(v, str) else v

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None:
            year, month, day = parse_day(v)
            calendar = info.data.get("birthday_calendar")
            if calendar is not None:
                check_day(year, month, day, calendar)
            else:  # possible in one calendar at least; `upsert_member` settles which
                try:
                    check_day(year, month, day, "solar")
                except ValueError:
                    check_day(year, month, day, "lunar")
        return v

    @field_validator("wedding_anniversary")
    @classmethod
    def _wedding(cls, v: str | None) -> str | None:
        if v is not None:
            check_day(*parse_day(v), "solar")
        return v

    @field_validator("join_date", mode="before")
    @classmethod
    def _join_date(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, str) or not _DAY.match(v) or _DAY.match(v).group(1) is None:
            raise ValueError("expected YYYY-MM-DD")
        year, month, day = parse_day(v)
        check_day(year, month, day, "solar")
        return date(year, month, day)

    @field_validator("preferred_contact")
    @classmethod
    def _contact(cls, v: str | None) -> str | None:
        if v is not None and not _CONTACT.match(v):
            raise ValueError("expected HH:MM-HH:MM")
        return v

    @field_validator(
        "store", "assistant", "name", "birthday_calendar", "birthday_leap_month", "join_date"
    )
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("may be changed but not cleared")
        return v
