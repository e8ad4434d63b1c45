"""Scenario c: the SMS provider misbehaving under both replicas' senders (docs/scheduler.md
"The outbox and its states"), each phase measured and checked:

1. down (every send answers 503) for `outage` seconds → a few probes, nothing given up,
   everything sent after recovery, the breakers open and close;
2. throttling: a 429 with `Retry-After` → no replica sends again before it has passed;
3. hanging (no answer) for `hang` seconds → calls time out, everything sent after;
4. refusals for good: 21610 → `undeliverable` and the member stopped (consent proof,
   channel `provider`); 21211 → `undeliverable`, the number marked bad and never used
   again (the next message to it is suppressed, the provider not called).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

from scheduler.send.send_retry import PROBE_NOTE
from tests.reliability.harness import (
    CALL_TIMEOUT,
    OUTBOX,
    BreakerWatch,
    Soak,
    breaker_gauge,
    phone,
)

SENT = {"sent", "delivered"}


def _between(times: list[float], start: float, end: float) -> list[float]:
    return [t for t in times if start <= t <= end]


def _opened_during(watch: BreakerWatch, start: float, end: float) -> list[tuple]:
    """Breaker periods (port, opened, closed) that opened in [start, end]."""
    return [p for p in watch.periods("sms") if start <= p[1] <= end]


async def _all_closed(soak: Soak) -> float:
    """Until no replica's SMS breaker is open (`/metrics`); when that was."""
    ports = [r.port for r in soak.stack.replicas]
    deadline = time.monotonic() + CALL_AND_PAUSE
    while any(breaker_gauge(port).get("sms", True) for port in ports):
        assert time.monotonic() < deadline, "a breaker stayed open after the recovery"
        await asyncio.sleep(0.2)
    return time.monotonic()


async def provider_faults(
    soak: Soak, *, outage: float = 30, retry_after: int = 5, hang: float = 60, batch: int = 20
) -> dict:
    provider = soak.provider
    numbers = [phone(4, n) for n in range(5)]
    for number in numbers:
        await soak.member(number)
    replicas = len(soak.stack.replicas)
    deliver_within = hang + 2 * CALL_AND_PAUSE + 120
    figures: dict = {}
    with BreakerWatch([r.port for r in soak.stack.replicas]) as watch:
        # 1. down
        provider.set("twilio", down=503)
        t0 = time.monotonic()
        ids = await soak.enqueue(numbers, batch, "down")
        await asyncio.sleep(outage)
        provider.set("twilio", down=None)
        up = time.monotonic()
        await soak.wait_statuses(ids, SENT, within=deliver_within)
        done = time.monotonic()
        closed = await _all_closed(soak)
        calls = _between(provider.log("twilio")["received"], t0, up)
        failed = await _failed_events(soak, ids, t0)
        spent = Counter(m for m, _at, reason in failed if not reason.endswith(PROBE_NOTE))
        # An outage costs a message at most one attempt per sender, and the senders
        # probe it with a doubling pause instead of calling once per message and pass.
        probes = replicas * (math.log2(outage / OUTBOX["retry_backoff"]) + 2)
        assert len(calls) <= replicas * OUTBOX["concurrency"] + probes, len(calls)
        assert max(spent.values()) <= replicas, spent
        opened = _opened_during(watch, t0, up)
        assert opened, f"no breaker opened during the outage: {watch.changes}"
        figures["down"] = {
            "seconds": outage,
            "calls_during_outage": len(calls),
            "call_gaps_s": [round(b - a, 2) for a, b in zip(calls, calls[1:], strict=False)],
            "most_attempts_spent": max(spent.values()),
            "breakers_opened_after_s": [round(p[1] - t0, 1) for p in opened],
            "all_sent_after_recovery_s": round(done - up, 1),
            "all_breakers_closed_after_recovery_s": round(closed - up, 1),
            "failed_events": len(failed),
            "failed_at_s": sorted({at for _m, at, _r in failed}),
        }

        # 2. throttling
        provider.set("twilio", failures=[[429, {"Retry-After": str(retry_after)}]])
        t1 = time.monotonic()
        ids = await soak.enqueue(numbers, batch, "throttle")
        await soak.wait_statuses(ids, SENT, within=deliver_within)
        received = _between(provider.log("twilio")["received"], t1, time.monotonic())
        told = received[0]  # the first call after the failure was set got the 429
        # calls already under way when the 429 came may land just after it (1.5 s)
        early = _between(received, told + 1.5, told + retry_after - 0.1)
        assert not early, f"sent {[round(t - told, 2) for t in early]} s after a 429"
        figures["throttle"] = {
            "retry_after_s": retry_after,
            "next_call_after_s": round(min(t for t in received if t > told + 1.5) - told, 2),
        }

        # 3. hanging
        provider.set("twilio", hold_for=hang)
        t2 = time.monotonic()
        ids = await soak.enqueue(numbers, batch, "hang")
        await asyncio.sleep(hang)
        released = time.monotonic()
        await soak.wait_statuses(ids, SENT, within=deliver_within)
        done = time.monotonic()
        closed = await _all_closed(soak)
        hung = provider.log("twilio")["hung"]
        opened = _opened_during(watch, t2, released + CALL_TIMEOUT)
        assert opened, f"no breaker opened while the provider hung: {watch.changes}"
        figures["hang"] = {
            "seconds": hang,
            "calls_held": hung,
            "breakers_opened_after_s": [round(p[1] - t2, 1) for p in opened],
            "all_sent_after_release_s": round(done - released, 1),
            "all_breakers_closed_after_release_s": round(closed - released, 1),
            "failed_at_s": sorted({at for _m, at, _r in await _failed_events(soak, ids, t2)}),
        }

    # 4. refusals for good
    figures["codes"] = await _refusals(soak)
    return figures


