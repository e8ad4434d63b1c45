"""One WeChat message or event as the bot reads it, and the `Inbound` it becomes.

MESSAGING.md "WeChat Official Account": text messages and the events subscribe (also
by QR scene), unsubscribe and menu CLICK go to the conversation; other message types
(image, voice, …) go as an empty text so the bot answers with help; other events
(VIEW, LOCATION, job reports, …) are not passed on. The de-duplication key: messages by
sender + `MsgId`, events by sender + `CreateTime` + the event and its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.channels import xmlsafe
from bot.conversation import Inbound
from bot.inbound_outcome import bounded_key

FORWARDED_EVENTS = frozenset({"subscribe", "unsubscribe", "click"})
MSG_TYPE_MAX = 32
"""Longest `MsgType` / `Event` accepted (WeChat's are a few letters): longer → 400."""
MSG_ID_MAX = 64
"""Longest `MsgId` accepted (WeChat's is a 64-bit number): longer → 400."""


@dataclass(frozen=True, slots=True)
class WeChatMessage:
    """The fields of one inbound message or event that the bot uses."""

    openid: str
    account: str
    msg_type: str
    create_time: int
    msg_id: str | None
    content: str
    event: str | None
    event_key: str | None

    @property
    def dedupe_key(self) -> str:
        """MESSAGING.md: messages by sender + `MsgId` (one member's `MsgId` never finds
        another's answer), events by `FromUserName` + `CreateTime`."""
        if self.msg_type != "event" and self.msg_id:
            return bounded_key(f"msg:{self.openid}:{self.msg_id}")
        # The event and its key join the pair, so a subscribe and a menu click in the same
        # second are two events; a retry repeats all of them.
        key = (self.event_key or "")[:64]
        return bounded_key(
            f"evt:{self.openid}:{self.create_time}:{self.event or self.msg_type}:{key}"
        )


def read_message(fields: dict) -> WeChatMessage:
    """The message of a parsed `<xml>` document; MalformedXml if a needed field is wrong."""
    field = xmlsafe.field
    msg_type = field(fields, "MsgType").strip().lower()
    created = field(fields, "CreateTime").strip()
    if not (created.isascii() and created.isdigit() and len(created) <= 11):
        raise xmlsafe.MalformedXml("<CreateTime> must be a Unix time")
    openid = field(fields, "FromUserName").strip()
    if not openid or len(openid) > 64:
        raise xmlsafe.MalformedXml("<FromUserName> must be an openid")
    event = field(fields, "Event", required=False)
    msg_id = (field(fields, "MsgId", required=False) or "").strip() or None
    if len(msg_type) > MSG_TYPE_MAX or (event is not None and len(event) > MSG_TYPE_MAX):
        raise xmlsafe.MalformedXml(f"<MsgType> and <Event> are at most {MSG_TYPE_MAX} characters")
    if msg_id is not None and len(msg_id) > MSG_ID_MAX:
        raise xmlsafe.MalformedXml(f"<MsgId> is at most {MSG_ID_MAX} characters")
    return WeChatMessage(
        openid=openid,
        account=field(fields, "ToUserName", required=False) or "",
        msg_type=msg_type,
        create_time=int(created),
        msg_id=msg_id,
        content=field(fields, "Content", required=False) or "",
        event=event.strip().lower() if event else None,
        event_key=field(fields, "EventKey", required=False) or None,
    )


def to_inbound(msg: WeChatMessage) -> Inbound | None:
    """What the conversation gets; None for events the bot does not answer."""
    at = datetime.fromtimestamp(msg.create_time, UTC)
    if msg.msg_type == "event":
        event = msg.event
        if event not in FORWARDED_EVENTS:
            return None
        key = msg.event_key
        if event == "subscribe" and key and key.startswith("qrscene_"):
            key = key.removeprefix("qrscene_")  # subscribed by scanning a QR code with a scene
        return Inbound(channel="wechat", sender=msg.openid, at=at, event=event, event_key=key)
    text = msg.content if msg.msg_type == "text" else ""
    return Inbound(channel="wechat", sender=msg.openid, text=text, at=at, message_id=msg.msg_id)
