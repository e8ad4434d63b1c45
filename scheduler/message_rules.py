"""The message rules, enforced by code (DOMAIN.md §7.1-7.4, §7.6; MESSAGING.md "Message classes").

`check(kind, text, ...)` returns the rules a proactive text breaks, as
`Violation(rule, detail)` values (empty list = may be sent):

| rule | applies to | what it catches |
|---|---|---|
| ``promotion_in_greeting`` | greetings | promotion or new-arrival words (§7.1), or meaning |
| ``promotion_in_service_notice`` | service notices | promotion, new-arrival words |
| ``promotion_in_care`` | care | promotion words (care carries care tips only) |
| ``new_arrivals_in_care`` | care but ``care_d30`` | new-arrival words (§6: only day 30) |
| ``product_in_seasonal`` | ``seasonal`` | product names (§7.3) |
| ``prying_in_dormant`` | ``dormant`` | asking whether something happened (§7.4), words or meaning |
| ``missing_signature`` | greetings, care | last line lacks the store / assistant name (§7.2) |
| ``missing_stop_hint`` | every kind | the locale's stop hint is absent (§7.6) |

The words come from a `models.settings.lexicon.Lexicon` (``[messaging.lexicon]``;
how they match is described in `scheduler.lexicon`). A hit is ignored when it lies wholly inside
an exempt phrase: the lexicon's ``allow`` list, the stop hints, and the values
that come from the member's own record — store, assistant, member and reward
names, the items bought (`scheduler.render.DATA_FIELDS`): a bought "新款大衣" is
not a new-arrival push, and the next reward "300元代金券" is what DOMAIN.md §2
asks the points notice to name. An assistant's ``note`` is never exempt.

Greetings are also judged by what they mean (`scheduler.meaning`, docs/greeting-rules.md):
an invitation to come and shop, arrivals, store events, items held, prices, benefits,
points for gifts — and, in a ``dormant`` text, asking why the member stayed away —
under the same two rule names, with the member-record values masked.

The same checks run on template sources at start-up (`lint_all`, ``memberbot
lint``) and on every rendered message before it is queued (`render_checked`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from models.kinds import KINDS, LOCALES, STOP_HINTS, MessageClass, kind_spec, stop_hint
from models.locale_format import format_money
from models.settings.lexicon import Lexicon, Words, normalize
from scheduler import meaning, render
from scheduler.lexicon import compact, exempt_spans, hits, may_hit
from scheduler.text import finish

# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str


_CLASS_WORD = {
    MessageClass.GREETING: "a greeting",
    MessageClass.SERVICE: "a service notice",
    MessageClass.CARE: "a care message",
}


def check_content(
    kind: str, text: str, *, lexicon: Lexicon, exempt: Iterable[str] = ()
) -> list[Violation]:
    """The word rules only (promotion, new arrivals, products, prying) — no signature or hint."""
    return _content_violations(kind, normalize(text), lexicon, exempt)


def _content_violations(
    kind: str, norm: str, lexicon: Lexicon, exempt: Iterable[str]
) -> list[Violation]:
    """`check_content` of normalised text `norm`.

    A category is scanned only when `may_hit` finds a clue of it in the text, and
    the exempt spans are looked up only then: most texts need neither.
    """
    spec = kind_spec(kind)
    if spec.is_greeting:
        exempt = tuple(exempt)  # read twice: the word rules and the meaning rules
    compacted = compact(norm)
    spans: list[tuple[int, int]] | None = None
    cls = spec.message_class
    out: list[Violation] = []

    def flag(rule: str, words: Words, what: str) -> None:
        nonlocal spans
        if not may_hit(compacted, words):
            return
        if spans is None:
            spans = exempt_spans(norm, lexicon, (*STOP_HINTS.values(), *exempt))
        for hit in hits(norm, words, spans):
            out.append(Violation(rule, f'{what} "{hit}" in {_CLASS_WORD[cls]} ({kind})'))

    if cls is MessageClass.CARE:
        flag("promotion_in_care", lexicon.promotion, "promotion word")
        if not spec.new_arrivals_allowed:
            flag("new_arrivals_in_care", lexicon.new_arrivals, "new-arrival word")
    else:
        rule = f"promotion_in_{'greeting' if spec.is_greeting else 'service_notice'}"
        flag(rule, lexicon.promotion, "promotion word")
        flag(rule, lexicon.new_arrivals, "new-arrival word")
    if kind == "seasonal":
        flag("product_in_seasonal", lexicon.products, "product")
    if kind == "dormant":
        flag("prying_in_dormant", lexicon.prying, "prying question")
    if spec.is_greeting:
        out.extend(_meaning_violations(kind, norm, lexicon, exempt, {v.rule for v in out}))
    return out


def _meaning_violations(
    kind: str, norm: str, lexicon: Lexicon, exempt: Iterable[str], found: set[str]
) -> Iterator[Violation]:
    """The greeting rules judged by meaning (`scheduler.meaning`): a promotion or, in a
    ``dormant`` text, prying said without the lexicon's words. A rule the words already
    broke is not named twice."""
    phrases = chain(STOP_HINTS.values(), exempt)
    for f in meaning.findings(norm, phrases, lexicon.allow, prying=kind == "dormant"):
        rule = "prying_in_dormant" if f.concept == "prying" else "promotion_in_greeting"
        if rule not in found:
            yield Violation(rule, f'{f.what} "{f.phrase}" in a greeting ({kind})')


def _signature_line(norm: str, hint: str) -> str:
    lines = [ln.strip() for ln in norm.splitlines() if ln.strip()]
    if lines and not lines[-1].replace(hint, "").strip(" .。!！-—–·"):
        lines.pop()  # the last line is only the stop hint: the signature is the line above
    return lines[-1].replace(hint, "") if lines else ""


def check(
    kind: str,
    text: str,
    *,
    locale: str,
    lexicon: Lexicon,
    store_name: str | None = None,
    assistant_name: str | None = None,
    exempt: Iterable[str] = (),
) -> list[Violation]:
    """Every rule `text` breaks as message `kind` in `locale` (module table); [] = sendable.

    `store_name` / `assistant_name`, when given, must appear in the signature
    line of greetings and care: the last line, or the line above it when the
    last line is only the stop hint. They, and `exempt` (values from the
    member's own record), are never lexicon hits.
    """
    spec = kind_spec(kind)
    hint = normalize(stop_hint(locale))
    names = [n for n in (store_name, assistant_name) if n]
    norm = normalize(text)
    out = _content_violations(kind, norm, lexicon, chain(names, exempt))
    if spec.needs_signature and names:
        line = _signature_line(norm, hint)
        missing = [n for n in names if normalize(n).strip() not in line]
        if missing:
            out.append(
                Violation(
                    "missing_signature",
                    f"the last line must carry the store and assistant names; missing {missing}",
                )
            )
    if spec.needs_stop_hint and hint not in norm:
        out.append(Violation("missing_stop_hint", f'no stop hint "{stop_hint(locale)}"'))
    return out


# --------------------------------------------------------------------------- render + check


@dataclass(frozen=True)
class Checked:
    text: str
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations


def data_phrases(ctx: Mapping[str, Any], locale: str) -> list[str]:
    """The texts of the member-record values in `ctx` (exempt from the word rules)."""
    return list(iter_data_phrases(ctx, locale))


def iter_data_phrases(ctx: Mapping[str, Any], locale: str) -> Iterator[str]:
    """`data_phrases`, made only when asked for (a greeting's meaning check masks them;
    the word rules need them only for a text in which some lexicon entry may be found).
    A text value — the usual case: names — is yielded without further tests."""
    for key in render.DATA_FIELDS:
        value = ctx.get(key)
        if value is None or value == "":
            continue
        if type(value) is str:
            yield value
            continue
        values = value if isinstance(value, list | tuple) else (value,)
        for v in values:
            if v is None or v == "":
                continue
            yield str(v)
            if isinstance(v, Decimal | int) and not isinstance(v, bool):
                yield format_money(v, locale)


def render_checked(
    kind: str, locale: str, *, lexicon: Lexicon, template_dir: Path | None = None, **ctx: Any
) -> Checked:
    """Render message `kind` in `locale` and check it: what the planner queues or records."""
    text = render.render_message(kind, locale, template_dir=template_dir, **ctx)
    violations = check(
        kind,
        text,
        locale=locale,
        lexicon=lexicon,
        store_name=ctx.get("store_name"),
        assistant_name=ctx.get("assistant_name"),
        exempt=data_phrases(ctx, locale),
    )
    return Checked(text, violations)


# --------------------------------------------------------------------------- lint

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_STRING = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def literal_text(source: str) -> str:
    """A template's own words: the text outside jinja tags, plus string constants inside them."""
    constants = [
        a or b for tag in _JINJA.findall(source) for a, b in _STRING.findall(tag) if a or b
    ]
    return "\n".join([_JINJA.sub("\n", source), *constants])


def check_template_source(
    kind: str, source: str, locale: str, lexicon: Lexicon, *, template_dir: Path | None = None
) -> list[Violation]:
    """Lint one template: its literal words, then every sample rendering, checked in full."""
    out = check_content(kind, literal_text(source), lexicon=lexicon)
    try:
        template = render.environment(template_dir).from_string(source)
    except TemplateError as exc:
        return [*out, Violation("template_error", str(exc))]
    seen = {(v.rule, v.detail) for v in out}
    for ctx in render.sample_contexts(kind, locale):
        try:
            text = finish(template.render(**render.full_context(kind, locale, ctx)))
        except (TemplateError, TypeError, ValueError) as exc:
            return [*out, Violation("render_error", f"{type(exc).__name__}: {exc}")]
        for v in check(
            kind,
            text,
            locale=locale,
            lexicon=lexicon,
            store_name=ctx["store_name"],
            assistant_name=ctx["assistant_name"],
            exempt=data_phrases(ctx, locale),
        ):
            if (v.rule, v.detail) not in seen:
                seen.add((v.rule, v.detail))
                out.append(v)
    return out


def lint_all(
    template_dir: Path | None = None, lexicon: Lexicon | None = None
) -> list[tuple[Path, Violation]]:
    """Lint every kind's template in every locale under `template_dir` (`<locale>/<kind>.txt`).

    A missing template is a ``missing_template`` violation, a ``.txt`` file that
    is no kind (and does not start with ``_``, the mark of a partial) an
    ``unknown_template`` one.
    """
    root = Path(template_dir) if template_dir is not None else render.MESSAGES_DIR
    lexicon = lexicon if lexicon is not None else Lexicon()
    found: list[tuple[Path, Violation]] = []
    for locale in LOCALES:
        folder = root / locale
        for kind in KINDS:
            path = folder / f"{kind}.txt"
            if not path.is_file():
                found.append((path, Violation("missing_template", f"no template for {kind}")))
                continue
            source = path.read_text(encoding="utf-8")
            for v in check_template_source(kind, source, locale, lexicon, template_dir=root):
                found.append((path, v))
        for path in sorted(folder.glob("*.txt")):
            if path.stem not in KINDS and not path.stem.startswith("_"):
                found.append((path, Violation("unknown_template", f"{path.stem} is not a kind")))
    return found
