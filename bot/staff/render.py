"""Pages of the staff console: jinja2 HTML templates in ``bot/templates/staff/`` and
their texts per locale in ``bot/templates/staff/strings/<locale>.toml`` (templates
are data: no UI text in Python). Templates say ``{{ t('members.title') }}``.

Every page is sent as UTF-8 HTML with headers that keep it to itself: a strict
Content-Security-Policy (own origin only, no inline script), no framing, no
caching (the pages hold member data), no referrer to other sites.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from models.locale_format import pick_locale

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "staff"
STRINGS = TEMPLATES / "strings"
ASSETS = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
"""The console's own static files, served from the templates folder."""
FAVICON = "favicon.svg"
"""Also answers ``/favicon.ico`` (browsers and crawlers ask for it on their own)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@cache
def strings(locale: str) -> dict[str, str]:
    with (STRINGS / f"{locale}.toml").open("rb") as fh:
        return tomllib.load(fh)


def text(locale: str, key: str, **values: Any) -> str:
    """The console text `key` in `locale`, with {placeholders} filled. A missing key is
    a bug the tests catch (KeyError), never a blank on a page."""
    template = strings(pick_locale(locale))[key]
    return template.format(**values) if values else template


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    return env


def page(
    template: str,
    *,
    locale: str,
    brand: str,
    staff: Any = None,
    request_path: str = "/staff/",
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
    inbox_open: int = 0,
    **context: Any,
) -> web.Response:
    """Render `template` as a complete HTML response (`inbox_open`: the header's count of
    conversations waiting for an answer)."""
    locale = pick_locale(locale)
    html = (
        environment()
        .get_template(template)
        .render(
            t=lambda key, **values: text(locale, key, **values),
            locale=locale,
            brand=brand,
            staff=staff,
            request_path=request_path,
            notice=notice,
            error=error,
            inbox_open=inbox_open,
            **context,
        )
    )
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response


async def asset(request: web.Request) -> web.Response:
    """GET /staff/{name} for the files of `ASSETS` (the stylesheet, the preview script,
    the icon), and GET /favicon.ico for the icon."""
    name = request.path.rsplit("/", 1)[1]
    if name == "favicon.ico":
        name = FAVICON
    response = web.Response(
        text=(TEMPLATES / name).read_text(encoding="utf-8"),
        content_type=ASSETS[name],
        charset="utf-8",
    )
    response.headers["Cache-Control"] = "max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
