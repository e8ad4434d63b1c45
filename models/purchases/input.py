"""A purchase as the operator API and the CSV import receive it: `PurchaseIn` and its
`ItemIn` lines, validated (amounts in yuan with at most 2 decimals, ISO 8601 times,
phone numbers normalised)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from models.errors import InvalidInput
from models.phone import normalise_phone
from models.strict import ascii_int, plain_decimal
from models.types import CENT


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT)


MAX_YUAN = Decimal("100000000")
"""Largest amount accepted for one purchase or item (100 million yuan): anything
larger is a typo or an attack, and must be refused before it reaches the database."""
MAX_QTY = 100_000


def iso_datetime(value: Any) -> Any:
    """Accept a datetime or an ISO 8601 string only (no epoch numbers), years 2000-2100."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("expected an ISO 8601 date and time") from None
    if not isinstance(value, datetime):
        raise ValueError("expected an ISO 8601 date and time")
    if not 2000 <= value.year <= 2100:
        raise ValueError("date out of range (years 2000-2100)")
    return value


def whole_count(value: Any) -> Any:
    """A count: a number, or a string of the digits 0-9 (never `1_000`, `１０`, true)."""
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, str):
        number = ascii_int(value.strip(), max_digits=9)
        if number is None:
            raise ValueError("expected a whole number written with the digits 0-9")
        return number
    return value


Yuan = Annotated[
    Decimal,
    BeforeValidator(plain_decimal),
    Field(ge=0, le=MAX_YUAN, decimal_places=2, allow_inf_nan=False),
    AfterValidator(_cents),
]
PositiveYuan = Annotated[
    Decimal,
    BeforeValidator(plain_decimal),
    Field(gt=0, le=MAX_YUAN, decimal_places=2, allow_inf_nan=False),
    AfterValidator(_cents),
]


class ItemIn(BaseModel):
    """One line of a receipt."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: Annotated[str, Field(max_length=64)]
    name: Annotated[str, Field(max_length=200)]
    category: Annotated[str, Field(max_length=64)]
    brand: Annotated[str, Field(max_length=64)] = ""
    qty: Annotated[int, Field(ge=1, le=MAX_QTY), BeforeValidator(whole_count)] = 1
    amount: Yuan


def _phone(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return normalise_phone(value, field)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


class PurchaseIn(BaseModel):
    """A purchase as the operator API and the CSV import receive it (CONTRACT.md).

    `at` keeps what was given: a value without an offset is brand-local time and is
    made aware by `record_purchase`, which knows the brand's time zone.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    receipt_no: Annotated[str, Field(min_length=1, max_length=64)]
    card_no: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    phone: str | None = Field(default=None, validate_default=True)
    store: Annotated[str, Field(min_length=1, max_length=64)]
    assistant: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    amount: PositiveYuan
    at: Annotated[datetime, BeforeValidator(iso_datetime)]
    items: list[ItemIn] = Field(default_factory=list)
    referrer: str | None = None
    vouchers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=32)]], Field(max_length=20)
    ] = Field(default_factory=list)
    """Voucher codes used in this sale (`models.voucher_till`), in the same transaction."""

    @field_validator("phone")
    @classmethod
    def _phone_or_card(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or v == "":
            if not info.data.get("card_no"):
                raise ValueError("phone or card_no is required")
            return None
        return _phone(v, "phone")

    @field_validator("referrer")
    @classmethod
    def _referrer(cls, v: str | None) -> str | None:
        return _phone(v, "referrer") if v else None
