"""Reply texts: jinja2 templates, one file per reply and locale (templates are data).

    render("points", "zh_CN", name="张三", points=3200, …) -> str

reads ``bot/templates/replies/<locale>/<name>.txt``. The environment uses
`StrictUndefined`, so a template that names a value the handler did not pass
fails loudly in the tests instead of printing an empty hole. Locales: ``zh_CN``
(the default) and ``en``; an unknown locale falls back to ``zh_CN``.

Filters, aware of the locale being rendered (so a template says
``{{ expires|day }}`` and gets "2026年12月31日" or "31 Dec 2026"):

- ``money``: Decimal yuan → "300元" / "¥300" (cents only when there are some);
- ``day``: a date → "2026年12月31日" / "31 Dec 2026"; ``short_day`` leaves out the year
  and adds the weekday ("12月5日 周六" / "Sat 5 Dec");
- ``phone``: a phone number masked (`models.phone.mask_phone`) — replies never
  show a full number;
- ``points``: an integer with thousands separators ("3,000").

The output is stripped of surrounding blank lines and runs of blank lines are
collapsed, so templates can use ``{% if %}`` blocks freely.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, pass_context
from jinja2.runtime import Context, new_context

from models.phone import mask_phone

TEMPLATES = Path(__file__).with_name("templates")
LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"

_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EN_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_ZH_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_BLANK_RUNS = re.compile(r"\n\s*\n(\s*\n)+")


def pick_locale(*candidates: str | None) -> str:
    """The first candidate that is a supported locale, else the default."""
    for c in candidates:
        if c in LOCALES:
            return c
    return DEFAULT_LOCALE


def format_money(value: Decimal | int, locale: str) -> str:
    amount = Decimal(value)
    text = f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"
    return f"¥{text}" if locale == "en" else f"{text.replace(',', '')}元"


def format_day(d: date, locale: str) -> str:
    if locale == "en":
        return f"{d.day} {_EN_MONTHS[d.month - 1]} {d.year}"
    return f"{d.year}年{d.month}月{d.day}日"


def format_short_day(d: date, locale: str) -> str:
    if locale == "en":
        return f"{_EN_WEEKDAYS[d.weekday()]} {d.day} {_EN_MONTHS[d.month - 1]}"
    return f"{d.month}月{d.day}日 {_ZH_WEEKDAYS[d.weekday()]}"


def _locale(ctx: Context) -> str:
    return ctx.get("locale", DEFAULT_LOCALE)


@pass_context
def _money(ctx: Context, value) -> str:
    return format_money(value, _locale(ctx))


@pass_context
def _day(ctx: Context, value: date) -> str:
    return format_day(value, _locale(ctx))


@pass_context
def _short_day(ctx: Context, value: date) -> str:
    return format_short_day(value, _locale(ctx))


def _points(value: int) -> str:
    return f"{int(value):,}"


@cache
def environment() -> Environment:
    """The one jinja2 environment over bot/templates/ (built on first use, then shared)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # templates are data shipped with the code: compiled once
    )
    env.filters.update(
        money=_money, day=_day, short_day=_short_day, phone=mask_phone, points=_points
    )
    return env


def template_names(locale: str = DEFAULT_LOCALE) -> list[str]:
    """Every reply template of a locale, without the extension."""
    folder = TEMPLATES / "replies" / locale
    return sorted(p.stem for p in folder.glob("*.txt") if not p.stem.startswith("_"))


@cache
def _template(name: str, locale: str) -> tuple[Template, dict]:
    """A reply template, compiled once, and its globals as a plain dict.

    `Template.render` copies `template.globals` (a ChainMap over the environment's
    globals) into every new context, twice; the environment's globals are fixed once
    it is built, so the copy is made here once and each render starts from it."""
    template = environment().get_template(f"replies/{locale}/{name}.txt")
    return template, dict(template.globals)


def render(name: str, locale: str | None = None, /, **ctx) -> str:
    """Render reply `name` in `locale` (default zh_CN) with the values in `ctx`."""
    loc = pick_locale(locale)
    template, globals_ = _template(name, loc)
    ctx["locale"] = loc
    # What `template.render(locale=loc, **ctx)` does, with the globals copied once.
    env = template.environment
    context = new_context(env, template.name, template.blocks, ctx, False, globals_)
    try:
        text = env.concat(template.root_render_func(context))  # type: ignore[attr-defined]
    except Exception:
        env.handle_exception()
    return _BLANK_RUNS.sub("\n\n", text).strip()
