"""What an operator submits to Aliyun, and what is still missing (`memberbot sms-templates
--provider aliyun`, `memberbot lint` with `sms.provider = "aliyun"`).

`template_sheet(locale)` lists every variant of every message kind and reply with the
text to submit (`scheduler.sms_shapes`), its Aliyun template type, its variables and
sample values: kinds take theirs from the lint's sample contexts
(`scheduler.render.sample_contexts`, the longest value of each variable over the
contexts that fit the variant, so the reviewer sees the worst case); replies from
`REPLY_SAMPLES`.

`review(settings)` returns the findings: a zh_CN template (kind or reply variant) with
no code (`missing_code`: that text is never sent by SMS), one without fixed words
(`only_variables`: Aliyun refuses it), a configured key that is no template
(`unknown_key`), and a kind whose sample values break Aliyun's variable rules
(`variable`: longer than `variable_max_length`, or empty).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.kinds import KINDS, MessageClass
from models.settings.sections import AliyunSmsSettings
from scheduler.render import render_message, sample_contexts
from scheduler.sms_shapes import LOCALES, Shape, match, reply_names, shapes

REPLY_SAMPLES = {
    "name": "王女士，", "member_name": "王女士，", "points": "3,200", "phone": "138****8000",
    "minutes": "10", "left": "3", "store": "静安店", "tier": "金卡", "day": "12月5日 周六",
    "address": "上海市静安区南京西路1000号", "cost": "3,000", "after": "200",
    "value": "300元", "expires": "2027年3月31日", "missing": "800", "max_days": "30",
    "code_etc": "123456，10", "text": "300元代金券",
}  # fmt: skip
"""Sample values of reply variables (replies have no lint contexts); others show "…"."""


@dataclass(frozen=True)
class Finding:
    rule: str
    key: str
    detail: str


@dataclass(frozen=True)
class SheetEntry:
    shape: Shape
    kind: str
    """Aliyun's template type: 通知短信 (notification) or 推广短信 (promotional)."""
    samples: dict[str, str]


def template_type(s: Shape) -> str:
    if not s.reply and KINDS[s.name].message_class is not MessageClass.SERVICE:
        return "推广短信 (promotional: member care)"
    return "通知短信 (notification)"


def _kind_values(kind: str, locale: str):
    """(shape, values) of each sample context of `kind` (the variant each one fits)."""
    for ctx in sample_contexts(kind, locale):
        found = match(kind, locale, render_message(kind, locale, **ctx))
        if found is not None:
            yield found


def _longest(pairs) -> dict[str, dict[str, str]]:
    """The longest value of each variable of each variant (by key) over `pairs`."""
    out: dict[str, dict[str, str]] = {}
    for s, values in pairs:
        longest = out.setdefault(s.key, {})
        for name, value in values.items():
            if len(value) >= len(longest.get(name, "")):
                longest[name] = value
    return out


def template_sheet(locale: str = "zh_CN") -> list[SheetEntry]:
    out = []
    for k in KINDS:
        samples = _longest(_kind_values(k, locale))
        for s in shapes(k, locale):
            out.append(SheetEntry(s, template_type(s), samples.get(s.key, {})))
    for r in reply_names():
        for s in shapes(r, locale, reply=True):
            samples = {v: REPLY_SAMPLES.get(v, "…") for v in s.variables}
            out.append(SheetEntry(s, template_type(s), samples))
    return out


def review(settings: AliyunSmsSettings) -> list[Finding]:
    found: list[Finding] = []
    known = {e.shape.key for locale in LOCALES for e in template_sheet(locale)}
    for e in template_sheet("zh_CN"):
        s = e.shape
        if not settings.templates.get(s.key):
            found.append(Finding("missing_code", s.key, "no approved template code: "
                                 "this text is not sent by SMS"))  # fmt: skip
        if not s.weight:
            found.append(Finding("only_variables", s.key, "no fixed words: Aliyun refuses "
                                 "a template of variables only"))  # fmt: skip
    for k in KINDS:
        reported = set()
        for s, values in _kind_values(k, "zh_CN"):
            problem = s.check(values, max_length=settings.variable_max_length)
            if problem and s.key not in reported:
                reported.add(s.key)
                found.append(Finding("variable", s.key, problem))
    for key in sorted(set(settings.templates) - known):
        found.append(Finding("unknown_key", key, "no message kind or reply has this name"))
    return found


def missing_english(settings: AliyunSmsSettings) -> list[str]:
    """The English keys without a code (English-speaking members get no SMS of those)."""
    return [e.shape.key for e in template_sheet("en") if not settings.templates.get(e.shape.key)]
