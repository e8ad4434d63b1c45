"""Proactive message texts: one jinja2 template per kind and locale (templates are data).

    render_message("birthday", "zh_CN", member_name="王女士", store_name="静安店",
                   assistant_name="小李") -> str

reads ``bot/templates/messages/<locale>/<kind>.txt`` (plain text: autoescape
off, `StrictUndefined`, so a missing value fails loudly). Every template gets
``locale`` and ``stop_hint`` (`models.kinds.STOP_HINTS`, never passed by the
caller), and defaults for the optional values ``note`` ("") and ``years``
(None). The filters of the reply templates apply: ``money``, ``day``,
``short_day``, ``points`` (`scheduler.text.LOCALE_FILTERS`).

Variables per kind are listed in `KIND_FIELDS`; `sample_contexts` gives
representative values used by the lint (`scheduler.message_rules`). Values in
`DATA_FIELDS` come from the member's own record and are exempt from the word
rules (a bought "新款大衣" is not a new-arrival push).

Care tips (DOMAIN.md §6: day-3 and day-7 texts carry washing and care advice)
live in ``bot/templates/messages/care_tips.toml``: `care_category` maps a
purchase item's category to a table entry, `care_tips` returns its text.
"""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from models.kinds import GREETING_KINDS, GREETING_OCCASIONS, kind_spec, stop_hint
from scheduler.text import LOCALE_FILTERS, TEMPLATES, finish

MESSAGES_DIR = TEMPLATES / "messages"
CARE_TIPS_FILE = MESSAGES_DIR / "care_tips.toml"

# fmt: off
COMMON_FIELDS = ("member_name", "store_name", "assistant_name")
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "points_notice": (
        "purchase_date", "purchase_store", "items", "points", "cumulative_spend",
        "missing_for_reward", "reward_name",
    ),
    "card_pickup": ("tier_name", "pickup_store"),
    "card_pickup_again": ("tier_name", "pickup_store"),
    "card_mailed": ("tier_name",),
    "points_expiry": ("expiring_points", "expiry_date", "points"),
    "voucher_expiry": ("voucher_codes", "expiry_date"),
    "voucher_issued": ("voucher_codes", "expiry_date"),
    "care_d3": ("items", "care_tips"),
    "care_d7": ("items", "care_tips"),
    "care_d10": ("items",),
    "care_d30": (),
    "care_d120": (),
    "birthday": (),
    "wedding_anniversary": (),
    "join_anniversary": (),
    "holiday": ("festival", "festival_name"),
    "seasonal": ("season", "season_name"),
    "dormant": (),
    "personal_greeting": (),
}
"""Values each kind's template uses besides `COMMON_FIELDS` (and the optional ones).

`items` is a list of item names; `missing_for_reward` / `reward_name` may be
None (no next reward); `festival` is the festival code (`models.occasions`),
`season` one of spring / summer / autumn / winter."""

OPTIONAL_DEFAULTS: dict[str, Any] = {"note": "", "years": None, "occasion": ""}
"""`note`: an assistant's own words (greetings); `years`: anniversaries' count;
`occasion`: what a ``personal_greeting`` is for (`scheduler.greeting_checks.OCCASIONS`)."""

DATA_FIELDS = (
    "member_name", "store_name", "assistant_name", "purchase_store", "pickup_store",
    "items", "reward_name", "tier_name", "cumulative_spend",
)
"""Values taken from the member's record, not written by the brand: exempt from the word rules."""

# fmt: on


@cache
def _environment(root: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(root)),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(LOCALE_FILTERS)
    return env


def environment(template_dir: Path | None = None) -> Environment:
    """The jinja2 environment over `template_dir` (default bot/templates/messages), shared."""
    return _environment(Path(template_dir or MESSAGES_DIR).resolve())


