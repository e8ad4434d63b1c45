"""What the current piece of work is, for the log and the rows it writes.

`request_id` is set by the HTTP edge for each webhook, API and console request
(`bot.access`) and by the daily job for its run; the log lines of that work carry it
(`bot.logsetup`), and so do the outbox rows it creates (`models.outbox.states`), so an
operator can follow one request from its access line to the messages it queued.
A context variable, so concurrent requests on one event loop never mix their ids.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


@contextmanager
def work_id(prefix: str) -> Iterator[str]:
    """A run of work that no request started (the daily job, a CLI command): a new id
    `<prefix>-<8 hex>` for its log lines and rows, unless a request's id is already set
    (then that one is kept: the work is part of the request)."""
    current = request_id.get()
    if current:
        yield current
        return
    rid = f"{prefix}-{secrets.token_hex(4)}"
    token = request_id.set(rid)
    try:
        yield rid
    finally:
        request_id.reset(token)
