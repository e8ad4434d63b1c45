"""Binding a WeChat account to a membership: 绑定 <phone> / BIND <phone>, then the code.

CONTRACT.md "Member keywords": the bot makes a 6-digit code and sends it at once
as an ordinary SMS (a reply: no quiet hours, no batching); it is valid for 10
minutes and 5 wrong tries; other messages in between neither cancel nor use it.

- WeChat only: on SMS the phone number *is* the membership, so 绑定 there just
  says so.
- Requests are rate-limited (`LIMITS`): at most 3 codes per 10 minutes per
  openid and per phone, and at most 10 per 24 hours per phone. Every request is
  a `BindCode` row, so the rows are the rate-limit log.
- A new request supersedes the openid's earlier pending code.
- No membership is revealed: whether or not a member has that phone, the answer
  is the same ("if this number belongs to a member, a code is on its way"). Only
  when a member has it is an SMS sent; otherwise the row is kept with no member
  (rate limits still count it) and no code can ever match it. The answer tells
  a sender who gets no SMS that the number may not be a member's yet.
- Only a salted HMAC-SHA256 of the code is stored (`code_hash`, per-row `salt`).
- A message of exactly six digits while the openid has a pending code is an
  attempt. Right → the openid's `Identity` is linked to the member (created if
  missing; the member's other WeChat identities are deactivated: one WeChat
  account per member, as `models.members` keeps it and the database enforces:
  when two openids send a valid code for one member at the same moment, the
  later gets `bind_conflict` and its code stays pending, so sending it again
  moves the membership to it, as a later binding would). Wrong → attempts + 1; the
  fifth wrong try kills the code (ask for a new one). After 10 minutes the code
  is expired. Six digits with no pending code are just an unknown message.
- The SMS itself leaves after the commit (`turn.outgoing`, sent by `bot.bot`); if
  the sender fails, the code is marked ``failed`` and the member told to retry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, update
from sqlmodel import col, select

from bot.conversation import Reply
from bot.handlers.turn import OutgoingSms, Route, Turn
from bot.router import Intent, Match
from models import consent
from models.errors import InvalidInput
from models.identities import activate_wechat
from models.locale_format import pick_locale
from models.members import get_member_by_phone
from models.phone import normalise_phone
from models.tables import BindCode, Member
from scheduler.text import render

CODE_VALID_MINUTES = 10
MAX_WRONG_TRIES = 5


@dataclass(frozen=True)
class Limit:
    key: str  # "openid" | "phone"
    count: int
    window: timedelta


LIMITS = (
    Limit("openid", 3, timedelta(minutes=10)),
    Limit("phone", 3, timedelta(minutes=10)),
    Limit("phone", 10, timedelta(hours=24)),
)


def hash_code(code: str, *, salt: str, openid: str) -> str:
    return hmac.new(salt.encode(), f"{openid}:{code}".encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


async def _rate_limited(turn: Turn, phone: str) -> bool:
    for limit in LIMITS:
        column = BindCode.openid if limit.key == "openid" else BindCode.phone
        value = turn.inbound.sender if limit.key == "openid" else phone
        stmt = select(func.count()).where(
            column == value, BindCode.created_at > turn.now - limit.window
        )
        if (await turn.session.exec(stmt)).one() >= limit.count:
            return True
    return False


async def request(turn: Turn, match: Match) -> Reply:
    """绑定 <phone>: send a code (WeChat), or explain binding (no phone given, SMS)."""
    if not turn.is_wechat:
        return turn.reply("bind_sms_channel")
    if not match.args:
        return turn.reply("bind_how")
    try:
        phone = normalise_phone(match.args.replace(" ", ""))
    except InvalidInput:
        return turn.reply("bind_bad_phone")
    if turn.member is not None and turn.member.phone == phone:
        return turn.reply("bind_already", name=turn.member.name, phone=phone)
    if await _rate_limited(turn, phone):
        return turn.reply("bind_rate_limited", minutes=CODE_VALID_MINUTES)
    openid = turn.inbound.sender
    await turn.session.exec(
        update(BindCode)
        .where(BindCode.openid == openid, BindCode.status == "pending")
        .values(status="superseded")
        .execution_options(synchronize_session=False)
    )
    member = await get_member_by_phone(turn.session, phone=phone)
    code, salt = new_code(), secrets.token_hex(16)
    row = BindCode(
        openid=openid,
        phone=phone,
        member_id=member.id if member else None,
        code_hash=hash_code(code, salt=salt, openid=openid),
        salt=salt,
        created_at=turn.now,
        expires_at=turn.now + timedelta(minutes=CODE_VALID_MINUTES),
    )
    turn.session.add(row)
    await turn.session.flush()
    if member is not None:
        locale = pick_locale(member.locale, turn.settings.brand.locale)
        body = render(
            "bind_code_sms", locale, brand=turn.settings.brand.name,
            code=code, minutes=CODE_VALID_MINUTES,
        )
        turn.outgoing.append(OutgoingSms(to=phone, body=body, bind_code_id=row.id))
    return turn.reply("bind_sent", "bind_code_requested", phone=phone, minutes=CODE_VALID_MINUTES)


async def waiting_code(turn: Turn) -> BindCode | None:
    """The openid's code still waiting to be typed in (pending, unexpired), if any."""
    if not turn.is_wechat:
        return None
    stmt = (
        select(BindCode)
        .where(
            BindCode.openid == turn.inbound.sender,
            BindCode.status == "pending",
            BindCode.expires_at > turn.now,
        )
        .order_by(col(BindCode.created_at).desc(), col(BindCode.id).desc())
    )
    return (await turn.session.exec(stmt)).first()


