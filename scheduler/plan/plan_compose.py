"""One member's messages of the day: values, rendering, rules check, channel, weekly cap.

`plan_member` turns a member's candidates (`Due`) into `Planned` messages, in
kind order: the template's values (`message_values`, signed by `signer`), the
text rendered and checked (`scheduler.message_rules.check`), then
`scheduler.policy`: stopped → ``stopped``; a broken rule → ``rule:<rule>``; no
channel → ``no_channel``; over the weekly cap → ``capped`` (an assistant's personal
greetings in the week are not counted: the member's notices and care come first).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Template

from models.kinds import KINDS, LOCALES
from models.locale_format import local_name
from models.outbox.states import QUEUED
from scheduler import message_rules, policy, render
from scheduler.plan.plan_reads import BatchContext
from scheduler.plan.plan_types import Due, MemberRow, PlanDay, Planned, Sale, suppress
from scheduler.text import finish

_KIND_ORDER = {k: i for i, k in enumerate(KINDS)}


def plan_member(plan: PlanDay, m: MemberRow, cands: list[Due], ctx: BatchContext) -> list[Planned]:
    cands = sorted(cands, key=lambda c: (_KIND_ORDER[c.kind], c.occasion))
    locale = m.locale if m.locale in LOCALES else plan.settings.brand.locale
    at = _send_after(plan, m.preferred_contact)
    keys = {(c.kind, c.occasion) for c in cands}
    out: list[Planned] = []
    sendable: list[Planned] = []
    wechat = ctx.wechat.get(m.id) if plan.wechat_on else None
    phone_bad = m.id in ctx.bad_phones
    for c in cands:
        store_id, assistant_id, values = message_values(plan, m, c, locale, ctx)
        p = Planned(
            member_id=m.id, phone=m.phone, kind=c.kind, occasion=c.occasion,
            planned_on=plan.day, locale=locale, text="", channel="", via="", address="",
            send_after=at, store_id=store_id, assistant_id=assistant_id, status=QUEUED,
        )  # fmt: skip
        if c.kind == "dormant":
            p.dormant_for = c.data
        out.append(p)
        if m.stopped:
            p.text = render_text(plan, c.kind, locale, values)
            suppress(p, policy.STOPPED)
            continue
        p.text, violations = render_checked(plan, c.kind, locale, values)
        if violations:
            suppress(p, f"rule:{violations[0].rule}")
            continue
        if not _route(plan, p, wechat, phone_bad, 0):
            continue
        sendable.append(p)
    if sendable:
        # The week's messages, but not today's own (a rerun) nor an assistant's extra
        # greetings: they never take a slot from the member's notices and care.
        counted = sum(
            1
            for key in ctx.recent.get(m.id, ())
            if key not in keys and policy.counts_for_planner(key[0])
        )
        kept, capped = policy.apply_cap(sendable, counted, plan.msg.weekly_cap)
        for p in capped:
            suppress(p, policy.CAPPED)
        # Each customer-service message uses up the window (5 at most): route the kept
        # ones again in cap order (greetings, notices, care) counting those before.
        cs_used = 0
        for p in kept:
            if p.via == "customer_service" and cs_used:
                _route(plan, p, wechat, phone_bad, cs_used)
            cs_used += p.via == "customer_service"
    return out


def _send_after(plan: PlanDay, preferred: str | None) -> datetime:
    found = plan.send_after.get(preferred)
    if found is None:
        found = policy.send_after(
            plan.day,
            tz=plan.tz,
            send_window=plan.msg.send_window,
            preferred_contact=preferred,
        )
        plan.send_after[preferred] = found
    return found


def _route(
    plan: PlanDay,
    p: Planned,
    wechat: policy.WeChatIdentityInfo | None,
    phone_bad: bool,
    used: int,
) -> bool:
    """Set the message's channel (`policy.choose_channel`); False when suppressed."""
    if wechat is not None and used:
        wechat = policy.WeChatIdentityInfo(
            wechat.openid, wechat.active, wechat.last_inbound_at,
            wechat.cs_sent_since_inbound + used,
        )  # fmt: skip
    choice = policy.choose_channel(
        kind=p.kind,
        member_stopped=False,
        wechat=wechat,
        phone=p.phone,
        phone_bad=phone_bad,
        at=p.send_after,
        template_ids=plan.template_ids,
        sms_provider=plan.sms_provider,
    )
    if isinstance(choice, policy.Suppressed):
        suppress(p, choice.reason)
        return False
    p.channel, p.via, p.address = choice.channel, choice.via, choice.address
    return True


# --------------------------------------------------------------------------- texts


