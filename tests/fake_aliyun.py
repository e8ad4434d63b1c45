"""A local stand-in for Aliyun SMS (dysmsapi SendSms), as an aiohttp app for `aiohttp_server`.

It answers the official SDK's call (`POST /?PhoneNumbers=…&SignName=…&TemplateCode=…&
TemplateParam=…`, the action in `x-acs-action`, `Authorization: ACS3-HMAC-SHA256
Credential=<access key id>,…`) like the real service in the parts the bot uses, and
records what it was asked:

    fake = FakeAliyunSms()
    server = await aiohttp_server(fake.app())
    fake.failures.append(500)                        # the next call answers HTTP 500
    fake.failures.append(("code", "isv.MOBILE_NUMBER_ILLEGAL"))  # … or a refusal body
    fake.refuse_to["13800138000"] = ("code", "isv.BLACK_KEY_CONTROL_LIMIT")
    fake.down = 503                                  # every call 503 until None
    fake.sent[0] == {"phone": "13800138000", "sign_name": "…", "template_code": "SMS_1",
                     "params": {"member_name": "…"}, "biz_id": "…"}

The up-message and report pushes go the other way (the provider calls us): the tests
post `up_message(...)` / `report(...)` bodies to the app.
"""

from __future__ import annotations

import itertools
import json
import time

from aiohttp import web

from tests.fakes import Failure, _Recorder, _status

ALIYUN_ACCESS_KEY_ID = "LTAI-test-key-id"
ALIYUN_ACCESS_KEY_SECRET = "test-aliyun-secret"
ALIYUN_SIGN_NAME = "静安时装"
ALIYUN_PUSH_TOKEN = "push-token-0123456789abcdef"


class FakeAliyunSms(_Recorder):
    """`POST /` with `x-acs-action: SendSms`."""

    def __init__(self, *, access_key_id: str = ALIYUN_ACCESS_KEY_ID):
        super().__init__()
        self.access_key_id = access_key_id
        self.sent: list[dict] = []
        """Accepted messages: phone, sign_name, template_code, params (dict), biz_id."""
        self.refused: list[dict] = []
        self.refuse_to: dict[str, Failure | tuple[str, str]] = {}
        self._ids = itertools.count(1)

    async def wait_sent(self, count: int, within: float = 5.0) -> None:
        await self._until(lambda: len(self.sent) >= count, within)

    def app(self) -> web.Application:
        app = self._new_app()
        app.router.add_post("/", self._send)
        return app

    async def _send(self, request: web.Request) -> web.Response:
        self.received.append(time.monotonic())
        await self._pause()
        held = await self._hang()
        if held is not None:
            return held
        q = request.query
        record = {
            "phone": q.get("PhoneNumbers", ""),
            "sign_name": q.get("SignName", ""),
            "template_code": q.get("TemplateCode", ""),
            "params": json.loads(q.get("TemplateParam") or "{}"),
        }
        auth = request.headers.get("Authorization", "")
        if request.headers.get("x-acs-action") != "SendSms":
            return self._error(400, "InvalidAction.NotFound")
        if f"Credential={self.access_key_id}," not in auth:
            self.refused.append(record)
            self._notify()
            return self._error(404, "InvalidAccessKeyId.NotFound")
        refuse = self.refuse_to.get(record["phone"])
        if self.down is not None or self.failures or refuse is not None:
            if refuse is not None:
                failure = refuse
            else:
                failure = self.down if self.down is not None else self.failures.pop(0)
            self.refused.append(record)
            self._notify()
            http = _status(failure)  # type: ignore[arg-type]
            if http is not None:
                return self._error(http[0], "ServiceUnavailable", headers=http[1])
            return web.json_response(
                {"Code": failure[1], "Message": "fake refusal", "RequestId": "req-x"}
            )
        record["biz_id"] = f"{next(self._ids):06d}^0"
        self.sent.append(record)
        self._notify()
        return web.json_response(
            {"Code": "OK", "Message": "OK", "BizId": record["biz_id"], "RequestId": "req-1"}
        )

    @staticmethod
    def _error(status: int, code: str, *, headers: dict[str, str] | None = None):
        return web.json_response(
            {"Code": code, "Message": "fake failure", "RequestId": "req-e"},
            status=status,
            headers=headers,
        )


def up_message(phone: str, content: str, *, sequence_id: int = 1, dest_code: str = "") -> dict:
    """One element of the up-message push (Aliyun's SmsUpMessage, HTTP batch push)."""
    return {
        "phone_number": phone,
        "content": content,
        "sign_name": ALIYUN_SIGN_NAME,
        "send_time": "2026-12-02 10:00:00",
        "dest_code": dest_code,
        "sequence_id": sequence_id,
    }


def report(biz_id: str, phone: str, *, success: bool = True, err_code: str = "DELIVERED") -> dict:
    """One element of the delivery-report push (Aliyun's SmsReport)."""
    return {
        "phone_number": phone,
        "send_time": "2026-12-02 10:00:00",
        "report_time": "2026-12-02 10:00:05",
        "success": success,
        "err_code": err_code,
        "err_msg": "用户接收成功" if success else "failed",
        "sms_size": "1",
        "biz_id": biz_id,
        "out_id": "",
    }
