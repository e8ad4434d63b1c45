"""SMS template shapes: the approved-template form of each message kind and reply.

A domestic SMS provider (Aliyun) sends only approved templates: fixed text with named
`${var}` variables. The shape of a kind or reply is derived from its own jinja template
(`bot/templates/messages/<locale>/<kind>.txt`, `bot/templates/replies/<locale>/<name>.txt`),
so what is submitted for approval is what we send:

- literal text stays fixed;
- each `{{ expression }}` is a variable named after the data it shows
  (`{{ points|points }}` → `${points}`, `{{ items|join("、") }}` → `${items}`);
- each `{% if %}` / `{% for %}` block is one variable holding whatever the block renders
  (`${festival_text}`), so every branch fits the one approved text;
- variables separated by nothing but spaces or punctuation are merged into one
  (Aliyun refuses adjacent variables such as `${a}${b}` or `${a}, ${b}`); the store and
  assistant line becomes `${signature}`;
- `{{ stop_hint }}` becomes the provider's own stop hint (`Shape.hint`), and a leading
  `【{{ brand }}】` is dropped (the provider prints the signature itself).

`Shape.split(text)` takes a text our renderer made (the outbox keeps rendered texts) and
returns the variable values, or None when the text does not have this shape. Values are
the rendered data, so they passed the message rules with the text; `Shape.check` applies
the provider's variable rules (non-empty, at most N characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, cached_property

from jinja2 import nodes

from models.kinds import KINDS, STOP_HINTS, MessageClass
from scheduler.text import TEMPLATES, environment, finish

FIXED, VAR, HINT, SIGN = "fixed", "var", "hint", "sign"
LOCALES = ("zh_CN", "en")
NOTICE_HINT = "回T退订"
PROMO_HINT = "拒收请回复R"
"""Aliyun's stop hints: promotional templates (care, greetings: 会员关怀) must end with
"拒收请回复R"; notification templates must not carry it, so service notices use "回T退订"
(TD / T replies are honoured too). Replies answer the member and carry none."""
_WORD = re.compile(r"\w")
_EMPTY_FILL = {
    "member_name": {"zh_CN": "亲爱的会员，", "en": "Dear member, "},
    "name": {"zh_CN": "亲爱的会员，", "en": "Dear member, "},
    "items": {"zh_CN": "商品", "en": "your items"},
}
"""What a block showing only one value (`{% if member_name %}{{ member_name }}，{% endif %}`)
sends when it is empty — a member without a name, a purchase without item names —
since Aliyun refuses empty variables."""


@dataclass(frozen=True, slots=True)
class Part:
    kind: str
    """fixed | var | hint | sign"""
    text: str = ""
    """The fixed text, or the variable's name."""
    optional_name: bool = False
    """A `{% if X %}{{ X }}…{% endif %}` block of a name: filled when empty (`_EMPTY_FILL`)."""


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
        return sum(len(_WORD.findall(p.text)) for p in self.parts if p.kind == FIXED)

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
                    value = _EMPTY_FILL[p.text][self.locale]
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


# ------------------------------------------------------------------------- derivation


def _names(node: nodes.Node, local: frozenset[str]) -> list[str]:
    found = [node] if isinstance(node, nodes.Name) else list(node.find_all(nodes.Name))
    return [n.name for n in found if n.name not in local]


def _block_name(node: nodes.Node, local: frozenset[str]) -> tuple[str, bool]:
    """(variable name, is a name block) of an `{% if %}` / `{% for %}` block."""
    if isinstance(node, nodes.If) and isinstance(node.test, nodes.Name) and not node.elif_:
        x = node.test.name
        shown = [n for n in _names(nodes.Template(node.body), local)]
        if shown == [x] and not node.else_:
            return x, x in _EMPTY_FILL
    test = node.test if isinstance(node, nodes.If) else getattr(node, "iter", node)
    found = _names(test, local) or _names(node, local) or ["text"]
    return f"{found[0]}_text", False


def _raw_parts(body: list[nodes.Node], local: frozenset[str]) -> list[Part]:
    parts: list[Part] = []
    for node in body:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    parts.append(Part(FIXED, child.data))
                    continue
                found = _names(child, local) or ["text"]
                parts.append(Part(HINT) if found[0] == "stop_hint" else Part(VAR, found[0]))
        elif isinstance(node, (nodes.Assign, nodes.AssignBlock, nodes.Import, nodes.FromImport,
                               nodes.Macro)):  # fmt: skip
            continue
        else:
            name, optional = _block_name(node, local)
            parts.append(Part(VAR, name, optional_name=optional))
    return parts