def full_context(kind: str, locale: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """`ctx` plus the optional defaults, `locale`, `kind` and the locale's stop hint."""
    kind_spec(kind)
    return {
        **OPTIONAL_DEFAULTS,
        **ctx,
        "kind": kind,
        "locale": locale,
        "stop_hint": stop_hint(locale),
    }


def render_message(kind: str, locale: str, *, template_dir: Path | None = None, **ctx: Any) -> str:
    """The text of message `kind` in `locale` (unchecked: see `message_rules.render_checked`)."""
    values = full_context(kind, locale, ctx)
    template = environment(template_dir).get_template(f"{locale}/{kind}.txt")
    return finish(template.render(**values))


# --------------------------------------------------------------------------- care tips


@cache
def _care_table() -> dict[str, dict[str, Any]]:
    with CARE_TIPS_FILE.open("rb") as fh:
        return tomllib.load(fh)


def care_categories() -> tuple[str, ...]:
    """The care-tip categories, in matching order (materials before garments)."""
    return tuple(_care_table())


def care_category(raw: str | None) -> str:
    """The care-tip category of a purchase item's category or name; "other" when none fits.

    An exact category code wins; otherwise the first category (in file order)
    with an alias contained in `raw` ("真丝衬衫" → silk, "羊毛大衣" → wool).
    """
    text = (raw or "").strip().casefold()
    table = _care_table()
    if text in table:
        return text
    for code, entry in table.items():
        if any(alias.casefold() in text for alias in entry.get("aliases", ())):
            return code
    return "other"


def care_tips(category: str | None, locale: str) -> str:
    """The washing and care advice for `category` (resolved by `care_category`) in `locale`."""
    entry = _care_table()[care_category(category)]
    return entry["en" if locale == "en" else "zh"]


# --------------------------------------------------------------------------- samples

# fmt: off
_SAMPLE = {
    "zh_CN": {
        "member_name": "王女士", "store_name": "静安店", "assistant_name": "小李",
        "purchase_store": "静安店", "pickup_store": "静安店", "items": ["羊毛大衣", "针织衫"],
        "reward_name": "300元代金券", "tier_name": "金卡",
        "note": "上次您说想去海边走走，祝旅途愉快！",
    },
    "en": {
        "member_name": "Emma", "store_name": "Jing'an Store", "assistant_name": "Lily",
        "purchase_store": "Jing'an Store", "pickup_store": "Jing'an Store",
        "items": ["wool coat", "knit top"], "reward_name": "300-yuan voucher",
        "tier_name": "Gold card", "note": "Hope the trip to the seaside was lovely!",
    },
}
_SAMPLE_SHARED = {
    "purchase_date": date(2026, 11, 5), "points": 3200, "cumulative_spend": Decimal("4280"),
    "missing_for_reward": 800, "expiring_points": 1200, "expiry_date": date(2026, 12, 31),
    "voucher_codes": ["K7QW2M9XPR4T"],
    "years": 3,
}
_SAMPLE_FESTIVALS = (
    ("new_year", "元旦", "New Year's Day"), ("spring_festival", "春节", "Spring Festival"),
    ("lantern", "元宵节", "Lantern Festival"), ("dragon_boat", "端午节", "Dragon Boat Festival"),
    ("qixi", "七夕", "Qixi Festival"), ("mid_autumn", "中秋节", "Mid-Autumn Festival"),
    ("double_ninth", "重阳节", "Double Ninth Festival"), ("national_day", "国庆节", "National Day"),
    ("store_anniversary", "店庆", "Store anniversary"),
    ("valentine", "情人节", "Valentine's Day"),
)
_SAMPLE_SEASONS = (
    ("spring", "立春", "Start of Spring"), ("summer", "立夏", "Start of Summer"),
    ("autumn", "立秋", "Start of Autumn"), ("winter", "立冬", "Start of Winter"),
)

# fmt: on


def sample_contexts(kind: str, locale: str) -> list[dict[str, Any]]:
    """Representative values for `kind`, one dict per branch worth exercising (for the lint)."""
    base = {**_SAMPLE_SHARED, **_SAMPLE["en" if locale == "en" else "zh_CN"]}
    zh = locale != "en"
    spec = kind_spec(kind)
    if kind == "holiday":
        return [
            {**base, "festival": c, "festival_name": z if zh else e}
            for c, z, e in _SAMPLE_FESTIVALS
        ]
    if kind == "seasonal":
        return [{**base, "season": c, "season_name": z if zh else e} for c, z, e in _SAMPLE_SEASONS]
    if spec.care_tips:
        return [
            {**base, "items": [base["items"][0]], "care_tips": care_tips(cat, locale)}
            for cat in care_categories()
        ] + [{**base, "items": [], "care_tips": care_tips(None, locale)}]
    if kind == "points_notice":
        return [
            base,
            {**base, "missing_for_reward": 0},
            {**base, "missing_for_reward": None, "reward_name": None, "items": []},
        ]
    if kind == "personal_greeting":  # one wording per occasion (scheduler.greetings)
        return [
            {**base, "occasion": occasion, "note": note}
            for occasion in GREETING_OCCASIONS
            for note in (base["note"], "")
        ]
    if kind in GREETING_KINDS:
        return [base, {**base, "note": "", "years": None}]
    return [base]