def _template(plan: PlanDay, kind: str, locale: str) -> Template:
    key = (kind, locale)
    found = plan.templates.get(key)
    if found is None:
        found = render.environment().get_template(f"{locale}/{kind}.txt")
        plan.templates[key] = found
    return found


def render_text(plan: PlanDay, kind: str, locale: str, values: dict[str, Any]) -> str:
    template = _template(plan, kind, locale)
    return finish(template.render(render.full_context(kind, locale, values)))


def render_checked(
    plan: PlanDay, kind: str, locale: str, values: dict[str, Any]
) -> tuple[str, list[message_rules.Violation]]:
    """`message_rules.render_checked`, with the template looked up once per run (the
    member-record phrases are listed only if the text needs its exempt spans)."""
    text = render_text(plan, kind, locale, values)
    violations = message_rules.check(
        kind,
        text,
        locale=locale,
        lexicon=plan.lexicon,
        store_name=values.get("store_name"),
        assistant_name=values.get("assistant_name"),
        exempt=message_rules.iter_data_phrases(values, locale),
    )
    return text, violations


# --------------------------------------------------------------------------- values


def signer(plan: PlanDay, m: MemberRow, c: Due) -> tuple[int | None, int | None, str, str]:
    """(store id, assistant id, store name, assistant name) signing the message: the
    candidate's store and assistant (the sale's, the application's), else the member's;
    an inactive assistant falls back to the member's, a missing store to the brand."""
    store_id = c.store_id if c.store_id is not None else m.store_id
    assistant = plan.assistants.get(c.assistant_id) if c.assistant_id else None
    if assistant is None or not assistant.active:
        assistant = plan.assistants.get(m.assistant_id) if m.assistant_id else None
        if assistant is not None and not assistant.active:
            assistant = None
    store = plan.stores.get(store_id) if store_id is not None else None
    store_name = store.name if store is not None else plan.settings.brand.name
    return (
        store_id,
        assistant.id if assistant else None,
        store_name,
        assistant.name if assistant else "",
    )


def message_values(
    plan: PlanDay, m: MemberRow, c: Due, locale: str, ctx: BatchContext
) -> tuple[int | None, int | None, dict[str, Any]]:
    """(store id, assistant id, template values) of candidate `c` for member `m`."""
    store_id, assistant_id, store_name, assistant_name = signer(plan, m, c)
    v: dict[str, Any] = {
        "member_name": m.name,
        "store_name": store_name,
        "assistant_name": assistant_name,
    }
    kind = c.kind
    if kind == "points_notice":
        sale: Sale = c.data
        reward, missing = _next_reward(plan, m.points)
        v.update(
            purchase_date=sale.local_date,
            purchase_store=store_name,
            items=ctx.items.get(sale.id, []),
            points=m.points,
            cumulative_spend=m.cumulative_spend,
            missing_for_reward=missing,
            reward_name=local_name(reward, locale) if reward else None,
        )  # fmt: skip
    elif kind in ("care_d3", "care_d7", "care_d10") and c.data is not None:
        sale = c.data
        v["items"] = ctx.items.get(sale.id, [])
        if KINDS[kind].care_tips:
            v["care_tips"] = render.care_tips(ctx.category.get(sale.id), locale)
    elif kind == "points_expiry":
        points, expires = c.data
        v.update(expiring_points=points, expiry_date=expires, points=m.points)
    elif kind in ("voucher_expiry", "voucher_issued"):
        codes, expires = c.data
        v.update(voucher_codes=codes, expiry_date=expires)
    elif kind in ("card_pickup", "card_pickup_again", "card_mailed"):
        level = plan.settings.tiers.find(c.data.tier)
        v["tier_name"] = local_name(level, locale) if level else c.data.tier
        if kind != "card_mailed":
            v["pickup_store"] = store_name
    elif kind == "holiday":
        v.update(festival=c.data.code, festival_name=c.data.name(locale))
    elif kind == "seasonal":
        v.update(season=c.data.season, season_name=c.data.name(locale))
    elif kind in ("wedding_anniversary", "join_anniversary"):
        v["years"] = c.data
    return store_id, assistant_id, v


def _next_reward(plan: PlanDay, points: int):
    """(reward, points missing): the cheapest reward the balance does not cover;
    when it covers them all, the dearest one with 0 missing; (None, None) if none."""
    catalogue = sorted(plan.settings.rewards.catalogue, key=lambda r: r.cost)
    if not catalogue:
        return None, None
    for reward in catalogue:
        if reward.cost > points:
            return reward, reward.cost - points
    return catalogue[-1], 0
