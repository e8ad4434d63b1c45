"""The scheduler inside `memberbot serve`: the outbox sender and the daily plan.

    bot.background.setup(app)        # after the database, HTTP, SMS and channel contexts

`setup` adds one `cleanup_ctx` (STYLE.md: background work is a cleanup_ctx task,
cancelled and awaited on shutdown) that:

- always runs the outbox sender loop (`scheduler.send.sender.Sender.run`) as a background
  task — CONTRACT.md: with ``scheduler.enabled = false`` serve plans nothing by
  itself, but the outbox sender still runs;
- when ``scheduler.enabled``, starts an APScheduler 3.11 `AsyncIOScheduler` with one
  job, the daily run (`scheduler.jobs.run_daily` for the brand's today) on a
  `CronTrigger` at ``scheduler.plan_at`` in the brand's timezone (passed explicitly:
  a CronTrigger ignores the scheduler's timezone, LIBRARIES.md);
- catches up on start (MESSAGING.md "Timing"): when the brand's local time is past
  ``plan_at`` and today's run has not finished, today's run starts at once. Only
  today's: a day missed entirely is never planned late (greetings are not sent late
  on another day; the sender also refuses a greeting whose day has passed).

Several replicas may each run this: the daily run elects one planner per day in the
database (`scheduler.jobs`), and the sender's claims share the outbox safely. A
replica that finds the day's run unfinished (another replica is at it, or a run died
or its plan failed) looks again every `RETRY_EVERY` until it has finished, taking it
over once stale — but only while it is still that brand day.

The aiohttp-free parts (the plan time, the catch-up rule, the replica's name, the
template check) are in `scheduler.service`; the typed app keys in `bot.appkeys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.appkeys import (
    CATCH_UP,
    CLOCK,
    RUNNING,
    SCHEDULER,
    SENDER,
    SESSIONS,
    SETTINGS,
    SMS_SENDER,
    TRANSPORTS,
)
from bot.channels.wechat import WECHAT_API
from models.db import transaction
from models.types import utcnow
from scheduler.jobs import DailyResult, run_daily, run_finished
from scheduler.send.sender import Sender
from scheduler.send.transports import Transports
from scheduler.service import due_catch_up, plan_time, replica_name

log = logging.getLogger("memberbot.scheduler")

DAILY_JOB_ID = "daily_plan"
RETRY_EVERY = timedelta(minutes=5)
"""How often an unfinished daily run is looked at again the same day."""


def _now(app: web.Application) -> datetime:
    return app.get(CLOCK, utcnow)()


def _brand_day(app: web.Application, now: datetime) -> date:
    return now.astimezone(app[SETTINGS].brand.tz).date()


async def run_day(app: web.Application, day: date) -> DailyResult | None:
    """The daily run for brand day `day`, stamped with the scheduler clock's time."""
    return await run_daily(
        app[SESSIONS], settings=app[SETTINGS], day=day, now=_now(app), replica=replica_name()
    )


async def _daily_job(app: web.Application, day: date | None = None) -> None:
    """Run the day (default: the brand's today) until its run has finished, retrying
    every `RETRY_EVERY` while it is unfinished — another replica is at it, or a run
    died or failed and becomes stale (`scheduler.jobs.STALE_AFTER`, then taken over)
    — but only while it is still that day: a day is never planned late."""
    task = asyncio.current_task()
    app[RUNNING].add(task)
    day = day or _brand_day(app, _now(app))
    try:
        while True:
            if _brand_day(app, _now(app)) != day:
                log.error("daily run of %s did not finish that day; not run late", day)
                return
            try:
                await run_day(app, day)
                async with transaction(app[SESSIONS]) as session:
                    if await run_finished(session, day=day):
                        return
            except Exception:  # logged; retried like an unfinished run
                log.exception("daily job %s failed", day)
            await asyncio.sleep(RETRY_EVERY.total_seconds())
    finally:
        app[RUNNING].discard(task)


def _transports(app: web.Application) -> Transports:
    if TRANSPORTS in app:
        return app[TRANSPORTS]
    settings = app[SETTINGS]
    return Transports.build(
        sms_sender=app[SMS_SENDER],
        public_url=settings.server.public_url,
        wechat_api=app.get(WECHAT_API),
        templates=settings.wechat.templates,
    )


def make_scheduler(app: web.Application) -> AsyncIOScheduler:
    """The scheduler with the daily job at ``plan_at`` in the brand's timezone (not started)."""
    settings = app[SETTINGS]
    tz = settings.brand.tz
    at = plan_time(settings)
    scheduler = AsyncIOScheduler(timezone=tz)
    scheduler.add_job(
        _daily_job,
        CronTrigger(hour=at.hour, minute=at.minute, timezone=tz),
        args=[app],
        id=DAILY_JOB_ID,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,  # a late firing still plans today (it reads today)
    )
    return scheduler


async def _catch_up_if_due(app: web.Application) -> None:
    settings = app[SETTINGS]
    local = _now(app).astimezone(settings.brand.tz)
    async with transaction(app[SESSIONS]) as session:
        finished = await run_finished(session, day=local.date())
    if due_catch_up(local, plan_time(settings), finished):
        log.info("catching up the daily run of %s", local.date())
        app[CATCH_UP] = asyncio.create_task(_daily_job(app, local.date()))


async def _stop(task: asyncio.Task | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    sender = Sender(
        sessions=app[SESSIONS],
        settings=app[SETTINGS],
        transports=_transports(app),
        clock=app.get(CLOCK, utcnow),
    )
    app[SENDER] = sender
    sending = asyncio.create_task(sender.run(), name="outbox-sender")
    scheduler: AsyncIOScheduler | None = None
    try:
        if app[SETTINGS].scheduler.enabled:
            scheduler = make_scheduler(app)
            scheduler.start()
            app[SCHEDULER] = scheduler
            await _catch_up_if_due(app)
        yield
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        await _stop(app.get(CATCH_UP))
        for task in list(app[RUNNING]):
            await _stop(task)
        await _stop(sending)


def setup(app: web.Application) -> None:
    """Add the sender loop and the daily scheduler. Call after the database, HTTP, SMS
    sender and channel contexts are added (it uses `app[SESSIONS]`, `app[SMS_SENDER]`
    and the WeChat API client when WeChat is enabled)."""
    app[RUNNING] = set()
    app.cleanup_ctx.append(_scheduler_ctx)
