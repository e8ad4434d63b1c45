"""Loyalty rules: the store documents' rules as typed configuration (DOMAIN.md §2-5, §8).

These models are part of the domain: the points, tier, reward and ownership
functions receive them as arguments. `models.settings.Settings` embeds them under the
`[points]`, `[tiers]`, `[rewards]` and `[ownership]` sections of the TOML file.
Every default here is the default DOMAIN.md names.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_MMDD = re.compile(r"^(\d{2})-(\d{2})$")
_DATE_OR_MMDD = re.compile(r"^(\d{4}-)?\d{2}-\d{2}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_mmdd(value: str) -> str:
    m = _MMDD.match(value)
    if not m or not (1 <= int(m.group(1)) <= 12 and 1 <= int(m.group(2)) <= 31):
        raise ValueError("expected MM-DD")
    return value


class ExpiryRules(_Strict):
    """When earned points expire. Each earning is a lot with its own expiry date.

    - ``never``: points never expire.
    - ``calendar_year``: everything earned in a year expires on 31 December of it.
    - ``period``: an annual period starting on ``period_start`` (e.g. ``08-01`` for
      1 Aug - 31 Jul); points expire on the last day of the period they were earned in.
    - ``months``: each lot expires ``months`` calendar months after it was earned.
    """

    policy: Literal["never", "calendar_year", "period", "months"] = "never"
    period_start: str = "08-01"
    months: Annotated[int, Field(ge=1, le=120)] = 24

    @field_validator("period_start")
    @classmethod
    def _start(cls, v: str) -> str:
        return _check_mmdd(v)


class RebateRules(_Strict):
    """004's annual rebate: on `day` the daily job turns each member's whole balance into
    a voucher worth ``balance × rate`` yuan and clears the points (`models.rebate`)."""

    enabled: bool = False
    day: str = "08-01"
    """MM-DD: the first day of the new period (before that day's expiry runs)."""
    rate: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.01")
    """Yuan of voucher value per point (004: 1 %)."""
    valid_days: Annotated[int, Field(ge=1, le=3660)] = 90

    @field_validator("day")
    @classmethod
    def _day(cls, v: str) -> str:
        return _check_mmdd(v)


class PointsRules(_Strict):
    rate: Annotated[Decimal, Field(gt=0)] = Decimal("1")
    """Points per yuan paid (DOMAIN.md §2: 1 point per yuan)."""
    referral_share: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.30")
    """Share of a new member's first purchase credited to the referrer."""
    visit_points: Annotated[int, Field(ge=0)] = 10
    """Points for a visit after an assistant's invitation, recorded by staff."""
    birthday_multiplier: dict[str, Annotated[Decimal, Field(ge=1)]] = Field(
        default_factory=lambda: {"gold": Decimal("2"), "diamond": Decimal("2")}
    )
    """Multiplier on purchases made on the member's birthday, by tier code (absent = 1)."""
    multipliers: dict[str, Annotated[Decimal, Field(ge=0)]] = Field(default_factory=dict)
    """Brand or category multipliers, keyed by an item's brand or category."""
    max_multiplier: Annotated[Decimal, Field(ge=1)] = Decimal("5")
    """Ceiling for any brand/category multiplier (the store's contract rate)."""
    double_points_days: list[str] = Field(default_factory=list)
    """Days that earn `double_points_multiplier`: `YYYY-MM-DD` once, `MM-DD` every year."""
    double_points_multiplier: Annotated[Decimal, Field(ge=1)] = Decimal("2")
    expiry: ExpiryRules = Field(default_factory=ExpiryRules)
    rebate: RebateRules = Field(default_factory=RebateRules)

    @field_validator("double_points_days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        for d in v:
            if not _DATE_OR_MMDD.match(d):
                raise ValueError(f"{d!r}: expected YYYY-MM-DD or MM-DD")
        return v


Measure = Literal["points", "spend"]
Window = Literal["single_purchase", "day", "month", "half_year", "period", "cumulative", "validity"]


class TierRule(_Strict):
    """One way to reach (or keep) a tier: `measure` summed over `window` >= `threshold`.

    - ``points``: points earned by purchases (birthday bonus included), ``spend``: yuan paid.
    - windows: ``single_purchase`` (one receipt), ``day`` (the purchase's day),
      ``month`` (its calendar month), ``half_year`` (the 6 calendar months ending on
      that day), ``period`` (the annual tier period, see `TierRules.period_start`),
      ``cumulative`` (since joining), ``validity`` (renew rules only: the tier's
      validity that just ended).

    For a reach rule the window is anchored on the purchase's brand day; for a renew
    rule on the last day of the validity under review (`models.tiers`).
    """

    measure: Measure
    window: Window
    threshold: Annotated[Decimal, Field(gt=0)]


class TierLevel(_Strict):
    code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]
    name: str
    name_en: str = ""
    discount: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("1")
    """Price factor for information (0.9 = 10 % off)."""
    reach: list[TierRule] = Field(default_factory=list)
    """Any one rule met makes a member eligible. The first level needs none."""
    requires_card: bool = False
    """A physical card is made for this tier: reaching it opens a card application."""
    apply: Literal["auto", "manual"] = "auto"
    """auto: eligibility opens the card application at once; manual: staff apply
    (the member is listed as eligible-but-not-applied until they do)."""
    effective: Literal["on_eligible", "on_approval", "on_review"] = "on_eligible"
    """When the member's tier changes: at once, when head office approves the card, or at
    the next tier review of the annual period (`TierRules.period_start`, 004's August
    review: reaching the level marks the member eligible; the tier changes, and its card
    application opens, on the period's first day — `models.tiers.review.review_upgrades`)."""
    valid_months: Annotated[int, Field(ge=1, le=120)] | None = None
    """How long the tier holds before review; None = it never lapses."""
    renew: list[TierRule] = Field(default_factory=list)
    """At review, any rule met over the elapsed validity renews the tier; else one step down."""


class TierRules(_Strict):
    scheme: str = "A"
    stepwise: bool = True
    """Upgrades go one level per evaluation (Scheme A: gold and diamond cannot be issued
    directly; see `models.tiers`)."""
    period_start: str = "01-01"
    """Start of the annual tier period for `period` windows (MM-DD)."""
    levels: list[TierLevel] = Field(
        default_factory=lambda: [
            TierLevel(code="points", name="普卡", name_en="Points card", discount=Decimal("0.95")),
            TierLevel(
                code="gold",
                name="金卡",
                name_en="Gold card",
                discount=Decimal("0.90"),
                reach=[TierRule(measure="points", window="half_year", threshold=Decimal(3000))],
                requires_card=True,
            ),
            TierLevel(
                code="diamond",
                name="钻石卡",
                name_en="Diamond card",
                discount=Decimal("0.85"),
                reach=[TierRule(measure="points", window="half_year", threshold=Decimal(8000))],
                requires_card=True,
            ),
        ]
    )

    @field_validator("period_start")
    @classmethod
    def _start(cls, v: str) -> str:
        return _check_mmdd(v)

    @model_validator(mode="after")
    def _check_levels(self) -> TierRules:
        if not self.levels:
            raise ValueError("levels: at least one tier level is required")
        codes = [lv.code for lv in self.levels]
        if len(set(codes)) != len(codes):
            raise ValueError("levels: tier codes must be unique")
        if self.levels[0].reach:
            raise ValueError("levels: the first (entry) level takes no reach rules")
        if self.levels[0].valid_months is not None:
            raise ValueError("levels: the first (entry) level never lapses (no valid_months)")
        for lv in self.levels[1:]:
            if not lv.reach:
                raise ValueError(f"levels: tier {lv.code!r} needs at least one reach rule")
        for lv in self.levels:
            if any(r.window == "validity" for r in lv.reach):
                raise ValueError(
                    f"levels: tier {lv.code!r}: the validity window is for renew rules only"
                )
            if lv.effective == "on_approval" and not lv.requires_card:
                raise ValueError(
                    f"levels: tier {lv.code!r}: effective = on_approval needs requires_card = true"
                )
            if lv.renew and lv.valid_months is None:
                raise ValueError(f"levels: tier {lv.code!r}: renew rules need valid_months")
        return self

    def find(self, code: str | None) -> TierLevel | None:
        """The level with this code, or None (unlike `level`, no fallback to the entry)."""
        return next((lv for lv in self.levels if lv.code == code), None)

    @property
    def entry(self) -> TierLevel:
        return self.levels[0]

    def index(self, code: str | None) -> int:
        for i, lv in enumerate(self.levels):
            if lv.code == code:
                return i
        return 0

    def level(self, code: str | None) -> TierLevel:
        return self.levels[self.index(code)]


class Reward(_Strict):
    code: Annotated[str, Field(min_length=1, max_length=32)]
    name: str
    name_en: str = ""
    cost: Annotated[int, Field(gt=0)]
    """Points deducted."""
    voucher_value: Annotated[Decimal, Field(gt=0, decimal_places=2)]
    """Yuan value of the voucher issued."""
    valid_days: Annotated[int, Field(ge=1, le=3660)] = 90


class AutoVoucher(_Strict):
    """000's way: a voucher issued by itself when a year's points reach the threshold."""

    enabled: bool = False
    """Off by default: members redeem by message (兑换). A store that runs 000's way
    turns it on (`models.auto_vouchers`)."""
    reward: Annotated[str, Field(min_length=1, max_length=32)] = "v300"
    """The catalogue reward issued (its cost is deducted, its voucher issued)."""
    threshold: Annotated[int, Field(gt=0)] = 3000
    """Purchase points earned within the 365 days ending on the sale's day (returns
    netted, points already turned into automatic vouchers in that window not counted)."""


class RewardRules(_Strict):
    auto: AutoVoucher = Field(default_factory=AutoVoucher)
    catalogue: list[Reward] = Field(
        default_factory=lambda: [
            Reward(
                code="v300",
                name="300元代金券",
                name_en="300-yuan voucher",
                cost=3000,
                voucher_value=Decimal("300"),
            )
        ]
    )

    @model_validator(mode="after")
    def _unique(self) -> RewardRules:
        codes = [r.code for r in self.catalogue]
        if len(set(codes)) != len(codes):
            raise ValueError("catalogue: reward codes must be unique")
        return self

    def by_code(self, code: str) -> Reward | None:
        return next((r for r in self.catalogue if r.code == code), None)

    @model_validator(mode="after")
    def _auto_reward(self) -> RewardRules:
        if self.auto.enabled and self.by_code(self.auto.reward) is None:
            raise ValueError(f"auto.reward: {self.auto.reward!r} is not in the catalogue")
        return self


class OwnershipRules(_Strict):
    probation_months: Annotated[int, Field(ge=1, le=24)] = 2
    """A new owner keeps a member only if the member buys within this many months."""


class LoyaltyRules(_Strict):
    points: PointsRules = Field(default_factory=PointsRules)
    tiers: TierRules = Field(default_factory=TierRules)
    rewards: RewardRules = Field(default_factory=RewardRules)
    ownership: OwnershipRules = Field(default_factory=OwnershipRules)
