"""Text as the understanding rules read it, and the language it is written in.

`prepare(raw)` gives a `Prepared`:

- ``text``: NFKC (full-width → half-width), case-folded, traditional characters of
  the domain folded to simplified (積分 → 积分), common typos mended (劵/卷 → 券,
  积份/机分 → 积分, 对换 → 兑换), colloquial and dialect words written plainly
  (咋 → 怎么, 啥 → 什么, 俺/咱 → 我, 木有 → 没有), English contractions and
  texting shorthand spelled out (don't → do not, pls → please, msgs → messages),
  pinyin abbreviations of the keywords written in Chinese when they stand alone
  (jf → 积分, yhq → 优惠券, xx → 谢谢), emoji that say something turned into
  words (👍 → 好的, 🙏 → 谢谢) and every other symbol or punctuation mark turned
  into a space;
- ``zh``: ``text`` without spaces (the Chinese rules read it);
- ``lang``: `language(raw)`.

`language(raw)`: "zh_CN" when the message has a CJK character, "en" when it has an
English word (two letters or more, not a pinyin abbreviation such as JF or TD),
None otherwise (digits, emoji, "T", "Y") — then the member's language decides.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

ZH = "zh_CN"
EN = "en"

_TRADITIONAL = str.maketrans(
    dict(
        zip(
            "積兌換領訂閱幫綁號週禮還發別訊們麼嗎給電話幾點個這裡會員選擇確認謝聯關過時間問題沒東買"
            "賣貨碼價錢質態開門營業說請經應該對錯優惠劵寄獎勵張碼購訊息歡遞郵詢",
            "积兑换领订阅帮绑号周礼还发别讯们么吗给电话几点个这里会员选择确认谢联关过时间问题没东买"
            "卖货码价钱质态开门营业说请经应该对错优惠券寄奖励张码购讯息欢递邮询",
            strict=True,
        )
    )
)
_FIXES = (
    (re.compile(r"积份|机分|鸡分|绩分|基分|记分|积粉"), "积分"),
    (re.compile(r"对换|兑奂|兑唤|对唤|兑还"), "兑换"),
    (re.compile(r"(?<=优惠|代金|我的|礼品)卷|卷(?=码|子)|(?<=[张个0-9])卷"), "券"),
    (re.compile(r"咋"), "怎么"),
    (re.compile(r"啥|神马|什嘛|森么"), "什么"),
    (re.compile(r"俺|咱"), "我"),
    (re.compile(r"[木米么]有"), "没有"),
    (re.compile(r"伐$"), "吗"),
    (re.compile(r"滴"), "的"),
    (re.compile(r"瞅"), "看"),
    (re.compile(r"嘛$"), "吗"),
)
_EN_FIXES = (
    (re.compile(r"\b(do|does|did|is|are|was|were|have|has|should|would|could)n'?t\b"), r"\1 not"),
    (re.compile(r"\bdont\b"), "do not"),
    (re.compile(r"\bwon'?t\b"), "will not"),
    (re.compile(r"\bcan'?t\b|\bcannot\b"), "can not"),
    (re.compile(r"\bi'?m\b"), "i am"),
    (re.compile(r"\b(what|where|how|that|it)'?s\b"), r"\1 is"),
    (re.compile(r"\bi'?ll\b"), "i will"),
    (re.compile(r"\bi'?d\b"), "i would"),
    (re.compile(r"\bpl[sz]\b|\bpleez\b|\bplease+\b"), "please"),
    (re.compile(r"\bu\b"), "you"),
    (re.compile(r"\bur\b"), "your"),
    (re.compile(r"\bthx\b|\bthanx\b|\bthnx\b|\bty\b|\bthank you\b|\bthanks+\b|\bta\b"), "thanks"),
    (re.compile(r"\bmsgs?\b"), "messages"),
    (re.compile(r"\btxts?\b|\bsmses\b|\bsms\b"), "texts"),
    (re.compile(r"\bpts\b|\bpoint\b|\bpnts\b|\bponits\b|\bpoitns\b"), "points"),
    (re.compile(r"\bvoucer|\bvoutcher|\bvoucher\b"), "vouchers"),
    (re.compile(r"\btmr\b|\btmrw\b|\btomorow\b|\btommorow\b|\btomorrow\b"), "tomorrow"),
    (re.compile(r"\bok+a*y*\b|\bk\b|\bkk\b"), "ok"),
    (re.compile(r"\bhii+\b|\bhiya\b|\bheya?\b|\bhello+\b|\bhallo\b"), "hi"),
    (re.compile(r"\bredem\b|\bredeam\b|\bredeme\b"), "redeem"),
)
# Pinyin abbreviations of the keywords (and two of small talk), only as a whole word.
PINYIN = {
    "jf": "积分",
    "cxjf": "查询积分",
    "cjf": "查积分",
    "dh": "兑换",
    "lk": "领卡",
    "jk": "寄卡",
    "td": "退订",
    "bz": "帮助",
    "yhq": "优惠券",
    "djq": "代金券",
    "wdq": "我的券",
    "bd": "绑定",
    "xx": "谢谢",
    "xxl": "谢谢啦",
    "nh": "你好",
    "zs": "知道了",
    "hd": "好的",
    "ok": "好的",
}
_EMOJI = {
    "👍": " 好的 ",
    "👌": " 好的 ",
    "🙏": " 谢谢 ",
    "💐": " 谢谢 ",
    "👋": " 你好 ",
    "🌹": " 谢谢 ",
    "❤": " 谢谢 ",
    "😊": " 好的 ",
    "🙂": " 好的 ",
    "🤝": " 好的 ",
    "🌞": " 早上好 ",
    "☀": " 早上好 ",
    "🌙": " 晚安 ",
}
_KEEP = set("+-/.:¥$%")
_LETTER_WORD = re.compile(r"[a-z]{2,}")
_SPACES = re.compile(r"\s+")
_GLUED = re.compile(r"(?<=[a-z])(?=[\u4e00-\u9fff])|(?<=[\u4e00-\u9fff])(?=[a-z])")


@dataclass(frozen=True, slots=True)
class Prepared:
    text: str
    """Normalised, words separated by single spaces."""
    zh: str
    """`text` without spaces."""
    lang: str | None


def _cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def language(raw: str) -> str | None:
    """ "zh_CN", "en" or None (see the module docstring)."""
    s = unicodedata.normalize("NFKC", raw or "").casefold()
    if any(_cjk(ch) for ch in s):
        return ZH
    for word in _LETTER_WORD.findall(s):
        if word not in PINYIN:
            return EN
    return None


def _clean(s: str) -> str:
    out = []
    for ch in s:
        if ch in _EMOJI:
            out.append(_EMOJI[ch])
        elif ch in _KEEP or ch.isalnum() or _cjk(ch):
            out.append(ch)
        elif ch == "'":
            out.append("'")
        else:
            out.append(" ")
    return "".join(out)


def prepare(raw: str) -> Prepared:
    lang = language(raw)
    s = unicodedata.normalize("NFKC", raw or "").casefold().translate(_TRADITIONAL)
    s = s.replace("’", "'")
    s = _clean(s)
    for pattern, repl in _FIXES:
        s = pattern.sub(repl, s)
    if lang == EN or lang is None:
        for pattern, repl in _EN_FIXES:
            s = pattern.sub(repl, s)
    s = _GLUED.sub(" ", s.replace("'", ""))
    words = _SPACES.sub(" ", s).strip().split(" ")
    if lang != EN:
        words = [PINYIN.get(w, w) for w in words]
    text = " ".join(w.strip(".-/:") or w for w in words).strip()
    return Prepared(text=text, zh=text.replace(" ", ""), lang=lang)