def _locals(ast: nodes.Template) -> frozenset[str]:
    """Names the template defines itself (set, import, macro, loop variables)."""
    out = {"loop", "locale", "kind"}
    for n in ast.find_all((nodes.Assign, nodes.AssignBlock, nodes.For)):
        out.update(t.name for t in n.target.find_all(nodes.Name))
    for n in ast.find_all(nodes.Import):
        out.add(n.target)
    for n in ast.find_all(nodes.Macro):
        out.add(n.name)
    return frozenset(out)


def _merge(parts: list[Part]) -> list[Part]:
    """Join fixed runs; merge variables separated only by spaces or punctuation; drop a
    leading 【{{ brand }}】 (the provider prints the signature)."""
    joined: list[Part] = []
    for p in parts:
        if p.kind == FIXED and joined and joined[-1].kind == FIXED:
            joined[-1] = Part(FIXED, joined[-1].text + p.text)
        elif p.kind != FIXED or p.text:
            joined.append(p)
    if (
        len(joined) >= 3
        and joined[0].kind == FIXED and joined[0].text.strip() == "【"
        and joined[1].kind == VAR and joined[2].kind == FIXED
        and joined[2].text.startswith("】")
    ):  # fmt: skip
        joined = [Part(SIGN), Part(FIXED, joined[2].text[1:]), *joined[3:]]
    out: list[Part] = []
    i = 0
    while i < len(joined):
        p = joined[i]
        if p.kind != VAR:
            out.append(p)
            i += 1
            continue
        group = [p.text]
        optional = p.optional_name
        j = i + 1
        while j < len(joined):
            q = joined[j]
            if q.kind == VAR:
                group.append(q.text)
                optional = False
                j += 1
            elif (
                q.kind == FIXED and not _WORD.search(q.text)
                and j + 1 < len(joined) and joined[j + 1].kind == VAR
            ):  # fmt: skip
                j += 1
            else:
                break
        out.append(Part(VAR, _merged_name(group), optional_name=optional))
        i = j
    return _unique(out)


def _merged_name(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    if set(names) == {"store_name", "assistant_name"}:
        return "signature"
    return f"{names[0]}_etc"


def _unique(parts: list[Part]) -> list[Part]:
    seen: dict[str, int] = {}
    out = []
    for p in parts:
        if p.kind == VAR:
            seen[p.text] = seen.get(p.text, 0) + 1
            if seen[p.text] > 1:
                p = Part(VAR, f"{p.text}_{seen[p.text]}", optional_name=p.optional_name)
        out.append(p)
    return out


MAX_VARIANTS = 12
"""Most approved templates one kind or reply takes (one per branch of its wordiest
`{% if %}` chains, expanded wordiest first while the count stays within this)."""


def _words(node: nodes.Node) -> int:
    return sum(len(_WORD.findall(d.data)) for d in node.find_all(nodes.TemplateData))


def _branches(node: nodes.If) -> list[list[nodes.Node]]:
    return [node.body, *(e.body for e in node.elif_), node.else_]


def _variants(body: list[nodes.Node]) -> list[list[nodes.Node]]:
    """One body per branch of the wordiest top-level `{% if %}`, expanded again in each
    branch while the total stays within `MAX_VARIANTS`: an if whose branches hold words
    (not just a value and punctuation) becomes separate templates, so their text is
    fixed, not a variable."""
    out = [body]
    while True:
        best = None
        for vi, b in enumerate(out):
            for ni, node in enumerate(b):
                if isinstance(node, nodes.If) and _words(node):
                    grown = len(out) - 1 + len(_branches(node))
                    if grown <= MAX_VARIANTS and (best is None or _words(node) > best[0]):
                        best = (_words(node), vi, ni, node)
        if best is None:
            return out
        _, vi, ni, node = best
        b = out[vi]
        out[vi : vi + 1] = [b[:ni] + branch + b[ni + 1 :] for branch in _branches(node)]


@cache
def shapes(name: str, locale: str, *, reply: bool = False) -> tuple[Shape, ...]:
    """The SMS template shapes of message kind `name` (or reply `name`) in `locale`: one
    per variant (`_variants`); the first has the plain key, the others `<key>_2`, …"""
    folder = "replies" if reply else "messages"
    source = (TEMPLATES / folder / locale / f"{name}.txt").read_text(encoding="utf-8")
    ast = environment().parse(source)
    local = _locals(ast)
    if reply:
        hint = ""
    else:
        cls = KINDS[name].message_class
        hint = NOTICE_HINT if cls is MessageClass.SERVICE else PROMO_HINT
    out: list[Shape] = []
    for body in _variants(list(ast.body)):
        parts = tuple(_merge(_raw_parts(body, local)))
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