async def _pending_code(turn: Turn) -> BindCode | None:
    stmt = (
        select(BindCode)
        .where(BindCode.openid == turn.inbound.sender, BindCode.status == "pending")
        .order_by(col(BindCode.created_at).desc(), col(BindCode.id).desc())
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await turn.session.exec(stmt)).first()


async def _link(turn: Turn, member: Member) -> bool:
    """Make the sender's openid the member's (one active WeChat identity per member,
    `models.identities`); False when another openid bound the member at the same moment."""
    if not await activate_wechat(turn.session, identity=turn.identity, member_id=member.id):
        return False
    # A stop this openid sent before it was a member's applies now (models.consent).
    await consent.adopt_address(turn.session, member=member, address=turn.identity.address)
    turn.member = member
    return True


async def attempt(turn: Turn, match: Match) -> Reply | None:
    """Six digits from WeChat: check them against the pending code; None if none is pending."""
    if not turn.is_wechat:
        return None
    row = await _pending_code(turn)
    if row is None:
        return None
    if turn.now >= row.expires_at:
        row.status = "expired"
        turn.session.add(row)
        return turn.reply("bind_code_expired", minutes=CODE_VALID_MINUTES)
    good = hmac.compare_digest(
        row.code_hash, hash_code(match.args, salt=row.salt, openid=row.openid)
    )
    if good and row.member_id is not None:
        member = await turn.session.get(Member, row.member_id)
        if not await _link(turn, member):
            # The code stays pending: sent again, it moves the membership here.
            return turn.reply("bind_conflict")
        row.status = "used"
        turn.session.add(row)
        turn.locale = pick_locale(member.locale, turn.locale)
        return turn.reply("bind_done", "bound", name=member.name, phone=member.phone)
    row.attempts += 1
    if row.attempts >= MAX_WRONG_TRIES:
        row.status = "dead"
        turn.session.add(row)
        return turn.reply("bind_code_dead")
    turn.session.add(row)
    return turn.reply("bind_code_wrong", left=MAX_WRONG_TRIES - row.attempts)


async def mark_failed(session, *, bind_code_id: int) -> None:
    """The SMS could not be sent: the code can never be right."""
    await session.exec(
        update(BindCode).where(BindCode.id == bind_code_id).values(status="failed")
    )


ROUTES = [Route(Intent.BIND, request, needs_member=False)]
