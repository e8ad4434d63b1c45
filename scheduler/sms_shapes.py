"""SMS template shapes: the approved-template form of each message kind and reply.

A domestic SMS provider (Aliyun) sends only approved templates: fixed text with named
`${var}` variables. The shape of a kind or reply is derived from its own jinja template
(`bot/templates/messages/<locale>/<kind>.txt`, `bot/templates/replies/<locale>/<name>.txt`),
so what is submitted for approval is what we send:

- literal text stays fixed;
- each `{{ expression }}` is a variable named after the data it shows
  (`{{ points|points }}` → `${points}`, `{{ items|join("、") }}` → `${items}`);
- each `{% if %}` / `{% for %}` block is one variable holding whatever the block renders,
  except the wordiest if-chains: each of their branches is a template of its own
  (`holiday`, `holiday_2`, …: one per festival), so their words are fixed text;
- variables separated by nothing but spaces or punctuation are merged into one
  (Aliyun refuses adjacent variables such as `${a}${b}` or `${a}, ${b}`); the store and
  assistant line becomes `${signature}`;
- `{{ stop_hint }}` becomes the provider's own stop hint (`Shape.hint`), and a leading
  `【{{ brand }}】` is dropped (the provider prints the signature itself).

The derivation is `scheduler.sms_derive`; this module holds the shapes and the matching.
`Shape.split(text)` takes a text our renderer made (the outbox keeps rendered texts) and
returns the variable values, or None when the text does not have this shape. Values are
the rendered data, so they passed the message rules with the text; `Shape.check` applies
the provider's variable rules (non-empty, at most N characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, cached_property

from models.kinds import KINDS, STOP_HINTS, MessageClass
from scheduler.sms_derive import (
    EMPTY_FILL,
    FIXED,
    HINT,
    SIGN,
    VAR,
    WORD,
    Part,
    merge,
    raw_parts,
    template_locals,
    variants,
)
from scheduler.text import TEMPLATES, environment, finish

LOCALES = ("zh_CN", "en")
NOTICE_HINT = "回T退订"
PROMO_HINT = "拒收请回复R"
"""Aliyun's stop hints: promotional templates (care, greetings: 会员关怀) must end with
"拒收请回复R"; notification templates must not carry it, so service notices use "回T退订"
(TD / T replies are honoured too). Replies answer the member and carry none."""


@dataclass(frozen=True)
class Shape:
    name: str
    """The message kind or reply name (its template file's name)."""
    locale: str
    parts: tuple[Part, ...]
    hint: str
    """The provider's stop hint printed where our template has `{{ stop_hint }}`."""
    reply: bool = False
    variant: int = 0
    """Which branch combination of the template (`_variants`); 0 is the first."""

    @property
    def key(self) -> str:
        """The configuration key of this template: the kind, or `reply_<name>` for a reply;
        `_<n>` for the n-th variant (from 2); `.en` for English (`reply_points.en`)."""
        base = f"reply_{self.name}" if self.reply else self.name
        if self.variant:
            base += f"_{self.variant + 1}"
        return base if self.locale == "zh_CN" else f"{base}.en"

    @cached_property
    def weight(self) -> int:
        """How much fixed text the template has (word characters)."""
        return sum(len(WORD.findall(p.text)) for p in self.parts if p.kind == FIXED)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.parts if p.kind == VAR)

    def text(self) -> str:
        """The template to submit, in the provider's `${var}` syntax."""
        out = []
        for p in self.parts:
            if p.kind == FIXED:
                out.append(p.text)
            elif p.kind == VAR:
                out.append("${" + p.text + "}")
            elif p.kind == HINT:
                out.append(self.hint)
        lines = [line.rstrip() for line in "".join(out).split("\n")]
        return finish("\n".join(lines))

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return _compile(self.parts)

    @cached_property
    def _anchors(self) -> tuple[str, ...]:
        return _anchors(self.parts)

    def split(self, rendered: str, squeezed: str | None = None) -> dict[str, str] | None:
        """The variable values of `rendered`, or None when it does not have this shape.
        `squeezed`: `rendered` without whitespace, when the caller has it already."""
        squeezed = _SPACE.sub("", rendered) if squeezed is None else squeezed
        if not all(a in squeezed for a in self._anchors):  # cheap: most shapes stop here
            return None
        found = self._pattern.fullmatch(rendered)
        if found is None:
            return None
        values = {}
        for i, p in enumerate(self.parts):
            if p.kind == VAR:
                value = found.group(f"v{i}").strip()
                if not value and p.optional_name:
                    value = EMPTY_FILL[p.text][self.locale]
                values[p.text] = value
        return values

    def check(self, values: dict[str, str], *, max_length: int) -> str | None:
        """Why the provider would refuse these values, or None."""
        for name, value in values.items():
            if not value:
                return f"variable {name} is empty (Aliyun refuses an empty variable)"
            if len(value) > max_length:
                return (
                    f"variable {name} has {len(value)} characters "
                    f"(sms.aliyun.variable_max_length is {max_length})"
                )
        return None


