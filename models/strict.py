"""Strict readings of outside text: ASCII digits only, no control characters.

`str.isdigit()` and `int()` accept far more than the digits 0-9 (², ①, Arabic-Indic ١,
full-width １, mathematical 𝟏), `Decimal()` accepts `1_000` and full-width digits, and
`int()` refuses more than 4,300 digits with a ValueError. Every number that comes from
outside (path, query, JSON, CSV, forms, chat text) is read through `ascii_int` or
`plain_decimal`. Full-width digits a member typed in a chat message are folded to ASCII
before (`bot.router` normalises the text); nowhere else are other digits accepted.

PostgreSQL refuses NUL in text, XML cannot carry most control characters, and a lone
surrogate (a non-UTF-8 byte kept by `surrogateescape`, or a JSON `\\ud800`) cannot be
encoded for any database: `bad_char` finds them, and the HTTP edge (`bot.edge`) refuses
them (400) in the path, the query, headers, forms and JSON bodies.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

DIGITS = "0123456789"

_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
"""Control characters except tab, line feed and carriage return; lone surrogates."""
_BAD_LINE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
"""The same, and tab / line breaks too: for one-line values (paths, headers, ids)."""

_DECIMAL = re.compile(r"^[+-]?[0-9]{1,15}(?:\.[0-9]{1,15})?$", re.ASCII)


def ascii_int(text: str, *, max_digits: int = 18) -> int | None:
    """The value of 1..`max_digits` ASCII digits 0-9 (nothing else, no sign), else None."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def row_id(text: str) -> int | None:
    """A table id from a URL: ASCII digits that fit the 32-bit id columns, else None."""
    value = ascii_int(text, max_digits=10)
    return value if value is not None and 0 < value < 2**31 else None


def plain_decimal(value: Any) -> Any:
    """For a pydantic BeforeValidator on money: a string must be a plain ASCII decimal
    (`12`, `-3.50`); numbers pass on to the field's own checks."""
    if isinstance(value, str):
        s = value.strip()
        if not _DECIMAL.match(s):
            raise ValueError("expected a decimal number written with the digits 0-9")
        try:
            return Decimal(s)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid ones
            raise ValueError("expected a decimal number") from None
    return value


def bad_char(text: str, *, one_line: bool = False) -> str | None:
    """The first character that outside text may not carry, or None."""
    m = (_BAD_LINE if one_line else _BAD).search(text)
    return m.group() if m else None


def find_bad_text(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key or string in a JSON value that holds a character
    `bad_char` refuses ("" for the top level), or None when all of it is clean."""
    if isinstance(value, str):
        return path if bad_char(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and bad_char(key, one_line=True):
                return path or "body"
            found = find_bad_text(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = find_bad_text(item, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None
