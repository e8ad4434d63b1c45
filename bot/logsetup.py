"""Logging of `memberbot serve`: one handler on the root logger, every line with an
ISO 8601 time carrying its UTC offset, and no phone number in any line. The other
commands mask their warnings the same way (`configure_cli_logging`).

- `MaskingFormatter` formats a record as usual (message, arguments, exception text,
  stack) and then masks every phone-like run in the finished text: 7 or more digits,
  optionally after `+` or `%2B` (aiohttp's access log writes request paths such as
  `/api/members/+8613800138001`; a PostgreSQL error prints its SQL parameters). The
  run keeps its first 3 and last 4 digits, like `models.phone.mask_phone`. Runs of
  fewer digits (dates, times, ports, counts) are left alone.
- Every record carries the id of the request (or daily run) it belongs to
  (`models.context.request_id`, "-" outside one), added by `RequestIdFilter` on the
  handler, so `format = "json"` and the text format both show it.
- `JsonFormatter` (`[logging] format = "json"`): one JSON object per line, `time`,
  `level`, `logger`, `request_id`, `message` and, for an error, `exception`; masked
  like the text lines.
- `BadRequestFilter` on `aiohttp.server` turns the traceback aiohttp logs for every
  malformed raw HTTP request (a scanner, a TLS hello on the plain port) into one short
  WARNING line, so garbage on the port cannot flood the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime
from typing import TextIO

from models.context import request_id
from models.settings.sections import LoggingSettings

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

_PHONE_LIKE = re.compile(r"(?<![0-9])((?:\+|%2[bB])?[0-9]{3})([0-9]{0,8})([0-9]{4})(?![0-9])")
"""3 + 0..8 + 4 digits: 7 to 15 digits, the length of any E.164 number."""
_LONG_RUN = re.compile(r"[0-9]{16,}")


def _mask_match(m: re.Match[str]) -> str:
    head, middle, tail = m.groups()
    if not middle:  # 7 digits: keep only the first 3
        return head + "****"
    return head + "*" * len(middle) + tail


def mask_phones(text: str) -> str:
    """`text` with every run of 7-15 digits masked but its first 3 and last 4 digits
    (its middle is masked entirely when it has only 7); longer runs are not phone numbers
    but are masked whole too, so no phone hides inside them."""
    text = _LONG_RUN.sub(lambda m: "*" * len(m.group()), text)
    return _PHONE_LIKE.sub(_mask_match, text)


_RID = "\x00rid\x00"
"""Stands in for the request id while a line is masked."""


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (the current request's or daily run's id, else "-") to a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


class MaskingFormatter(logging.Formatter):
    """ISO 8601 times with the local UTC offset; phone-like numbers masked everywhere."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso(record.created)

    def format(self, record: logging.LogRecord) -> str:
        # The request id is not masked: a load balancer's id may hold a run of digits.
        rid = getattr(record, "request_id", "-")
        record.request_id = _RID
        try:
            return mask_phones(super().format(record)).replace(_RID, rid)
        finally:
            record.request_id = rid


class JsonFormatter(MaskingFormatter):
    """One JSON object per line (masked like the text lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "request_id": _RID,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        line = mask_phones(json.dumps(entry, ensure_ascii=False))
        return line.replace(json.dumps(_RID), json.dumps(getattr(record, "request_id", "-")))


def _http_error(exc: BaseException | None) -> bool:
    """An aiohttp `HttpProcessingError` (aiohttp not imported: none can have been raised,
    and a command that does not serve starts without loading it)."""
    errors = sys.modules.get("aiohttp.http_exceptions")
    return errors is not None and isinstance(exc, errors.HttpProcessingError)


class BadRequestFilter(logging.Filter):
    """One short line instead of a traceback for a malformed raw HTTP request."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if _http_error(exc):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            reason = str(exc.message).splitlines()[0][:120] if exc.message else type(exc).__name__
            record.msg = "malformed HTTP request from %s: %s"
            record.args = (remote, reason)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(
    stream: TextIO | None = None, options: LoggingSettings | None = None
) -> logging.Handler:
    """Install the masking handler (text or JSON, `options`) on the root logger, replacing
    its handlers, and the bad-request filter on aiohttp's server logger. Returns the
    handler."""
    options = options or LoggingSettings()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if options.format == "json" else MaskingFormatter(FORMAT))
    level = logging.getLevelName(options.level)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestFilter) for f in server_log.filters):
        server_log.addFilter(BadRequestFilter())
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    return handler


def configure_cli_logging() -> None:
    """For the other commands: warnings and errors as bare messages on stderr, as
    Python's last-resort handler writes them, but masked. Does nothing when the root
    logger already has a handler (an embedding program's, or pytest's)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(message)s"))
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)