_SPACE = re.compile(r"\s+")


@cache
def _anchors(parts: tuple[Part, ...]) -> tuple[str, ...]:
    """The fixed texts (whitespace removed) a text of this shape must contain."""
    fixed = (_SPACE.sub("", p.text) for p in parts if p.kind == FIXED)
    return tuple(sorted((f for f in fixed if f), key=len, reverse=True))


@cache
def _compile(parts: tuple[Part, ...]) -> re.Pattern[str]:
    out = [r"\s*"]
    for i, p in enumerate(parts):
        if p.kind == FIXED:
            out.append(r"\s*".join(re.escape(w) for w in re.split(r"\s+", p.text)))
        elif p.kind == VAR:
            out.append(f"(?P<v{i}>.*?)")
        elif p.kind == HINT:
            hints = sorted({*STOP_HINTS.values(), PROMO_HINT, NOTICE_HINT})
            out.append("(?:" + "|".join(re.escape(h) for h in hints) + ")?")
        elif p.kind == SIGN:
            out.append(r"(?:【[^】\n]*】)?")
    out.append(r"\s*")
    return re.compile("".join(out), re.DOTALL)


@cache
def shapes(name: str, locale: str, *, reply: bool = False) -> tuple[Shape, ...]:
    """The SMS template shapes of message kind `name` (or reply `name`) in `locale`: one
    per variant (`_variants`); the first has the plain key, the others `<key>_2`, …"""
    folder = "replies" if reply else "messages"
    source = (TEMPLATES / folder / locale / f"{name}.txt").read_text(encoding="utf-8")
    ast = environment().parse(source)
    local = template_locals(ast)
    if reply:
        hint = ""
    else:
        cls = KINDS[name].message_class
        hint = NOTICE_HINT if cls is MessageClass.SERVICE else PROMO_HINT
    out: list[Shape] = []
    for body in variants(list(ast.body)):
        parts = tuple(merge(raw_parts(body, local)))
        if all(s.parts != parts for s in out):  # branches that differ only inside a variable
            out.append(Shape(name, locale, parts, hint, reply=reply, variant=len(out)))
    return tuple(out)


def match(
    name: str, locale: str, text: str, *, reply: bool = False
) -> tuple[Shape, dict[str, str]] | None:
    """The variant of `name` that `text` has (the most fixed text wins), with its values."""
    best = None
    squeezed = _SPACE.sub("", text)
    for s in shapes(name, locale, reply=reply):
        values = s.split(text, squeezed)
        if values is not None and (best is None or s.weight > best[0].weight):
            best = (s, values)
    return best


@cache
def reply_names() -> tuple[str, ...]:
    """Every reply template (files starting with `_` are shared macros, not replies)."""
    folder = TEMPLATES / "replies" / "zh_CN"
    return tuple(sorted(p.stem for p in folder.glob("*.txt") if not p.stem.startswith("_")))


def all_shapes(locale: str) -> list[Shape]:
    """Every variant of every message kind, then of every reply, in `locale`."""
    out = [s for k in KINDS for s in shapes(k, locale)]
    return out + [s for r in reply_names() for s in shapes(r, locale, reply=True)]


@cache
def _reply_shapes(locales: tuple[str, ...]) -> tuple[Shape, ...]:
    """Every reply variant with fixed words (one of variables only would fit any text)."""
    every = (s for loc in locales for r in reply_names() for s in shapes(r, loc, reply=True))
    return tuple(sorted((s for s in every if s.weight), key=lambda s: -s.weight))


def find_reply(text: str, locale: str | None = None) -> tuple[Shape, dict[str, str]] | None:
    """The reply shape `text` has (the one with the most fixed text wins), with its values."""
    squeezed = _SPACE.sub("", text)
    for s in _reply_shapes((locale,) if locale else LOCALES):  # the wordiest first
        values = s.split(text, squeezed)
        if values is not None:
            return s, values
    return None
