"""What the current piece of work is, for the log and the rows it writes.

`request_id` is set by the HTTP edge for each webhook, API and console request
(`bot.access`) and by the daily job for its run; the log lines of that work carry it
(`bot.logsetup`), and so do the outbox rows it creates (`models.outbox.states`), so an
operator can follow one request from its access line to the messages it queued.
A context variable, so concurrent requests on one event loop never mix their ids.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
