"""The console's own files: the icon (also at /favicon.ico), and templates that keep
to the console's Content-Security-Policy (no inline style or script)."""

from __future__ import annotations

import re

from bot.app import create_app
from bot.staff.render import TEMPLATES


async def test_the_icon_is_served_also_at_favicon_ico(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    for path in ("/favicon.ico", "/staff/favicon.svg"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.headers["Content-Type"].startswith("image/svg+xml")
        assert (await resp.text()).startswith("<svg")
    page = await (await client.get("/staff/signin")).text()
    assert '<link rel="icon" href="/staff/favicon.svg"' in page


def test_no_template_carries_inline_styles_or_scripts():
    """`style-src 'self'` / `script-src 'self'` refuse them; the browser test sees the
    pages themselves."""
    inline = re.compile(r"\sstyle=|<style|<script(?![^>]*\ssrc=)|\son[a-z]+=", re.I)
    for template in sorted(TEMPLATES.glob("*.html")):
        found = inline.findall(template.read_text(encoding="utf-8"))
        assert not found, f"{template.name}: {found}"
