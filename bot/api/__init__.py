"""The JSON API: the `/api/*` routes of CONTRACT.md.

- `stores.py`, `members.py`, `purchases.py`, `cards.py`, `till.py` (vouchers at the
  till, returns, points adjustments) — the operator routes, each
  wrapped by `common.operator`: `Authorization: Bearer <key>` checked against
  `settings.api.keys` before anything is read or written;
- `greetings.py` — `POST /api/greetings`, authenticated by the assistant's own token;
- `inbox.py` — `/api/inbox`: the hand-off conversations, by the assistant's token too;
- `common.py` — what they share: the bearer credential, the JSON body, the operator
  check and the small request helpers;
- `openapi.py` — `GET /api/openapi.json`, made from the routes above and their
  `describe` notes;
- `views.py` — the member view (CONTRACT.md "member view"), the JSON shape of a member.

Bad input and domain errors are raised; `bot.errors.error_middleware` answers them as
`{"error", "field"}` with their 4xx status. Import from the defining module: this
package re-exports nothing.
"""

from __future__ import annotations

from aiohttp import web

from bot.api import cards, greetings, inbox, members, openapi, purchases, stores, till
from bot.appkeys import LOYALTY, SETTINGS


def setup(app: web.Application) -> None:
    """Add the operator routes and the assistant-token route (POST /api/greetings).
    Needs `app[SETTINGS]` set."""
    app[LOYALTY] = app[SETTINGS].loyalty
    for module in (stores, members, purchases, cards, greetings, inbox, till):
        app.router.add_routes(module.routes)
    openapi.setup(app)
