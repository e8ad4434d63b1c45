"""Sign-in plumbing of the staff console: the session cookie, CSRF checks, the
sign-in attempt limit and the `console` wrapper every page goes through.

- The cookie ``memberbot_staff`` holds a random session id (`models.staff_auth`):
  HttpOnly, SameSite=Lax, Path=/staff, Secure when `server.public_url` is https,
  and it lasts as long as the session (`[staff] session_hours`).
- Every POST form carries the session's ``csrf_token``; a missing or wrong one is
  answered 403 before anything is read or written.
- A request without a live session is redirected (303) to the sign-in page and
  changes nothing.
- Failed sign-ins are counted per client address (`bot.proxy.client_address`: behind
  `server.trusted_proxies`, from X-Forwarded-For) and per assistant code typed, in
  the database (`begin_sign_in`, `models.staff_lockout`), so replicas share them:
  after `[staff] sign_in_attempts` (address) or `sign_in_attempts_per_account`
  failures within `sign_in_window` seconds the sign-in page refuses (429 with
  Retry-After). A success clears no other attempt's failures.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDictProxy

from bot.appkeys import SESSIONS, SETTINGS
from bot.edge import posted_form
from bot.proxy import client_address
from bot.staff.render import page, text
from models import inbox, staff_auth, staff_lockout
from models.db import transaction
from models.errors import DomainError
from models.staff_auth import SignedIn
from models.strict import bad_char
from models.types import utcnow

log = logging.getLogger("memberbot.staff")

COOKIE = "memberbot_staff"
COOKIE_PATH = "/staff"
SIGN_IN = "/staff/signin"
MAX_NEXT = 1000
"""Longest `next` page kept: it goes back out in a Location header."""

FORM = web.RequestKey("staff_form", MultiDictProxy)
"""The posted form of a console POST, read once by `console` (CSRF) and kept here."""
INBOX_OPEN = web.RequestKey("staff_inbox_open", int)
"""Conversations waiting for the signed-in staff's answer (the header's count)."""

Page = Callable[[web.Request, SignedIn], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class SignInAttempt:
    """A sign-in attempt let through the limit: its limits and its reservation."""

    limits: list[staff_lockout.Limit]
    reserved: list[int]


async def begin_sign_in(request: web.Request, *, code: str) -> SignInAttempt | float:
    """Count a sign-in attempt against the client address and the account `code` names
    (`models.staff_lockout`, shared by every replica through the database). Returns the
    attempt, or the seconds to wait when a limit is reached. A failed attempt stays
    counted; a successful one is taken back with `staff_lockout.release`."""
    settings = request.app[SETTINGS].staff
    window = timedelta(seconds=settings.sign_in_window)
    limits = staff_lockout.limits(
        address=client_address(request),
        account=code,
        per_address=settings.sign_in_attempts,
        per_account=settings.sign_in_attempts_per_account,
    )
    now = utcnow()
    async with transaction(request.app[SESSIONS]) as session:
        reserved = await staff_lockout.reserve(session, limits=limits, now=now, window=window)
    async with transaction(request.app[SESSIONS]) as session:
        wait = await staff_lockout.refusal(
            session, limits=limits, reserved=reserved, now=now, window=window
        )
    if wait is not None:
        log.info("staff sign-in refused: too many failures (retry in %.0f s)", wait)
        return wait
    return SignInAttempt(limits, reserved)


def cookie_secure(request: web.Request) -> bool:
    return request.app[SETTINGS].server.public_url.startswith("https://")


def set_session_cookie(request: web.Request, response: web.StreamResponse, raw: str) -> None:
    hours = request.app[SETTINGS].staff.session_hours
    response.set_cookie(
        COOKIE,
        raw,
        max_age=int(hours * 3600),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=cookie_secure(request),
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(
        COOKIE, path=COOKIE_PATH, httponly=True, samesite="Lax", secure=cookie_secure(request)
    )


def safe_next(value: Any) -> str:
    """Where to go after signing in: a console path only (no open redirect)."""
    if (
        isinstance(value, str)
        and value.startswith("/staff/")
        and len(value) <= MAX_NEXT
        and "\\" not in value
        and not bad_char(value, one_line=True)
    ):
        return value
    return "/staff/"


def form_value(form: MultiDictProxy, name: str, default: str = "") -> str:
    """A text field of a posted form (an uploaded file counts as missing)."""
    value = form.get(name, default)
    return value if isinstance(value, str) else default


def brand(request: web.Request) -> str:
    return request.app[SETTINGS].brand.name


def default_locale(request: web.Request) -> str:
    return request.app[SETTINGS].brand.locale


def staff_page(
    request: web.Request, staff: SignedIn | None, template: str, **context: Any
) -> web.Response:
    """A console page for the signed-in `staff` (their locale, the nav bar)."""
    return page(
        template,
        locale=staff.locale if staff else default_locale(request),
        brand=brand(request),
        staff=staff,
        request_path=request.path_qs,
        inbox_open=request.get(INBOX_OPEN, 0),
        **context,
    )


def error_page(
    request: web.Request, staff: SignedIn | None, status: int, key: str, **values: Any
) -> web.Response:
    locale = staff.locale if staff else default_locale(request)
    message = text(locale, key, **values)
    return staff_page(request, staff, "error.html", status=status, error=message)


async def _signed_in(request: web.Request) -> SignedIn | None:
    raw = request.cookies.get(COOKIE, "")
    if not raw:
        return None
    async with transaction(request.app[SESSIONS]) as session:
        staff = await staff_auth.current(session, raw=raw, now=utcnow())
        if staff is not None:
            request[INBOX_OPEN] = await inbox.open_count(session, scope=staff.scope)
        return staff


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST, or to the sign-in page."""
    return web.Response(status=303, headers={"Location": location})


def _to_sign_in(request: web.Request) -> web.Response:
    target = SIGN_IN
    if request.method == "GET":
        target += "?next=" + quote(safe_next(request.path_qs), safe="")
    response = redirect(target)
    if COOKIE in request.cookies:
        clear_session_cookie(request, response)
    return response


def console(*, manager_only: bool = False) -> Callable[[Page], Callable]:
    """Wrap a console page: a live session (else 303 to sign-in), a valid CSRF token on
    POST (else 403), the manager role when asked (else 403); domain errors become a
    page with their status and anything unexpected a 500 page, never a traceback.
    The handler gets the signed-in `SignedIn`; a POST's form is ``request[FORM]``."""

    def wrap(handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            staff = await _signed_in(request)
            if staff is None:
                return _to_sign_in(request)
            if request.method == "POST":
                form = posted_form(request)
                given = form_value(form, "csrf_token").encode("utf-8", "surrogateescape")
                if not hmac.compare_digest(given, staff.csrf_token.encode("utf-8")):
                    log.info(
                        "staff %s: %s %s refused: bad CSRF token",
                        staff.code,
                        request.method,
                        request.path,
                    )
                    return error_page(request, staff, 403, "error.csrf")
                request[FORM] = form
            if manager_only and not staff.is_manager:
                return error_page(request, staff, 403, "error.manager_only")
            try:
                return await handler(request, staff)
            except DomainError as exc:
                log.info(
                    "staff %s: %s %s -> %d %s",
                    staff.code,
                    request.method,
                    request.path,
                    exc.status,
                    exc.message,
                )
                return error_page(request, staff, exc.status, "error.bad_input", reason=exc.message)
            except web.HTTPException:
                raise
            except Exception:
                log.exception("staff console error on %s %s", request.method, request.path)
                return error_page(request, staff, 500, "error.internal")

        return wrapped

    return wrap
