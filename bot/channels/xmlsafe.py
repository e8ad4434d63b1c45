"""Reading untrusted XML without letting it expand or reach outside, and writing CDATA safely.

WeChat's messages are flat `<xml>` documents: they never carry a DOCTYPE. So any
declaration (`<!DOCTYPE`, `<!ENTITY`, `<!ELEMENT`, `<!ATTLIST`, `<!NOTATION`) is
refused *before* a parser sees the text — a billion-laughs bomb never expands and an
external entity (XXE, e.g. `file:///etc/passwd`) is never resolved. The check runs on
the decoded text, which is also exactly what the parser gets (bytes are decoded as
UTF-8 first, so no other encoding can hide a declaration from it). Comments and CDATA
sections stay allowed.
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import ParseError, fromstring

_DECLARATION = re.compile(r"<!\s*[A-Za-z]")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


_REPEATED = ("repeated",)
_NESTED = ("nested",)


class UnsafeXml(ValueError):
    """The document declares a DTD or entities."""


class MalformedXml(ValueError):
    """Not a well-formed `<xml>` document of flat fields."""


def decode(body: bytes) -> str:
    """UTF-8 (a BOM is tolerated); anything else is malformed."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedXml("body is not UTF-8") from exc


def check_no_declarations(text: str) -> None:
    if _DECLARATION.search(text):
        raise UnsafeXml("DTD and entity declarations are not accepted")


def parse_fields(text: str) -> dict:
    """The children of the `<xml>` root as a dict of stripped texts (None for an empty
    one), after the declaration check. A field with children or attributes, or one that
    appears twice, is kept as a marker that `field` refuses (only if it is read).
    ElementTree's C parser (expat): the same parser xmltodict drives, without building
    its dictionaries event by event (a third of the time)."""
    check_no_declarations(text)
    fields = _flat_fields(text)
    if fields is not None:
        return fields
    try:
        root = fromstring(text)
    except (ParseError, ValueError) as exc:
        raise MalformedXml(f"not well-formed XML: {exc}") from exc
    if root.tag != "xml" or len(root) == 0:
        raise MalformedXml("expected an <xml> root with fields")
    fields: dict = {}
    for child in root:
        name = child.tag
        if name in fields:
            fields[name] = _REPEATED
        elif len(child) or child.attrib:
            fields[name] = _NESTED
        else:
            fields[name] = (child.text or "").strip() or None
    return fields


# What WeChat sends: `<xml>` and flat fields, each one CDATA section or plain text
# without markup (`<`, `&`) or `]`. For exactly that shape the fields can be read
# without building a parser (expat's set-up is most of the cost of such a small
# document); anything else — a prolog, comments, attributes, entities, nested or
# mixed content, a CR (expat normalises line ends), a character XML forbids — takes
# ElementTree's parser, so the same text gives the same fields either way.
_CHAR = "\x00-\x08\x0b\x0c\x0e-\x1f\r\ufffe\uffff"  # forbidden in XML, and CR
_FIELD = (
    r"<(?P<name>[A-Za-z][A-Za-z0-9_]*)>(?:"
    rf"<!\[CDATA\[(?P<cdata>[^\]{_CHAR}]*(?:\](?!\]>)[^\]{_CHAR}]*)*)\]\]>"
    rf"|(?P<plain>[^<&\]{_CHAR}]*))</(?P=name)>"
)
_FLAT_DOC = re.compile(r"<xml>(?:[ \t\n]*" + _FIELD + r")+[ \t\n]*</xml>[ \t\n]*")
_FLAT_FIELD = re.compile(_FIELD)


def _flat_fields(text: str) -> dict | None:
    """`parse_fields` of a flat WeChat document without a parser; None if not that shape."""
    if _FLAT_DOC.fullmatch(text) is None:
        return None
    fields: dict = {}
    for name, cdata, plain in _FLAT_FIELD.findall(text):
        # One of the two is empty; `.text` of the element is the other.
        fields[name] = _REPEATED if name in fields else (cdata or plain).strip() or None
    return fields


def field(fields: dict, name: str, *, required: bool = True) -> str | None:
    """One text field; a repeated or nested field is malformed."""
    value = fields.get(name)
    if value is None:
        if required:
            raise MalformedXml(f"missing <{name}>")
        return None
    if not isinstance(value, str):
        raise MalformedXml(f"<{name}> must be plain text")
    return value


def text_reply(*, source: str, target: str, content: str, time: int) -> str:
    """A passive text reply, byte for byte what wechatpy's `TextReply(...).render()` makes
    (values pass through `cdata_text`), from one format string."""
    return _TEXT_REPLY.format(
        source=cdata_text(source), target=cdata_text(target), content=cdata_text(content),
        time=int(time),
    )  # fmt: skip


_TEXT_REPLY = (
    "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[{content}]]></Content>\n"
    "<FromUserName><![CDATA[{source}]]></FromUserName>\n"
    "<ToUserName><![CDATA[{target}]]></ToUserName>\n<CreateTime>{time}</CreateTime>\n</xml>"
)


def cdata_text(value: str) -> str:
    """Text that is safe inside `<![CDATA[…]]>`: no characters XML forbids, and a
    literal `]]>` split across two CDATA sections instead of closing the first."""
    return _XML_ILLEGAL.sub("", value).replace("]]>", "]]]]><![CDATA[>")
