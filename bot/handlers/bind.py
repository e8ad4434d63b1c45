"""Binding a WeChat account to a membership: 绑定 <phone> / BIND <phone>, then the code.

CONTRACT.md "Member keywords": the bot makes a 6-digit code and sends it at once
as an ordinary SMS (a reply: no quiet hours, no batching); it is valid for 10
minutes and 5 wrong tries; other messages in between neither cancel nor use it.

- WeChat only: on SMS the phone number *is* the membership, so 绑定 there just
  says so.
- Requests are rate-limited (`models.binding.LIMITS`): at most 3 codes per 10
  minutes per openid and per phone, and at most 10 per 24 hours per phone. Every
  request is a `BindCode` row, so the rows are the rate-limit log.
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
  account per member, as `models.identities` keeps it and the database enforces:
  when two openids send a valid code for one member at the same moment, the
  later gets `bind_conflict` and its code stays pending, so sending it again
  moves the membership to it, as a later binding would). Wrong → attempts + 1; the
  fifth wrong try kills the code (ask for a new one). After 10 minutes the code
  is expired. Six digits with no pending code are just an unknown message.
- The SMS itself leaves after the commit (`turn.outgoing`, sent by `bot.bot`); if
  the sender fails, the code is marked ``failed`` and the member told to retry.
"""

from __future__ import annotations

from bot.conversation import Reply
from bot.handlers.turn import OutgoingSms, Route, Turn
from bot.router import Intent, Match
from models import binding, identities
from models.binding import CODE_VALID_MINUTES
from models.errors import InvalidInput
from models.locale_format import pick_locale
from models.phone import normalise_phone
from models.tables.conversation import BindCode
from models.tables.members import Member
from scheduler.text import render


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
    openid = turn.inbound.sender
    if await binding.rate_limited(turn.session, openid=openid, phone=phone, now=turn.now):
        return turn.reply("bind_rate_limited", minutes=CODE_VALID_MINUTES)
    row, member, code = await binding.request_code(
        turn.session, openid=openid, phone=phone, now=turn.now
    )
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
    return await binding.waiting_code(turn.session, openid=turn.inbound.sender, now=turn.now)


async def attempt(turn: Turn, match: Match) -> Reply | None:
    """Six digits from WeChat: check them against the pending code; None if none is pending."""
    if not turn.is_wechat:
        return None
    row = await binding.pending_code(turn.session, openid=turn.inbound.sender)
    if row is None:
        return None
    if turn.now >= row.expires_at:
        binding.set_status(turn.session, row=row, status="expired")
        return turn.reply("bind_code_expired", minutes=CODE_VALID_MINUTES)
    if binding.code_matches(row, match.args) and row.member_id is not None:
        member = await turn.session.get(Member, row.member_id)
        if not await identities.link_wechat(turn.session, identity=turn.identity, member=member):
            # The code stays pending: sent again, it moves the membership here.
            return turn.reply("bind_conflict")
        turn.member = member
        binding.set_status(turn.session, row=row, status="used")
        turn.locale = pick_locale(member.locale, turn.locale)
        return turn.reply("bind_done", "bound", name=member.name, phone=member.phone)
    left = binding.wrong_try(turn.session, row=row)
    if left == 0:
        return turn.reply("bind_code_dead")
    return turn.reply("bind_code_wrong", left=left)


ROUTES = [Route(Intent.BIND, request, needs_member=False)]
