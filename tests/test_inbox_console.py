"""The staff console's inbox (docs/staff-console.md "Inbox"): the header's count, the list,
the thread with the member's facts (numbers masked), the reply box and the close button,
under the console's own sign-in, CSRF and scope rules; the answer reaches the fake
WeChat customer-service API like one sent through `/api/inbox`."""

from __future__ import annotations

import re

from tests.test_inbox import PHONE, QUESTION, shop  # noqa: F401  (the fixture)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def sign_in(shop, code: str) -> str:  # noqa: F811
    resp = await shop.client.post(
        "/staff/signin", data={"secret": shop.tokens[code]}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()
    page = await (await shop.client.get("/staff/inbox")).text()
    return CSRF.search(page).group(1)


async def test_inbox_page_thread_reply_and_close(shop):  # noqa: F811
    await shop.say(QUESTION)
    [c] = await shop.inbox("A001")
    csrf = await sign_in(shop, "A001")
    page = await (await shop.client.get("/staff/")).text()
    assert 'id="inbox-count"' in page and ">1</span>" in page  # the header's count
    page = await (await shop.client.get("/staff/inbox")).text()
    assert "张三" in page and "待回复" in page
    assert "+86138****8000" in page and PHONE not in page
    page = await (await shop.client.get(f"/staff/inbox/{c['id']}")).text()
    assert QUESTION in page and 'id="reply-form"' in page and 'id="conversation-facts"' in page
    assert "+86138****8000" in page and PHONE not in page

    # no CSRF token: refused, nothing sent
    resp = await shop.client.post(
        f"/staff/inbox/{c['id']}/reply", data={"text": "有的"}, allow_redirects=False
    )
    assert resp.status == 403
    assert shop.wechat.sent == []
    # an empty answer: the page again with the reason
    resp = await shop.client.post(
        f"/staff/inbox/{c['id']}/reply", data={"text": " ", "csrf_token": csrf},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 422 and 'id="reply-form"' in await resp.text()

    resp = await shop.client.post(
        f"/staff/inbox/{c['id']}/reply", data={"text": "有的，给您留一件", "csrf_token": csrf},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 303
    assert resp.headers["Location"] == f"/staff/inbox/{c['id']}?sent=wechat"
    await shop.wechat.wait_sent(1)
    assert shop.wechat.sent[0]["text"]["content"] == "有的，给您留一件"
    page = await (await shop.client.get(resp.headers["Location"])).text()
    assert "回复已通过微信发出" in page and "有的，给您留一件" in page
    assert 'id="inbox-count"' not in page  # nothing waits now

    resp = await shop.client.post(
        f"/staff/inbox/{c['id']}/close", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/staff/inbox?closed=1"
    [closed] = await shop.inbox("A001", "closed")
    assert closed["id"] == c["id"]
    page = await (await shop.client.get(f"/staff/inbox/{c['id']}")).text()
    assert 'id="reply-form"' not in page


async def test_another_assistants_conversation_is_refused(shop):  # noqa: F811
    await shop.say(QUESTION)
    [c] = await shop.inbox("A001")
    csrf = await sign_in(shop, "A002")
    assert "张三" not in await (await shop.client.get("/staff/inbox?status=all")).text()
    resp = await shop.client.get(f"/staff/inbox/{c['id']}")
    assert resp.status == 403 and QUESTION not in await resp.text()
    for action in ("reply", "close"):
        resp = await shop.client.post(
            f"/staff/inbox/{c['id']}/{action}", data={"text": "x", "csrf_token": csrf},
            allow_redirects=False,
        )  # fmt: skip
        assert resp.status == 403
    for bad in ("999999", "abc", "-1"):
        assert (await shop.client.get(f"/staff/inbox/{bad}")).status == 404
    assert shop.wechat.sent == []
    [still] = await shop.inbox("A001", "open")
    assert still["id"] == c["id"]


async def test_the_manager_sees_the_store_and_signed_out_sees_nothing(shop):  # noqa: F811
    await shop.say(QUESTION)
    resp = await shop.client.get("/staff/inbox", allow_redirects=False)
    assert resp.status == 303 and "/staff/signin" in resp.headers["Location"]
    await sign_in(shop, "M001")
    page = await (await shop.client.get("/staff/inbox")).text()
    assert "张三" in page


async def test_the_english_console(shop):  # noqa: F811
    await shop.say(QUESTION)
    csrf = await sign_in(shop, "A001")
    await shop.client.post(
        "/staff/locale", data={"locale": "en", "csrf_token": csrf, "next": "/staff/inbox"}
    )
    page = await (await shop.client.get("/staff/inbox")).text()
    assert "Member questions" in page and "waiting" in page
