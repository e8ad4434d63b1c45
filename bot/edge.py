"""The HTTP edge: what every request must be before any handler (or the database) sees it.

`edge_middleware` runs inside `bot.errors.error_middleware`, before authentication:

- The path and the query string must be valid UTF-8 once percent-decoded and carry no
  control character (`models.strict.bad_char`: NUL, C0 controls, DEL) → else 400.
- Every header value must be valid UTF-8 (aiohttp keeps other bytes as surrogates,
  which no database or hash can take) and carry no control character → else 400.
- A form body (`application/x-www-form-urlencoded`, what Twilio and the console post)
  is parsed here, once and strictly: UTF-8, at most `MAX_FORM_FIELDS` fields, no control
  character except tab and line breaks in values → else 400. Handlers read it with
  `posted_form(request)` (never `request.post()`, whose lenient parser would raise on
  the same bytes). A signed Twilio message holding a NUL is refused like any other
  form: the signature cannot vouch for text the database and TwiML cannot carry.
- `multipart/form-data` is refused (415): no endpoint takes files.

JSON bodies are checked where they are parsed (`bot.api.common.read_object`, recursively with
`models.strict.find_bad_text`). The XML of WeChat needs nothing here: XML 1.0 cannot
carry these characters, so its parser already refuses them (400).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from bot.errors import json_error
from models.strict import bad_char

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 100

_FORM = web.RequestKey("edge_form", MultiDictProxy)
_EMPTY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


class Refused(Exception):
    def __init__(self, status: int, error: str, field: str | None):
        super().__init__(error)
        self.status, self.error, self.field = status, error, field


def _check_url(request: web.Request) -> None:
    raw_path, _, raw_query = request.raw_path.partition("?")
    try:
        path = unquote(raw_path, errors="strict")
        query = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the URL is not valid UTF-8", "url") from None
    if bad_char(path, one_line=True):
        raise Refused(400, "control characters are not allowed in the path", "path")
    for name, value in query:
        if bad_char(name, one_line=True) or bad_char(value, one_line=True):
            raise Refused(400, "control characters are not allowed in the query", name[:40])


def _check_headers(request: web.Request) -> None:
    for name, value in request.headers.items():
        if bad_char(value):
            # aiohttp keeps bytes that are not UTF-8 as lone surrogates: bad_char finds them
            raise Refused(400, "header values must be UTF-8 text", name.lower()[:40])


def parse_form(body: bytes) -> MultiDictProxy[str]:
    """A urlencoded body, strictly: UTF-8, bounded, no control characters. Raises Refused."""
    try:
        text = body.decode("utf-8")
        fields = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise Refused(400, "the form is not valid UTF-8", "body") from None
    except ValueError:
        raise Refused(400, f"more than {MAX_FORM_FIELDS} form fields", "body") from None
    for name, value in fields:
        if bad_char(name, one_line=True) or bad_char(value):
            raise Refused(400, "control characters are not allowed in a form", name[:40])
    return MultiDictProxy(MultiDict(fields))


def posted_form(request: web.Request) -> MultiDictProxy[str]:
    """The form `edge_middleware` parsed; empty when the body was not a form."""
    return request.get(_FORM, _EMPTY)


@web.middleware
async def edge_middleware(request: web.Request, handler):
    try:
        _check_url(request)
        _check_headers(request)
        if request.body_exists:
            content_type = request.content_type
            if content_type.startswith("multipart/"):
                raise Refused(415, "multipart bodies are not accepted", "content-type")
            if content_type == FORM_TYPE:
                request[_FORM] = parse_form(await request.read())
    except Refused as exc:
        return json_error(exc.status, exc.error, exc.field)
    return await handler(request)
