"""One sentence → one `bot.router.Match`, as if the member had sent the keyword.

`Understander(catalogue).understand(raw, norm)` runs only when no keyword matched
(`bot.bot.MemberBot._match`). In order:

1. `bot.understand.text.prepare`: normalised text and its language;
2. `bot.understand.stops.consent`: a stop, a resume or a maybe-stop wins at once;
3. the cues of every meaning (`bot.understand.cues`) are scored;
4. a confirmation ("确认兑换", "yes, go ahead") is a confirmation;
5. what only a person can answer (stock, sizes, alterations, returns, complaints, a
   named assistant) is a hand-off when its cues are strong (a problem, a size) or
   outweigh every member meaning;
6. the member meanings: redeeming outranks the balance and the vouchers it names
   ("积分能换什么"), mailing outranks pickup ("别让我去拿了，寄给我"), help yields
   to anything more precise ("帮我查积分"); two meanings left equally strong →
   `Intent.CLARIFY` with both (numbered options, `bot.handlers.choice`);
7. nothing but a greeting, thanks, ok or goodbye → `Intent.SMALLTALK`;
8. anything else that is a real question → `Intent.HANDOFF`; the rest (gibberish,
   a lone word) → `Intent.UNKNOWN` (the short help).

Arguments are the keyword form's argument strings (`bot.understand.args`,
`bot.handlers.daytext.day_phrase`), so the handlers run unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import date

from bot.handlers.daytext import day_phrase, parse_day
from bot.router import Intent, Match
from bot.understand import cues
from bot.understand.args import phone_args, reward_args
from bot.understand.stops import consent
from bot.understand.text import Prepared, prepare
from models.rules import Reward

MEMBER = (Intent.REDEEM, Intent.POINTS, Intent.VOUCHERS, Intent.MAIL, Intent.PICKUP,
          Intent.BIND, Intent.HELP)  # fmt: skip
"""The keyword meanings, in the order options are offered."""
_OUTRANKS = {
    Intent.REDEEM: (Intent.POINTS, Intent.VOUCHERS),
    Intent.MAIL: (Intent.PICKUP,),
    Intent.BIND: (Intent.POINTS, Intent.HELP),
}
STRONG_HANDOFF = 4
_QUESTION_ZH = re.compile(
    r"吗|么|呢|怎么|什么|为什么|多少|哪|几|能不能|可不可以|可以.+吗|有没有"
    r"|是不是|想问|请问|请教"
)
_QUESTION_EN = re.compile(
    r"^(?:what|how|when|where|why|who|which|can|could|do|does|is|are|will|would|should|may)\b|\?"
    r"|\bi (?:want|need|would like)\b|\bplease\b"
)
_SIMPLE_ARGS = {
    Intent.REDEEM: re.compile(
        r"^(?:第\s*)?[0-9一二两三四五六七八九十]+\s*(?:个|号)?$|^(?:no|number"
        r"|#)\s*[0-9]+$"
    ),
    Intent.PICKUP: re.compile(r"^[0-9]{1,4}[-/.][0-9]{1,2}(?:[-/.][0-9]{1,2})?$"),
    Intent.BIND: re.compile(r"^\+?[0-9][0-9 -]*$"),
}
"""Arguments the keyword handlers read as they are (anything else is a sentence)."""
_ANY_DAY = date(2026, 1, 7)
"""Whether a text is a day does not depend on today (only which day it is)."""
_BOTH = re.compile(r"和|跟|以及|还有|\band\b|&|\+")
_CHECK = re.compile(r"^(?:查一?下|查询|查查|查|我要查|帮我查一?下|check|check please|look up)$")
_ONLY_LETTERS = re.compile(r"^[a-z]+$")


class Understander:
    def __init__(self, catalogue: Sequence[Reward] = ()):
        self._catalogue = tuple(catalogue)

    def refine(self, match: Match, raw: str) -> Match:
        """A keyword match, or — when its argument is a sentence rather than a number,
        a day or a phone ("兑换啥好", "领卡要带什么", "绑定会员卡") — what the
        sentence means. Keywords alone and simple arguments return at once."""
        intent, args = match.intent, match.args
        if not args or intent not in _SIMPLE_ARGS or _SIMPLE_ARGS[intent].match(args):
            return match
        if intent is Intent.PICKUP and parse_day(args, _ANY_DAY) is not None:
            return match
        understood = self.understand(raw, match.text)
        if understood.intent is intent and not understood.args and intent is not Intent.REDEEM:
            return replace(match, lang=understood.lang)  # "领卡 someday": the handler says so
        return understood

    def understand(self, raw: str, norm: str = "") -> Match:
        p = prepare(raw)
        intent, args = self._meaning(p, raw)
        return Match(intent, args, norm or p.text, lang=p.lang, sentence=True)

    def _meaning(self, p: Prepared, raw: str) -> tuple[Intent, str]:
        if not p.text:
            return Intent.UNKNOWN, ""
        said = consent(p)
        if said == "stop":
            return Intent.STOP, ""
        if said == "resume":
            return Intent.RESUME, ""
        if said == "maybe_stop":
            return Intent.MAYBE_STOP, ""
        negated = said == "negated"
        if _CHECK.match(p.text):
            return Intent.CLARIFY, "points=;vouchers="
        scores = score(p)
        if scores.get(Intent.CONFIRM):
            return Intent.CONFIRM, ""
        handoff = scores.pop(Intent.HANDOFF, 0)
        talk = scores.pop(Intent.SMALLTALK, 0)
        for winner, losers in _OUTRANKS.items():
            if scores.get(winner):
                for loser in losers:
                    if scores.get(loser, 0) <= scores[winner]:
                        scores.pop(loser, None)
        if len(scores) > 1:
            scores.pop(Intent.HELP, None)
        top = max(scores.values(), default=0)
        if handoff >= STRONG_HANDOFF or (handoff and handoff >= top):
            return Intent.HANDOFF, ""
        if top:
            ranked = sorted((i for i in MEMBER if i in scores), key=lambda i: -scores[i])
            both = len(ranked) > 1 and (
                scores[ranked[1]] == top >= 3 or _BOTH.search(p.text) is not None
            )
            if both:
                pair = sorted(ranked[:2], key=MEMBER.index)
                return Intent.CLARIFY, ";".join(f"{i}={self._args(i, p)}" for i in pair)
            return ranked[0], self._args(ranked[0], p)
        if talk:
            return Intent.SMALLTALK, smalltalk_kind(p)
        if handoff or (not negated and _is_question(p)):
            return Intent.HANDOFF, ""
        return Intent.UNKNOWN, ""

    def _args(self, intent: Intent, p: Prepared) -> str:
        if intent is Intent.REDEEM:
            return reward_args(p.text, p.zh, self._catalogue)
        if intent is Intent.PICKUP:
            return day_phrase(p.text) or ""
        if intent is Intent.BIND:
            return phone_args(p.text)
        return ""


def score(p: Prepared) -> dict[Intent, int]:
    """Each meaning's score (the weights of its cues found in the text)."""
    found: dict[Intent, int] = {}
    for table, text in ((cues.ZH, p.zh), (cues.EN, p.text)):
        for intent, patterns in table.items():
            total = sum(w for pattern, w in patterns if pattern.search(text))
            if total:
                found[intent] = found.get(intent, 0) + total
    return found


def smalltalk_kind(p: Prepared) -> str:
    for pattern, kind in cues.SMALLTALK_KIND:
        if pattern.search(p.text):
            return kind
    return cues.OK


def _is_question(p: Prepared) -> bool:
    """A real question or request (a person can answer it), not gibberish or a lone word."""
    if any("\u4e00" <= c <= "\u9fff" for c in p.zh):
        return len(p.zh) >= 4 and bool(_QUESTION_ZH.search(p.zh))
    words = p.text.split()
    if len(words) < 3 or all(_ONLY_LETTERS.match(w) is None for w in words):
        return False
    return bool(_QUESTION_EN.search(p.text))
