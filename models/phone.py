"""Phone numbers: normalise to E.164, mask for logs and replies."""

from __future__ import annotations

import re

from models.errors import InvalidInput

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_MAINLAND_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")


def normalise_phone(raw: str, field: str = "phone") -> str:
    """'138 0013 8000', '+86 138-0013-8000', '8613800138000' → '+8613800138000'.

    11-digit mainland mobile numbers get +86; anything else must already be
    international (leading + or 00). Full-width digits are folded; any other digit
    (Arabic-Indic ١, ², …) is refused, so one number is always spelt one way.
    Raises InvalidInput otherwise.
    """
    if not isinstance(raw, str):
        raise InvalidInput("phone number must be a string", field)
    s = re.sub(r"[\s\-().\u3000]", "", raw.strip())
    s = s.translate(str.maketrans("０１２３４５６７８９＋", "0123456789+"))
    if s.startswith("00"):
        s = "+" + s[2:]
    if _MAINLAND_MOBILE.match(s):
        s = "+86" + s
    elif s.startswith("86") and _MAINLAND_MOBILE.match(s[2:]):
        s = "+" + s
    if not _E164.match(s):
        raise InvalidInput(f"not a valid phone number: {mask_phone(raw)}", field)
    if s.startswith("+86") and not _MAINLAND_MOBILE.match(s[3:]):
        raise InvalidInput(f"not a valid mainland mobile number: {mask_phone(s)}", field)
    return s


def mask_phone(phone: str | None) -> str:
    """'+8613800138000' → '+86138****8000': country code, 3 leading and 4 trailing digits."""
    if not phone:
        return ""
    s = str(phone)
    digits = [i for i, c in enumerate(s) if c.isdigit()]
    if len(digits) <= 7:
        return "*" * len(s)
    cc = 2 if s.startswith("+86") else 0
    keep = set(digits[: cc + 3]) | set(digits[-4:])
    return "".join(c if (not c.isdigit() or i in keep) else "*" for i, c in enumerate(s))
