"""The reliability scenarios (issue 14), each run against a `harness.Soak` and returning
its figures; they assert what must hold. Sizes are parameters: the short mode
(tests/reliability/test_*.py) and the long one (bench/soak.py) run the same code.

- `redemptions`: one member redeems over both channels, on both replicas at once.
- `outbox_under_kills`: the outbox drains while replicas are killed with SIGKILL.
- `provider_faults`: the SMS provider down (5xx), throttling (429 + Retry-After),
  hanging, and refusing for good (21610, 21211).
- `repeated_msgids`: each WeChat MsgId delivered 3× to different replicas at once.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter

from tests.payloads import sms, twilio_signature
from tests.reliability.harness import OUTBOX, Soak, claim_limit, phone

REWARD_COST = 3000
"""Points of reward 1 in the default catalogue (CONTRACT.md: 3,000 points → 300 yuan)."""
SENT_OR_DELIVERED = {"sent", "delivered"}
_msg_ids = iter(range(7_000_000_000_000_000_001, 8_000_000_000_000_000_000))


def msg_id() -> str:
    return str(next(_msg_ids))


async def sms_to(soak: Soak, url: str, number: str, body: str) -> str:
    """An inbound SMS posted to `url` (a replica or haproxy), signed for the public URL."""
    form = sms(number, body)
    headers = {"X-Twilio-Signature": twilio_signature(f"{soak.stack.url}/sms/twilio", form)}
    async with soak.http.post(url + "/sms/twilio", data=form, headers=headers) as resp:
        answer = await resp.text()
        assert resp.status == 200, answer
    return answer


async def ledger_invariant(soak: Soak, member_id: int) -> tuple[int, int, int]:
    """(members.points, sum of the ledger, sum of open lots): equal, and not negative."""
    (row,) = await soak.rows(
        "SELECT m.points,"
        " (SELECT coalesce(sum(delta), 0) FROM points_ledger WHERE member_id = m.id),"
        " (SELECT coalesce(sum(remaining), 0) FROM points_lots WHERE member_id = m.id)"
        " FROM members m WHERE m.id = :id",
        id=member_id,
    )
    assert row[0] == row[1] == row[2] >= 0, f"points, ledger, lots: {row}"
    return row


# --------------------------------------------------------------------------- a


async def redemptions(soak: Soak, *, attempts: int = 100) -> dict:
    """`attempts` redemptions of reward 1 by one member whose balance covers about a
    third of them (an odd number, so that the last covered one races its twin).

    The bot holds one pending redemption per sender (channel + address) and a member
    has one phone and one WeChat account, so the attempts go in rounds of two: WeChat
    and SMS each ask (兑换 1) at once, then each confirms (确认) on both replicas at
    once — four confirmations racing for two redemptions and one balance."""
    number, openid = phone(1, 0), "o_redeem_1"
    covered = (attempts * 3 // 10) | 1
    await soak.member(number, openid=openid, spend=covered * REWARD_COST + REWARD_COST // 2)
    member_id = (await soak.member_ids([number]))[number]
    balance = (await ledger_invariant(soak, member_id))[0]
    expected = min(attempts, balance // REWARD_COST)
    assert expected < attempts, "the balance must not cover every attempt"
    lb, replicas = soak.stack.url, [r.url for r in soak.stack.replicas]
    started = time.monotonic()
    codes: set[str] = set()
    for _ in range(attempts // 2):
        await asyncio.gather(
            soak.wechat(lb, openid, "兑换 1", msg_id()), sms_to(soak, lb, number, "兑换 1")
        )
        confirms = [soak.wechat(url, openid, "确认", msg_id()) for url in replicas]
        confirms += [sms_to(soak, url, number, "确认") for url in replicas]
        for reply in await asyncio.gather(*confirms):
            codes.update(re.findall(r"券码：(\w+)", reply))
    elapsed = time.monotonic() - started
    (redeemed,) = await soak.rows(
        "SELECT count(*) FROM points_ledger WHERE member_id = :id AND key LIKE 'redeem:chat:%'",
        id=member_id,
    )
    (vouchers,) = await soak.rows(
        "SELECT count(*) FROM vouchers WHERE member_id = :id AND redemption_key LIKE 'chat:%'",
        id=member_id,
    )
    points, ledger, lots = await ledger_invariant(soak, member_id)
    assert redeemed[0] == vouchers[0] == expected, (redeemed, vouchers, expected)
    assert points == balance - expected * REWARD_COST
    (named,) = await soak.rows(
        "SELECT count(*) FROM vouchers WHERE member_id = :id AND code = ANY(:codes)",
        id=member_id,
        codes=sorted(codes),
    )
    assert len(codes) == named[0] == expected, (codes, named, expected)
    return {
        "attempts": attempts,
        "balance_before": balance,
        "covered": expected,
        "vouchers_issued": vouchers[0],
        "balance_after": points,
        "ledger_sum": ledger,
        "open_lots": lots,
        "requests": attempts // 2 * 6,
        "seconds": round(elapsed, 1),
    }


# --------------------------------------------------------------------------- b


async def outbox_under_kills(
    soak: Soak, *, messages: int = 2000, kills: int = 20, seed: int = 14
) -> dict:
    """`messages` SMS drained by both replicas while a random replica is killed with
    SIGKILL at a random moment, `kills` times (restarted at once each time)."""
    rng = random.Random(seed)
    numbers = [phone(2, n) for n in range(max(5, messages // 40))]
    for number in numbers:
        await soak.member(number)
    ids = await soak.enqueue(numbers, messages, "kill")
    started = time.monotonic()
    expected_drain = messages / OUTBOX["rate_sms"]
    kill_times: list[float] = []
    while len(kill_times) < kills:
        await asyncio.sleep(rng.uniform(0.2, 1.6) * 0.8 * expected_drain / kills)
        running = [r for r in soak.stack.replicas if r.running]
        victim = rng.choice(running)
        victim.kill()
        kill_times.append(time.monotonic())
        soak.stack.replicas.remove(victim)
        soak.stack.start_replica(victim.port)  # back at once; nobody waits for it
    counts = await soak.wait_statuses(
        ids, SENT_OR_DELIVERED, within=OUTBOX["claim_timeout"] + 3 * expected_drain + 120
    )
    drained = time.monotonic() - started
    for replica in soak.stack.replicas:
        await asyncio.to_thread(soak.stack.wait_healthy, replica)
    accepted = [m for m in soak.provider.log("twilio")["accepted"] if "kill#" in m["Body"]]
    seen: dict[str, list[float]] = {}
    for m in accepted:
        seen.setdefault(m["Body"].split("kill#", 1)[1].split("。", 1)[0], []).append(m["at"])
    lost = messages - len(seen)
    duplicates = {tag: sorted(at) for tag, at in seen.items() if len(at) > 1}
    (stuck,) = await soak.rows(
        "SELECT count(*) FROM outbox WHERE id = ANY(:ids) AND status = 'sending'", ids=ids
    )
    assert lost == 0 and stuck[0] == 0, (lost, stuck)
    # docs/scheduler.md: a message is sent again only when a process died after the
    # provider took it and before the result was recorded — a kill within a claim's
    # lifetime after that send — and never more than one claim's worth per kill.
    extra = len(accepted) - len(seen)
    bound = kills * claim_limit()
    assert extra <= bound, (extra, bound)
    gaps = []
    for tag, at in duplicates.items():
        for first, again in zip(at, at[1:], strict=False):
            assert any(first <= k <= first + OUTBOX["claim_timeout"] for k in kill_times), tag
            gaps.append(again - first)
    return {
        "messages": messages,
        "kills": kills,
        "drain_seconds": round(drained, 1),
        "statuses": counts,
        "lost": lost,
        "stuck_sending": stuck[0],
        "duplicates": len(duplicates),
        "extra_sends": extra,
        "extra_sends_bound": bound,
        "sends_at_provider": len(accepted),
        "duplicate_resend_gap_s": [round(min(gaps), 1), round(max(gaps), 1)] if gaps else None,
    }


# --------------------------------------------------------------------------- d

HANDOFF = "我上周买的大衣袖子有点长，能帮我改短一点吗"
"""A sentence the bot hands to the member's assistant: each delivery would add a message
to the conversation — an effect nothing but the MsgId keeps single."""
STEPS = ("兑换 1", "确认", HANDOFF, "TD")
"""A member's state-changing messages, in order: ask to redeem (a pending action),
confirm (a voucher and a ledger entry), a hand-off (an inbox message), stop (consent)."""


async def repeated_msgids(soak: Soak, *, msgids: int = 200) -> dict:
    """`msgids` WeChat messages (the `STEPS` of msgids / 4 members), each delivered 3×
    at once with its MsgId: to each replica and through haproxy."""
    members = max(1, msgids // len(STEPS))
    openids = [f"o_msgid_{n}" for n in range(members)]
    numbers = [phone(3, n) for n in range(members)]
    for number, openid in zip(numbers, openids, strict=True):
        await soak.member(number, openid=openid, spend=REWARD_COST)
    ids = await soak.member_ids(numbers)
    urls = [*(r.url for r in soak.stack.replicas), soak.stack.url]
    started = time.monotonic()
    differing = 0
    for step in STEPS:
        sends = []
        for openid in openids:
            mid = msg_id()
            sends.append(asyncio.gather(*(soak.wechat(u, openid, step, mid) for u in urls)))
        for copies in await asyncio.gather(*sends):
            differing += len({c for c in copies if c}) > 1
    elapsed = time.monotonic() - started
    member_ids = sorted(ids.values())
    effects = {}
    queries = {
        "vouchers": "SELECT member_id, count(*) FROM vouchers WHERE member_id = ANY(:m)"
        " AND redemption_key LIKE 'chat:%' GROUP BY member_id",
        "redemption_entries": "SELECT member_id, count(*) FROM points_ledger"
        " WHERE member_id = ANY(:m) AND key LIKE 'redeem:chat:%' GROUP BY member_id",
        "inbox_messages": "SELECT c.member_id, count(*) FROM conversation_messages x"
        " JOIN conversations c ON c.id = x.conversation_id WHERE c.member_id = ANY(:m)"
        " AND x.author = 'member' GROUP BY c.member_id",
        "stops": "SELECT member_id, count(*) FROM consent_events WHERE member_id = ANY(:m)"
        " AND action = 'stop' GROUP BY member_id",
    }
    for name, sql in queries.items():
        per_member = dict(await soak.rows(sql, m=member_ids))
        effects[name] = Counter(per_member.get(m, 0) for m in member_ids)
        assert effects[name] == Counter({1: members}), (name, effects[name])
    for member_id in member_ids:
        await ledger_invariant(soak, member_id)
    assert differing == 0, f"{differing} MsgIds got different answers"
    return {
        "msgids": members * len(STEPS),
        "deliveries": members * len(STEPS) * len(urls),
        "members": members,
        "effects_per_member": {k: dict(v) for k, v in effects.items()},
        "seconds": round(elapsed, 1),
    }
