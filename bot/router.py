"""Member keywords → intent + arguments (CONTRACT.md "Member keywords").

Matching is separate from handling (python-telegram-bot's PrefixHandler shape):
`route(text)` normalises the text once, matches its first word against frozen
keyword sets and hands the rest of the text on as the argument string. Nothing
here touches the database; the handlers in `bot/handlers/` act on the `Match`.

Normalisation (`normalise`): NFKC (full-width → half-width, so "ＪＦ" is "JF"),
case-folded, surrounding spaces, punctuation and symbols (ASCII and CJK, emoji
included) stripped, punctuation between words turned into spaces ("兑换：1" is
"兑换 1"), inner spaces collapsed. "-", "/", "." and "+" inside the text are kept
for dates and phone numbers ("领卡 11-28", "绑定 +8613800138000").

Matching rules:

- Stop words match only the whole message, spaces ignored, possibly several of
  them run together ("TD退订", "stop all") and inside a polite wrapper ("我要退订",
  "回复TD退订", "stop please"): like the carriers, "T" alone stops but
  "T 恤多少钱" (a T-shirt question) does not. Stop words win over everything
  else, including a pending confirmation (the caller handles that).
- A message of nothing but punctuation with a "?" in it ("?", "？", "?!") is the
  help word, although "?" is punctuation and would otherwise be stripped away.
- Every other keyword matches the first word; the rest is the argument string
  ("兑换 1", "REDEEM 1", "领卡 周六", "BIND +8613800138000").
- Keywords that take an argument also match glued to it: Chinese keywords with
  any remainder ("兑换1", "领卡周六", "绑定13800138000"), English keywords only
  when the remainder starts with a digit or "+" ("redeem1", "dh2", "bind+86…"),
  so an English word that merely begins with a keyword is not mistaken for it.
- A message of exactly six digits is `Intent.CODE` (a binding code attempt; the
  bind handler decides whether a code is pending).

WeChat menu buttons send CLICK events whose keys map to the same intents
(`MENU_KEYS`, listed in the docs).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from models.strict import DIGITS, ascii_int


class Intent(StrEnum):
    POINTS = "points"
    REDEEM = "redeem"
    CONFIRM = "confirm"
    VOUCHERS = "vouchers"
    PICKUP = "pickup"
    MAIL = "mail"
    STOP = "stop"
    RESUME = "resume"
    HELP = "help"
    BIND = "bind"
    CODE = "code"
    UNKNOWN = "unknown"
    # Understood in sentences (`bot.understand`); HANDOFF also has the words 人工 / AGENT:
    HANDOFF = "handoff"
    """Only a person can answer it (stock, sizes, returns, complaints, "王芳在吗")."""
    SMALLTALK = "smalltalk"
    """Greetings, thanks, ok, goodbye; `args` names which ("greet", "thanks", …)."""
    CLARIFY = "clarify"
    """Two close meanings: ask with numbered options (`args`: "points,vouchers")."""
    MAYBE_STOP = "maybe_stop"
    """Might be a stop but is not clear: ask once, with the stop word."""


# CONTRACT.md words first on each line; the rest are common variants members type.
KEYWORDS: dict[Intent, frozenset[str]] = {
    Intent.POINTS: frozenset(
        {"积分", "查积分", "jf", "points", "balance",
         "我的积分", "积分查询", "查询积分", "point", "積分", "查積分"}
    ),
    Intent.REDEEM: frozenset({"兑换", "dh", "redeem", "积分兑换", "兌換"}),
    Intent.CONFIRM: frozenset({"确认", "confirm", "yes", "确定", "y", "確認", "確定"}),
    Intent.VOUCHERS: frozenset(
        {"券", "我的券", "vouchers", "voucher", "优惠券", "代金券", "我的优惠券", "我的代金券"}
    ),
    Intent.PICKUP: frozenset({"领卡", "lk", "pickup", "領卡"}),
    Intent.MAIL: frozenset({"寄卡", "mail"}),
    Intent.STOP: frozenset(
        {"不接受", "退订", "td", "t", "stop", "stopall", "unsubscribe",
         "cancel", "end", "quit", "revoke", "optout", "退訂"}
    ),
    Intent.RESUME: frozenset({"接受", "订阅", "start", "unstop", "訂閱"}),
    Intent.HELP: frozenset({"帮助", "help", "info", "?", "菜单", "menu", "幫助"}),
    Intent.BIND: frozenset({"绑定", "bind", "绑定会员", "綁定"}),
    Intent.HANDOFF: frozenset({"人工", "转人工", "人工客服", "agent"}),
}

# Keywords that take an argument, and so may be glued to it.
_ARG_INTENTS = (Intent.REDEEM, Intent.PICKUP, Intent.BIND)

MENU_KEYS: dict[str, Intent] = {
    "MENU_POINTS": Intent.POINTS,
    "MENU_REWARDS": Intent.REDEEM,
    "MENU_VOUCHERS": Intent.VOUCHERS,
    "MENU_CARD": Intent.PICKUP,
    "MENU_BIND": Intent.BIND,
    "MENU_HELP": Intent.HELP,
}
"""WeChat custom-menu CLICK keys → intents (configure the menu with these keys)."""

_INNER_PUNCT = re.compile(r"[，。！？、；：“”‘’（）【】《》「」『』…,;:!?\"'()\[\]{}<>~]+")
_SPACES = re.compile(r"\s+")
_SIX_DIGITS = re.compile(r"^[0-9]{6}$")
_KEEP_AT_EDGES = set("+")


def _is_edge_junk(ch: str) -> bool:
    """Surrounding characters to strip: spaces, punctuation, symbols, controls."""
    if ch in _KEEP_AT_EDGES:
        return False
    return unicodedata.category(ch)[0] in "PSZC" or ch.isspace()


def normalise(text: str) -> str:
    """NFKC, case-folded, trimmed of surrounding punctuation/spaces, inner spaces collapsed."""
    s = unicodedata.normalize("NFKC", text or "").casefold()
    start, end = 0, len(s)
    while start < end and _is_edge_junk(s[start]):
        start += 1
    while end > start and _is_edge_junk(s[end - 1]):
        end -= 1
    s = _INNER_PUNCT.sub(" ", s[start:end])
    return _SPACES.sub(" ", s).strip()


@dataclass(frozen=True, slots=True)
class Match:
    intent: Intent
    args: str = ""
    """What followed the keyword, normalised ("1", "周六", "+8613800138000")."""
    text: str = ""
    """The whole normalised message."""
    lang: str | None = None
    """The language the message is written in ("zh_CN", "en"), None when it does not
    show (digits, "JF", an emoji); see `bot.understand.language`."""
    sentence: bool = False
    """Understood from a sentence (`bot.understand`), not matched as a keyword."""


# Polite wrappers around a stop word that still mean stop ("我要退订", "回复TD退订", "stop please").
_STOP_PREFIXES = ("回复", "我要", "我想", "请", "please")
_STOP_SUFFIXES = ("谢谢", "了", "吧", "please", "thanks", "thankyou")


def _strip_wrappers(compact: str) -> str:
    for prefix in _STOP_PREFIXES:
        if compact.startswith(prefix):
            compact = compact[len(prefix):]
            break
    for suffix in _STOP_SUFFIXES:
        if compact.endswith(suffix):
            compact = compact[: -len(suffix)]
            break
    return compact


def _is_cjk(word: str) -> bool:
    return any(unicodedata.east_asian_width(c) in "WF" for c in word)


class Router:
    """The keyword tables, built once: the CONTRACT.md words plus a store's own.

    `extra` maps intent names ("points", "stop", …) to additional words
    (`[keywords]` in the configuration). Words are only ever added: the
    contract's words — the stop words above all — always keep working.
    """

    def __init__(self, extra: Mapping[str, Iterable[str]] | None = None):
        words: dict[Intent, set[str]] = {i: set(ws) for i, ws in KEYWORDS.items()}
        for name, added in (extra or {}).items():
            intent = Intent(name)
            words[intent] |= {normalise(w) for w in added if normalise(w)}
        self.words: dict[Intent, frozenset[str]] = {i: frozenset(w) for i, w in words.items()}
        self._first_word: dict[str, Intent] = {
            word: intent
            for intent, ws in self.words.items()
            if intent is not Intent.STOP
            for word in ws
        }
        self._stop_words = sorted(self.words[Intent.STOP], key=len, reverse=True)
        self._glued: list[tuple[str, Intent]] = sorted(
            ((w, i) for i in _ARG_INTENTS for w in self.words[i]),
            key=lambda p: len(p[0]),
            reverse=True,
        )

    def _only_stop_words(self, compact: str) -> bool:
        """True if `compact` (no spaces) is one or more stop words run together,
        possibly inside a polite wrapper."""
        return self._stop_run(compact) or self._stop_run(_strip_wrappers(compact))

    def _stop_run(self, compact: str) -> bool:
        if not compact:
            return False
        ok = [True] + [False] * len(compact)
        for i in range(len(compact)):
            if ok[i]:
                for word in self._stop_words:
                    if compact.startswith(word, i):
                        ok[i + len(word)] = True
        return ok[len(compact)]

    def route(self, text: str) -> Match:
        """Match one message (see the module docstring for the rules)."""
        norm = normalise(text)
        if not norm:
            raw = unicodedata.normalize("NFKC", text or "")
            if "?" in raw:  # nothing but punctuation, with a question mark in it
                return Match(Intent.HELP, "", "?")
            return Match(Intent.UNKNOWN, "", "")
        if self._only_stop_words(norm.replace(" ", "")):
            return Match(Intent.STOP, "", norm)
        if _SIX_DIGITS.match(norm):
            return Match(Intent.CODE, norm, norm)
        first, _, rest = norm.partition(" ")
        intent = self._first_word.get(first)
        if intent is not None:
            return Match(intent, rest.strip(), norm)
        for word, intent in self._glued:
            if first.startswith(word) and len(first) > len(word):
                remainder = norm[len(word):].strip()
                if _is_cjk(word) or remainder[:1] in DIGITS or remainder[:1] == "+":
                    return Match(intent, remainder, norm)
        return Match(Intent.UNKNOWN, "", norm)


DEFAULT_ROUTER = Router()


def route(text: str) -> Match:
    """Match one message with the contract's words only (see `Router`)."""
    return DEFAULT_ROUTER.route(text)


def route_menu(key: str | None) -> Match:
    """A WeChat menu CLICK key → the same intent as its keyword (unknown keys: help)."""
    intent = MENU_KEYS.get((key or "").strip().upper(), Intent.HELP)
    return Match(intent, "", "")


_CN_NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
                "九": 9, "十": 10}
_NUMBER = re.compile(r"[0-9]+")
_MAX_ITEM_DIGITS = 6


def item_number(args: str) -> int | None:
    """The reward number in "1", "第1个", "1号", "no 2", "三" (digits 0-9 after the
    NFKC folding of `normalise`); None if there is none; 0 (no such reward) for a
    number too long to be one."""
    m = _NUMBER.search(args)
    if m:
        number = ascii_int(m.group(), max_digits=_MAX_ITEM_DIGITS)
        return 0 if number is None else number
    for ch in args:
        if ch in _CN_NUMERALS:
            return _CN_NUMERALS[ch]
    return None
