"""The daily run's timing and the start-up template check (no web framework here).

`bot.background` wires these into `memberbot serve` (the outbox sender loop and the
APScheduler daily job, as cleanup contexts); `memberbot plan` and `lint` use them too.

- `plan_time`: ``scheduler.plan_at`` as a time of day in the brand's timezone.
- `due_catch_up`: whether today's run should start now, on start-up (MESSAGING.md
  "Timing"): only today's run, and only once the brand's local time is past
  ``plan_at`` — a day missed entirely is never planned late.
- `replica_name`: who is running (host:pid), recorded on the day's run.
- `check_templates(settings)` is the start-up refusal of a template that breaks the
  message rules (MESSAGING.md "Message classes").
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, time
from pathlib import Path

from models.kinds import KINDS, LOCALES
from models.settings import Settings
from scheduler.message_rules import lint_all


class TemplateRuleError(Exception):
    """A message template breaks the message rules: the service refuses to start."""


def check_templates(settings: Settings, *, template_dir: Path | None = None) -> int:
    """Lint every message template (`scheduler.message_rules.lint_all`) with the
    configured lexicon; raise `TemplateRuleError` naming each violation. Returns
    the number of templates checked."""
    found = lint_all(template_dir, settings.messaging.lexicon)
    if found:
        details = "; ".join(f"{path}: {v.rule}: {v.detail}" for path, v in found)
        raise TemplateRuleError(
            f"{len(found)} message template violation(s), run 'memberbot lint': {details}"
        )
    return len(KINDS) * len(LOCALES)


def due_catch_up(now_local: datetime, plan_at: time, run_finished: bool) -> bool:
    """True when today's daily run should start now: the brand's local time is at or
    past `plan_at` and today's run has not finished. Only the day of `now_local`
    is ever considered — a past day is never caught up."""
    return not run_finished and now_local.time().replace(tzinfo=None) >= plan_at


def plan_time(settings: Settings) -> time:
    hh, mm = settings.scheduler.plan_at.split(":")
    return time(int(hh), int(mm))


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
