"""Aliyun SMS (dysmsapi 2017-05-25) through the official SDK: `send_sms_async`, no
hand-written request signing (the SDK signs with ACS3-HMAC-SHA256).

`sms.aliyun.endpoint` is a URL: its scheme becomes the SDK's `protocol` and its host
(and port) the SDK's `endpoint`, so tests point it at a fake on loopback over http.
SendSms reports refusals as HTTP 200 with `Code` other than "OK"; the SDK raises for
HTTP errors (`ClientException` 4xx, `ServerException` 5xx, with `.code` and
`.status_code`) and for no answer (`UnretryableException`). All become
`scheduler.send.aliyun_sms.AliyunError(code, http_status)` (http_status None: no answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi import models as api_models
from Tea.exceptions import TeaException

from models.phone import mask_phone
from models.settings.sections import AliyunSmsSettings
from scheduler.send.aliyun_sms import AliyunError

log = logging.getLogger("memberbot.sms")


def sdk_client(settings: AliyunSmsSettings, *, timeout: float = 10.0) -> Client:
    """The SDK client for `settings` (keys, endpoint URL, timeouts in milliseconds)."""
    if not (settings.access_key_id and settings.access_key_secret):
        raise ValueError("sms.provider = aliyun needs sms.aliyun.access_key_id and secret")
    if not settings.sign_name:
        raise ValueError("sms.provider = aliyun needs sms.aliyun.sign_name")
    url = urlsplit(settings.endpoint)
    config = api_models.Config(
        access_key_id=settings.access_key_id,
        access_key_secret=settings.access_key_secret,
        endpoint=url.netloc,
        protocol=url.scheme,
        read_timeout=int(timeout * 1000),
        connect_timeout=int(min(timeout, 5.0) * 1000),
    )
    return Client(config)


class AliyunApi:
    """`scheduler.send.aliyun_sms.AliyunClient` over the SDK."""

    def __init__(self, client: Client, *, sign_name: str, timeout: float | None = None):
        self._client = client
        self._sign_name = sign_name
        self._timeout = timeout

    async def send_template(self, phone: str, template_code: str, params: dict[str, str]) -> str:
        request = sms_models.SendSmsRequest(
            phone_numbers=phone,
            sign_name=self._sign_name,
            template_code=template_code,
            template_param=json.dumps(params, ensure_ascii=False) if params else None,
        )
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.send_sms_async(request)
        except TeaException as exc:
            status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
            code = getattr(exc, "code", None)
            if status is None:  # no answer (connection refused, timeout inside the SDK)
                cause = exc.__cause__ or exc.__context__ or exc
                what = f"{type(cause).__name__}: {str(cause)[:80]}".rstrip(": ")
                raise AliyunError(f"aliyun unreachable: {what}") from exc
            raise AliyunError(f"aliyun HTTP {status}", code=code, http_status=status) from exc
        except (OSError, TimeoutError) as exc:
            raise AliyunError(f"aliyun unreachable: {type(exc).__name__}") from exc
        body = response.body
        if body is None or body.code != "OK":
            code = None if body is None else body.code
            raise AliyunError(f"aliyun refused: {code}", code=code, http_status=200)
        log.info("sms to %s accepted by aliyun: %s", mask_phone(phone), body.biz_id)
        return body.biz_id or ""
