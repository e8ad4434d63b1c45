"""Reply texts: jinja2 templates, one file per reply and locale (templates are data).

    render("points", "zh_CN", name="张三", points=3200, …) -> str

reads ``bot/templates/replies/<locale>/<name>.txt``. The environment uses
`StrictUndefined`, so a template that names a value the handler did not pass
fails loudly in the tests instead of printing an empty hole. Locales: ``zh_CN``
(the default) and ``en``; an unknown locale falls back to ``zh_CN``
(`models.locale_format.pick_locale`).

Filters, aware of the locale being rendered (so a template says
``{{ expires|day }}`` and gets "2026年12月31日" or "31 Dec 2026"): `LOCALE_FILTERS`,
the formatters of `models.locale_format` — also the filters of the proactive
message templates (`scheduler.render`):

- ``money``: Decimal yuan → "300元" / "¥300" (cents only when there are some);
- ``day``: a date → "2026年12月31日" / "31 Dec 2026"; ``short_day`` leaves out the year
  and adds the weekday ("12月5日 周六" / "Sat 5 Dec");
- ``points``: an integer with thousands separators ("3,000");

and, in replies only, ``phone``: a phone number masked (`models.phone.mask_phone`) —
replies never show a full number.

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

from models.locale_format import (
    DEFAULT_LOCALE,
    format_day,
    format_money,
    format_points,
    format_short_day,
    pick_locale,
)
from models.phone import mask_phone

TEMPLATES = Path(__file__).parent.parent / "bot" / "templates"
"""The template files, shipped as package data of `bot`."""

_BLANK_RUNS = re.compile(r"\n\s*\n(\s*\n)+")


def _locale(ctx: Context) -> str:
    return ctx.get("locale", DEFAULT_LOCALE)


@pass_context
def _money(ctx: Context, value: Decimal | int) -> str:
    return format_money(value, _locale(ctx))


@pass_context
def _day(ctx: Context, value: date) -> str:
    return format_day(value, _locale(ctx))


@pass_context
def _short_day(ctx: Context, value: date) -> str:
    return format_short_day(value, _locale(ctx))


def finish(text: str) -> str:
    """Collapse blank-line runs and strip, so templates can use {% if %} blocks freely."""
    return _BLANK_RUNS.sub("\n\n", text).strip()


LOCALE_FILTERS = {"money": _money, "day": _day, "short_day": _short_day, "points": format_points}
"""The filters of every text template (replies and proactive messages)."""


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
    env.filters.update(LOCALE_FILTERS, phone=mask_phone)
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
    return finish(text)
