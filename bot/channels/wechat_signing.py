"""The checks of a WeChat request: timestamp, signature, safe-mode `msg_signature` and
decryption (`bot.channels.wechat` describes their order). wechatpy does the crypto.
"""

from __future__ import annotations

import hmac
import re
import struct
import time

from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import WeChatSigner, check_signature

from bot.channels import xmlsafe
from models.settings.sections import WeChatSettings

_ENCRYPT = re.compile(
    rb"<Encrypt>\s*(?:<!\[CDATA\[([A-Za-z0-9+/=]+)\]\]>|([A-Za-z0-9+/=]+))\s*</Encrypt>"
)
"""The `<Encrypt>` field of a safe-mode envelope, found without an XML parser (base64
has no character that XML treats specially)."""
ENCRYPT_CANDIDATES = 4
"""`<Encrypt>`-looking fields of one body whose signature is tried at most (the last ones:
WeChat puts the real field last, after a compatible-mode envelope's plain copy)."""


class WeChatSigning:
    """The checks, with what they need from `wechat.*` settings."""

    def __init__(self, settings: WeChatSettings):
        self.token = settings.token
        self.max_age = settings.max_timestamp_age
        self.crypto = (
            WeChatCrypto(settings.token, settings.encoding_aes_key, settings.app_id)
            if settings.encoding_aes_key
            else None
        )

    # ------------------------------------------------------------------ checks

    def _signed(self, signature: str | None, timestamp: str, nonce: str) -> bool:
        if not self.token or not signature:
            return False  # an empty token would let anyone sign
        try:
            check_signature(self.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            return False
        return True

    def _fresh(self, timestamp: str) -> bool:
        """A Unix time in ASCII digits within `max_timestamp_age` of our clock."""
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return False
        return abs(time.time() - int(timestamp)) <= self.max_age

    def _decrypt(self, body: bytes, query) -> str:
        """The inner XML of a safe-mode request, `msg_signature` checked before any XML
        parser sees a byte: raises web.HTTPForbidden (not signed) / MalformedXml."""
        signature = query.get("msg_signature", "")
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        encrypted = self._signed_encrypt(body, signature, timestamp, nonce)
        if encrypted is None:
            raise web.HTTPForbidden(text="forbidden")
        assert self.crypto is not None
        try:
            return self.crypto.decrypt_message({"Encrypt": encrypted}, signature, timestamp, nonce)
        except (InvalidSignatureException, InvalidAppIdException):
            raise web.HTTPForbidden(text="forbidden") from None
        except (ValueError, struct.error, IndexError, TypeError) as exc:
            raise xmlsafe.MalformedXml("cannot decrypt <Encrypt>") from exc

    def _signed_encrypt(self, body: bytes, signature: str, timestamp: str, nonce: str):
        """The `<Encrypt>` value that `msg_signature` covers, or None. A compatible-mode
        envelope also carries the message in plain, whose text could itself look like an
        `<Encrypt>` field: the last few candidates are tried, the last one first."""
        candidates = list(_ENCRYPT.finditer(body))[-ENCRYPT_CANDIDATES:]
        for found in reversed(candidates):
            value = (found[1] or found[2]).decode("ascii")
            signer = WeChatSigner()
            signer.add_data(self.token, timestamp, nonce, value)
            if hmac.compare_digest(signer.signature.encode(), signature.encode()):
                return value
        return None