CALL_AND_PAUSE = 10 + 300
"""A call's timeout plus the longest pause (the breaker's cap): the longest a sender may
take to find out a provider came back."""


async def _failed_events(soak: Soak, ids: list[int], since: float) -> list[tuple]:
    """(message, seconds after `since`, reason) of the messages' moves to `failed`: the
    attempt times the backoff spaces out."""
    offset = time.time() - time.monotonic()
    return [
        (m, round(float(at) - offset - since, 1), reason)
        for m, _f, to, at, reason in await soak.events(ids)
        if to == "failed"
    ]


async def _refusals(soak: Soak) -> dict:
    stop, bad = phone(4, 90), phone(4, 91)
    for number in (stop, bad):
        await soak.member(number)
    soak.provider.set("twilio", refuse_to={stop: ["code", 21610], bad: ["code", 21211]})
    ids = await soak.enqueue([stop], 1, "stopped") + await soak.enqueue([bad], 1, "bad")
    await soak.wait_statuses(ids, {"undeliverable"}, within=60)
    status, member = await soak.api("GET", f"/api/members/{stop.replace('+', '%2B')}")
    assert status == 200 and member["stopped"] is True, member
    consent = await soak.rows(
        "SELECT c.action, c.channel, c.source FROM consent_events c"
        " JOIN members m ON m.id = c.member_id WHERE m.phone = :p",
        p=stop,
    )
    assert [c[:2] for c in consent] == [("stop", "provider")], consent
    marked = await soak.rows(
        "SELECT bad, bad_reason FROM identities WHERE channel = 'sms' AND address = :p", p=bad
    )
    assert marked and marked[0][0] is True, marked
    calls_before = sum(m.get("To") == bad for m in soak.provider.log("twilio")["refused"])
    again = await soak.enqueue([bad], 1, "bad-again")
    await soak.wait_statuses(again, {"suppressed"}, within=60)
    calls_after = sum(m.get("To") == bad for m in soak.provider.log("twilio")["refused"])
    assert calls_after == calls_before == 1, (calls_before, calls_after)
    reasons = await soak.rows(
        "SELECT id, status, reason FROM outbox WHERE id = ANY(:i) ORDER BY id", i=ids
    )
    return {
        "21610": {"message": reasons[0][1:], "consent": consent[0]},
        "21211": {"message": reasons[1][1:], "identity": marked[0], "next_message": "suppressed"},
    }
