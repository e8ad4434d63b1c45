"""The staff console: server-rendered pages under ``/staff/`` for assistants and
store managers (docs/staff-console.md). `setup(app)` adds its routes."""

from __future__ import annotations

from aiohttp import web

from bot.staff import inbox, manager, pages, till, today, tracker
from bot.staff.render import ASSETS, asset


def setup(app: web.Application) -> None:
    """Add the console routes. Needs `app[SETTINGS]` set."""
    for name in ASSETS:
        app.router.add_get(f"/staff/{name}", asset)
    app.router.add_get("/favicon.ico", asset)
    app.router.add_routes(pages.routes)
    app.router.add_routes(today.routes)
    app.router.add_routes(tracker.routes)
    app.router.add_routes(manager.routes)
    app.router.add_routes(inbox.routes)
    app.router.add_routes(till.routes)
