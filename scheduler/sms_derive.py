"""Deriving an SMS template's parts from a jinja template (`scheduler.sms_shapes`).

Walks the parsed template (`jinja2.nodes`): literal text → fixed parts, `{{ … }}` → a
variable named after the data it shows, `{% if %}` / `{% for %}` blocks → one variable
each; variables with only spaces or punctuation between are merged (`_merge`), and the
wordiest if-chains are split into variants, one per branch (`variants`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import nodes

FIXED, VAR, HINT, SIGN = "fixed", "var", "hint", "sign"
WORD = re.compile(r"\w")
EMPTY_FILL = {
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
    """A `{% if X %}{{ X }}…{% endif %}` block of a name: filled when empty (`EMPTY_FILL`)."""


def _names(node: nodes.Node, local: frozenset[str]) -> list[str]:
    found = [node] if isinstance(node, nodes.Name) else list(node.find_all(nodes.Name))
    return [n.name for n in found if n.name not in local]


def _block_name(node: nodes.Node, local: frozenset[str]) -> tuple[str, bool]:
    """(variable name, is a name block) of an `{% if %}` / `{% for %}` block."""
    if isinstance(node, nodes.If) and isinstance(node.test, nodes.Name) and not node.elif_:
        x = node.test.name
        shown = [n for n in _names(nodes.Template(node.body), local)]
        if shown == [x] and not node.else_:
            return x, x in EMPTY_FILL
    test = node.test if isinstance(node, nodes.If) else getattr(node, "iter", node)
    found = _names(test, local) or _names(node, local) or ["text"]
    return f"{found[0]}_text", False


def raw_parts(body: list[nodes.Node], local: frozenset[str]) -> list[Part]:
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


def template_locals(ast: nodes.Template) -> frozenset[str]:
    """Names the template defines itself (set, import, macro, loop variables)."""
    out = {"loop", "locale", "kind"}
    for n in ast.find_all((nodes.Assign, nodes.AssignBlock, nodes.For)):
        out.update(t.name for t in n.target.find_all(nodes.Name))
    for n in ast.find_all(nodes.Import):
        out.add(n.target)
    for n in ast.find_all(nodes.Macro):
        out.add(n.name)
    return frozenset(out)


def merge(parts: list[Part]) -> list[Part]:
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
                q.kind == FIXED and not WORD.search(q.text)
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
    return sum(len(WORD.findall(d.data)) for d in node.find_all(nodes.TemplateData))


def _branches(node: nodes.If) -> list[list[nodes.Node]]:
    return [node.body, *(e.body for e in node.elif_), node.else_]


def variants(body: list[nodes.Node]) -> list[list[nodes.Node]]:
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
