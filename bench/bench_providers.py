"""The SMS providers `bench_outbox.py` can drain to: each one's fake (in its own process),
its settings, and the outbox rows it sends.

- `twilio`: `tests.fakes.FakeTwilioApi`, twilio's async client; the text is free.
- `aliyun`: `tests.fake_aliyun.FakeAliyunSms`, the official SDK (`send_sms_async`); every
  text is a rendered `care_d30` message, so each send also finds its approved template
  and splits the text into the template's variables (`scheduler.send.aliyun_sms`).
"""

from __future__ import annotations

import json
import time

PROVIDERS = ("twilio", "aliyun")
FROM = "+15005550006"


def fake_app(provider: str):
    """The fake's aiohttp app with `/_stats` and `/_reset` for the bench."""
    from aiohttp import web

    if provider == "aliyun":
        from tests.fake_aliyun import FakeAliyunSms

        fake = FakeAliyunSms()
        sent, keys = fake.sent, lambda m: json.dumps([m["phone"], m["params"]], ensure_ascii=False)
    else:
        from tests.fakes import FakeTwilioApi

        fake = FakeTwilioApi()
        sent, keys = fake.messages, lambda m: m["Body"]
    app = fake.app()

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "messages": len(sent),
                "distinct_bodies": len({keys(m) for m in sent}),
                "refused": len(fake.refused),
                "cpu_s": time.process_time(),
            }
        )

    async def reset(_request: web.Request) -> web.Response:
        sent.clear()
        fake.refused.clear()
        return web.json_response({})

    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    return app


def sms_settings(provider: str, fake_url: str) -> dict:
    if provider == "aliyun":
        from tests.fake_aliyun import (
            ALIYUN_ACCESS_KEY_ID,
            ALIYUN_ACCESS_KEY_SECRET,
            ALIYUN_SIGN_NAME,
        )

        return {
            "provider": "aliyun",
            "aliyun": {
                "access_key_id": ALIYUN_ACCESS_KEY_ID,
                "access_key_secret": ALIYUN_ACCESS_KEY_SECRET,
                "sign_name": ALIYUN_SIGN_NAME, "endpoint": fake_url,
                "templates": {"care_d30": "SMS_CARE_D30"},
            },
        }  # fmt: skip
    from tests.fakes import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN

    return {
        "provider": "twilio",
        "twilio": {
            "account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN,
            "from_number": FROM, "api_base_url": fake_url,
        },
    }  # fmt: skip


def message_text(provider: str, tag: str, member_id: int) -> str:
    """A distinct text per message, as the planner would queue it for `provider`."""
    if provider == "aliyun":
        from scheduler.render import render_message

        return render_message(
            "care_d30", "zh_CN", member_name=f"{tag}会员{member_id}", store_name="静安店",
            assistant_name="小李",
        )  # fmt: skip
    return f"{tag} 第{member_id}条：天冷了，注意保暖。回复TD退订"
