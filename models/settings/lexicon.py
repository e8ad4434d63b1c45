"""The words the message rules look for (``[messaging.lexicon]``): typed config data.

A `Lexicon` has five categories of `Words`, each with Chinese and English
entries — both languages apply to every text (a Chinese greeting may still say
"SALE"): ``promotion``, ``new_arrivals``, ``products``, ``prying`` and
``allow`` (phrases that are never a hit though they contain a listed word, e.g.
"户外活动" is exercise, not an event). The defaults are deliberately not eager:
a false hit blocks a kind message, a missed one sends a promotion in a greeting.

`normalize` is the one normal form of text and entries (NFKC, case-folded, zero-width
characters dropped, quotes straightened, spaces collapsed): an entry that normalises to
nothing is refused here, and `scheduler.lexicon` matches normalised text against the
entries (how entries match is described there).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Words(BaseModel):
    """One lexicon category: Chinese and English entries (both apply to every text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zh: tuple[str, ...] = ()
    en: tuple[str, ...] = ()

    @field_validator("zh", "en")
    @classmethod
    def _entries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for entry in v:
            if not normalize(entry).strip():
                raise ValueError("empty entry")
            if entry.startswith("re:"):
                try:
                    compiled = re.compile(entry[3:])
                except re.error as exc:
                    raise ValueError(f"{entry!r}: bad regular expression ({exc})") from None
                if compiled.search(""):
                    raise ValueError(f"{entry!r}: the pattern matches empty text")
                try:  # entries are joined into one alternation: global flags can't be inside
                    re.compile(f"x|(?:{entry[3:]})")
                except re.error as exc:
                    raise ValueError(
                        f"{entry!r}: cannot be combined with other entries ({exc}); "
                        "use a scoped flag such as (?i:...) — texts are already lower-cased"
                    ) from None
        return v

    @property
    def entries(self) -> tuple[str, ...]:
        return self.zh + self.en


# fmt: off
def _words(zh: Iterable[str], en: Iterable[str]):
    return lambda: Words(zh=tuple(zh), en=tuple(en))


_PROMOTION_ZH = (
    "促销", "打折", "折扣", "优惠", "特价", "特惠", "降价", "满减", "代金券", "优惠券", "券",
    "积分兑换", "双倍积分", "积分翻倍", "多倍积分", "活动", "会员日", "秒杀", "清仓", "限时",
    "限量", "抢购", "大促", "买一送一", "赠品", "包邮", "元起",
    r"re:[¥$€£]\s*\d+(?:[,.]\d+)*",
    r"re:\d+(?:\.\d+)?\s*元(?![旦宵])",
    r"re:(?:\d+(?:\.\d+)?|[一二三四五六七八九]{1,2})\s*折(?![叠痕断腾])",
    r"re:满\s*[\d一二三四五六七八九十百千]+.{0,8}?[送减返]",
)
_PROMOTION_EN = (
    "sale", "discount", "discounted", "deal", "offer", "coupon", "voucher", "promo",
    "promo code", "promotion", "event", "clearance", "limited time", "buy one", "bogo",
    "free gift", "free shipping", "price", "double points", "bonus points", "extra points",
    "shop now", "member day",
    r"re:[$€£¥]\s*\d+(?:[,.]\d+)*",
    r"re:\d+(?:\.\d+)?\s*%\s*off",
    r"re:\bup to \d+\s*%",
)
_NEW_ARRIVALS_ZH = ("新品", "新款", "上新", "到货", "新货", "新上市", "新系列")
_NEW_ARRIVALS_EN = (
    "new arrival", "new collection", "latest collection", "just arrived", "just landed",
    "new in store", "now in store", "new stock", "back in stock", "new style",
)
_PRODUCTS_ZH = (
    "外套", "大衣", "风衣", "羽绒服", "棉服", "毛衣", "针织衫", "开衫", "卫衣", "衬衫", "T恤",
    "西装", "裤", "裙", "鞋", "靴", "包包", "手袋", "手提包", "背包", "钱包", "皮包", "围巾",
    "帽子",
)
_PRODUCTS_EN = (
    "jacket", "coat", "overcoat", "parka", "sweater", "jumper", "cardigan", "knitwear", "hoodie",
    "shirt", "blouse", "dress", "skirt", "trousers", "pants", "jeans", "shorts", "blazer",
    "shoe", "boot", "sneaker", "handbag", "bag", "wallet", "scarf", "scarves", "hat",
)
_PRYING_ZH = (
    "发生了什么", "发生什么", "出什么事", "出了什么事", "出啥事", "怎么了", "为什么没来",
    "为什么不来", "怎么没来", "怎么不来", "为何没来", "是不是不满意", "是否不满意",
    "哪里不满意", "对我们不满意", "遇到什么", "遇到了什么", "有什么事吗", "一切还好吗",
    "一切都好吗",
)
_PRYING_EN = (
    "what happened", "did something happen", "did anything happen", "has something happened",
    "is everything ok", "is everything okay", "is everything all right", "is everything alright",
    "are you ok", "are you okay", "why haven't you", "why have you not", "why did you stop",
    "something wrong", "anything wrong", "what's wrong", "what went wrong", "unhappy with us",
    "not happy with us",
)
_ALLOW_ZH = ("户外活动", "活动筋骨", "活动身体", "活动自如", "多活动", "上新台阶")
_ALLOW_EN = (
    "dress warmly", "dress in layers", "a great deal of", "a good deal of", "your promotion",
)

# fmt: on


class Lexicon(BaseModel):
    """The words the rules look for (``[messaging.lexicon]``); defaults are sensible, not eager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    promotion: Words = Field(default_factory=_words(_PROMOTION_ZH, _PROMOTION_EN))
    """Sale, discount, price, coupon/voucher, points offer, event: banned in every class."""
    new_arrivals: Words = Field(default_factory=_words(_NEW_ARRIVALS_ZH, _NEW_ARRIVALS_EN))
    """New arrivals: banned in greetings and service notices; in care only care_d30 may."""
    products: Words = Field(default_factory=_words(_PRODUCTS_ZH, _PRODUCTS_EN))
    """Product names: banned in seasonal messages."""
    prying: Words = Field(default_factory=_words(_PRYING_ZH, _PRYING_EN))
    """Asking whether something happened: banned in dormant messages."""
    allow: Words = Field(default_factory=_words(_ALLOW_ZH, _ALLOW_EN))
    """Phrases that are never a hit, though they contain a listed word."""


# --------------------------------------------------------------------------- normal form

_ZERO_WIDTH = {ord(c): None for c in "\u200b\u200c\u200d\u2060\ufeff"}
_QUOTES = {ord("\u2018"): "'", ord("\u2019"): "'", ord("\u201c"): '"', ord("\u201d"): '"'}
_SPACES = re.compile(r"[^\S\n]+")
_ODD = re.compile("[" + "".join(map(chr, {**_ZERO_WIDTH, **_QUOTES})) + "]")


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """NFKC, case-folded, zero-width characters dropped, quotes straightened, spaces collapsed.

    Cached: the planner checks thousands of texts sharing the same store and assistant
    names and stop hints (halves the rules check on a 1 M-member day). The NFKC pass
    and the character tables are skipped when they would change nothing."""
    folded = text
    if not unicodedata.is_normalized("NFKC", folded):
        folded = unicodedata.normalize("NFKC", folded)
    if _ODD.search(folded):
        folded = folded.translate(_ZERO_WIDTH).translate(_QUOTES)
    return _SPACES.sub(" ", folded.casefold())
