"""Scoring the understanding layer against a labelled corpus (bench and tests).

Each corpus line (JSON): ``text``, ``intent`` (a `bot.router.Intent` value) and
``args``: ``item`` (redeem: the reward number), ``day`` (pickup: the ISO date the
day phrase means when today is `CORPUS_TODAY`), ``phone`` (bind), ``kind`` (small
talk), ``options`` (clarify: the intents offered, any order). A message counts as
right when its intent and those arguments are right. Messages go through the whole
path of the bot: the keyword router first, the understanding layer when no keyword
matched (`understood`).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from bot.handlers.daytext import parse_day
from bot.router import Intent, Match, Router, item_number
from bot.understand.engine import Understander
from models.rules import Reward, RewardRules

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "corpus"
TUNING = CORPUS / "messages.jsonl"
HELD_OUT = CORPUS / "messages_heldout.jsonl"
CORPUS_TODAY = date(2026, 12, 2)
DEFAULT_CATALOGUE: tuple[Reward, ...] = tuple(RewardRules().catalogue)
"""The default catalogue (1 = 3,000 points → a 300-yuan voucher), as the corpus assumes."""


_ANSWER = {"yes": "ok", "no": "ok"}


def load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def understood(router: Router, understander: Understander, text: str) -> Match:
    match = router.route(text)
    if match.intent is Intent.UNKNOWN:
        return understander.understand(text, match.text)
    return understander.refine(match, text)


def args_ok(match: Match, expected: dict) -> bool:
    intent = match.intent
    if intent is Intent.REDEEM:  # read as the handler reads it
        return (item_number(match.args) if match.args else None) == expected.get("item")
    if intent is Intent.PICKUP:
        day = parse_day(match.args, CORPUS_TODAY) if match.args else None
        want = expected.get("day")
        return (day.isoformat() if day else None) == want
    if intent is Intent.BIND:
        digits = "".join(c for c in match.args if c.isdigit())
        return digits.removeprefix("86") == expected.get("phone", "")
    if intent is Intent.SMALLTALK:  # "yes" and "no" get the answer of "ok"
        return "kind" not in expected or _ANSWER.get(match.args, match.args) == expected["kind"]
    if intent is Intent.CLARIFY:
        offered = {part.partition("=")[0] for part in match.args.split(";") if part}
        return offered == set(expected.get("options", ()))
    return True


@dataclass
class Result:
    total: int = 0
    right: int = 0
    per_intent: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    confusions: Counter = field(default_factory=Counter)
    wrong: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(text, expected intent, got intent, got args)"""
    missed_stops: int = 0
    false_stops: int = 0
    micros: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0


def evaluate(rows: list[dict], catalogue=DEFAULT_CATALOGUE) -> Result:
    router, understander = Router(), Understander(catalogue)
    result = Result()
    started = time.perf_counter()
    for row in rows:
        match = understood(router, understander, row["text"])
        want, got = row["intent"], match.intent.value
        ok = want == got and args_ok(match, row.get("args", {}))
        result.total += 1
        result.per_intent[want][1] += 1
        if ok:
            result.right += 1
            result.per_intent[want][0] += 1
        else:
            result.confusions[(want, got)] += 1
            result.wrong.append((row["text"], want, got, match.args))
        if want == "stop" and got != "stop":
            result.missed_stops += 1
        if want != "stop" and got == "stop":
            result.false_stops += 1
    result.micros = (time.perf_counter() - started) / max(len(rows), 1) * 1e6
    return result
