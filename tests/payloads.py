"""Webhook payloads as the platforms send them, signed with wechatpy's and twilio's own code.

xml = wechat_text("o_member", "积分", msg_id="1001")
query, body = plain(xml)                      # ?signature&timestamp&nonce, body
query, body = aes(xml)                        # + encrypt_type=aes&msg_signature
text = decrypt_reply(response_text)           # the inner XML of a safe-mode reply
form = sms("+8613800138000", "POINTS")
headers = {"X-Twilio-Signature": twilio_signature(url, form)}
"""

from __future__ import annotations

import itertools
import secrets
import time

import xmltodict
from twilio.request_validator import RequestValidator
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from tests.fakes import TWILIO_AUTH_TOKEN, WECHAT_APP_ID, WECHAT_APP_SECRET

WECHAT_TOKEN = "test-wechat-token"
WECHAT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
WECHAT_ACCOUNT = "gh_0123456789ab"
"""The official account's own id (`ToUserName` of inbound messages)."""
CREATE_TIME = 1_790_000_000  # 2026-09-21 14:13:20 UTC
TWILIO_NUMBER = "+15005550006"


def wechat_settings(
    *, aes_key: str = WECHAT_AES_KEY, api_base_url: str = "http://127.0.0.1:9", **more
) -> dict:
    """The `[wechat]` section that signs and encrypts like the payloads below. The default
    API address refuses connections: nothing a test does leaves the machine."""
    return {
        "enabled": True,
        "app_id": WECHAT_APP_ID,
        "app_secret": WECHAT_APP_SECRET,
        "token": WECHAT_TOKEN,
        "encoding_aes_key": aes_key,
        "api_base_url": api_base_url,
        **more,
    }


_msg_ids = itertools.count(24_000_000_000_000_001)
_message_sids = itertools.count(1)


def _xml(fields: dict) -> str:
    return xmltodict.unparse({"xml": fields}, full_document=False)


def wechat_text(
    openid: str,
    text: str,
    *,
    msg_id: str | None = None,
    create_time: int = CREATE_TIME,
    account: str = WECHAT_ACCOUNT,
) -> str:
    """A text message from `openid`; each call gets a new MsgId unless one is given."""
    return _xml(
        {
            "ToUserName": account,
            "FromUserName": openid,
            "CreateTime": str(create_time),
            "MsgType": "text",
            "Content": text,
            "MsgId": msg_id or str(next(_msg_ids)),
        }
    )


def wechat_media(openid: str, msg_type: str = "image", *, create_time: int = CREATE_TIME) -> str:
    """A non-text message (image, voice, …)."""
    return _xml(
        {
            "ToUserName": WECHAT_ACCOUNT,
            "FromUserName": openid,
            "CreateTime": str(create_time),
            "MsgType": msg_type,
            "MediaId": "media-" + secrets.token_hex(4),
            "MsgId": str(next(_msg_ids)),
        }
    )


def wechat_event(
    openid: str, event: str, key: str | None = None, *, create_time: int = CREATE_TIME
) -> str:
    """An event push: `subscribe`, `unsubscribe`, `CLICK` (menu, with its key), …"""
    fields = {
        "ToUserName": WECHAT_ACCOUNT,
        "FromUserName": openid,
        "CreateTime": str(create_time),
        "MsgType": "event",
        "Event": event,
    }
    if key is not None:
        fields["EventKey"] = key
    return _xml(fields)


def signed_query(
    token: str = WECHAT_TOKEN, *, timestamp: str | None = None, nonce: str | None = None
) -> dict[str, str]:
    """`signature`, `timestamp`, `nonce` as WeChat puts them on the URL."""
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    nonce = secrets.token_hex(5) if nonce is None else nonce
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce)
    return {"signature": signer.signature, "timestamp": timestamp, "nonce": nonce}


def plain(
    xml: str, *, token: str = WECHAT_TOKEN, timestamp: str | None = None
) -> tuple[dict[str, str], bytes]:
    """A plain-mode POST: (query, body)."""
    query = signed_query(token, timestamp=timestamp)
    openid = xmltodict.parse(xml)["xml"].get("FromUserName")
    if openid:
        query["openid"] = openid
    return query, xml.encode("utf-8")


def crypto(
    token: str = WECHAT_TOKEN, aes_key: str = WECHAT_AES_KEY, app_id: str = WECHAT_APP_ID
) -> WeChatCrypto:
    return WeChatCrypto(token, aes_key, app_id)


def aes(
    xml: str,
    *,
    token: str = WECHAT_TOKEN,
    aes_key: str = WECHAT_AES_KEY,
    app_id: str = WECHAT_APP_ID,
    timestamp: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """A safe-mode POST: the message encrypted by `WeChatCrypto.encrypt_message`."""
    query = signed_query(token, timestamp=timestamp)
    envelope = crypto(token, aes_key, app_id).encrypt_message(
        xml, query["nonce"], query["timestamp"]
    )
    fields = xmltodict.parse(envelope)["xml"]
    query.update(encrypt_type="aes", msg_signature=fields["MsgSignature"])
    body = _xml({"ToUserName": WECHAT_ACCOUNT, "Encrypt": fields["Encrypt"]})
    return query, body.encode("utf-8")


def compatible(xml: str, *, plain_copy: str | None = None) -> tuple[dict[str, str], bytes]:
    """A compatible-mode (兼容模式) POST: the safe-mode request whose envelope also carries
    the message's fields in plain (those of `plain_copy` if given). `aes` already puts the
    plain `signature` on the URL beside `msg_signature`, as WeChat does."""
    query, body = aes(xml)
    encrypted = xmltodict.parse(body)["xml"]["Encrypt"]
    fields = dict(xmltodict.parse(plain_copy or xml)["xml"])
    fields["Encrypt"] = encrypted
    return query, _xml(fields).encode("utf-8")


def decrypt_reply(
    envelope: str,
    *,
    token: str = WECHAT_TOKEN,
    aes_key: str = WECHAT_AES_KEY,
    app_id: str = WECHAT_APP_ID,
) -> str:
    """The inner XML of an encrypted reply, after checking its MsgSignature."""
    fields = xmltodict.parse(envelope)["xml"]
    return crypto(token, aes_key, app_id).decrypt_message(
        envelope, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"]
    )


def reply_fields(xml: str) -> dict[str, str]:
    return xmltodict.parse(xml)["xml"]


def sms(
    from_: str, body: str, *, sid: str | None = None, to: str = TWILIO_NUMBER
) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS."""
    return {
        "MessageSid": sid or f"SM{next(_message_sids):032x}",
        "AccountSid": "AC" + "0" * 32,
        "From": from_,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
    }


def sms_status(sid: str, status: str, error_code: str | None = None) -> dict[str, str]:
    """The form of a delivery status callback."""
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32}
    if error_code is not None:
        form["ErrorCode"] = error_code
    return form


def twilio_signature(url: str, params: dict[str, str], auth_token: str = TWILIO_AUTH_TOKEN) -> str:
    """X-Twilio-Signature for a POST of `params` to `url` (the URL Twilio called)."""
    return RequestValidator(auth_token).compute_signature(url, params)
