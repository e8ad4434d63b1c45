"""The staff console in a real browser: Playwright driving Debian's Chromium against the
app served on a real port (LIBRARIES.md "Browser tests").

Sign in, open a member, preview a greeting (live while typing, and with the
Preview button), see a promotion note refused with the rule named, send a clean
one (the outbox row exists), sign out.

Skipped, with the reason, when Chromium or Playwright is missing on a developer's
machine; under CI (``CI=true``) it must run, so missing pieces fail instead
(`.ci/run` installs both).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from sqlmodel import select

from bot.app import create_app
from models.db import transaction
from models.tables.outbox import OutboxMessage
from tests.test_staff_console import seed

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _chromium() -> str | None:
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if _chromium() is None:
        return f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture
def browser_ready() -> None:
    reason = _missing()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but the browser test cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
async def base_url(settings, sessions, browser_ready) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def page(base_url):
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        executable = _chromium()
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 390, "height": 844})
            page = await context.new_page()
            page.set_default_timeout(15_000)
            yield page
            await context.close()
        finally:
            await browser.close()


async def test_sign_in_preview_refuse_send_sign_out(page, base_url, sessions, settings):
    from playwright.async_api import expect

    world = await seed(sessions, settings)
    member_id = world.members["张三"]

    await page.goto(f"{base_url}/staff/")
    await expect(page).to_have_url(f"{base_url}/staff/signin?next=%2Fstaff%2F")
    await expect(page.locator("h1")).to_have_text("导购登录")
    await page.fill("#secret", world.tokens["A001"])
    await page.click("#signin")
    await expect(page).to_have_url(f"{base_url}/staff/")
    await expect(page.locator("#members")).to_contain_text("+86138****8000")
    await page.fill("input[name=q]", "138000")
    await page.click("form[role=search] button")
    await expect(page.locator("#members")).to_contain_text("张三")
    await expect(page.locator("#members")).not_to_contain_text("李四")

    await page.click("text=张三")
    await expect(page).to_have_url(f"{base_url}/staff/members/{member_id}")
    await expect(page.locator("#member-facts")).to_contain_text("+8613800138000")

    await page.select_option("#occasion", "birthday")
    await page.click("#preview")
    await expect(page.locator("#draft-text")).to_contain_text("生日快乐")
    await expect(page.locator("#draft-text")).to_contain_text("王丽")
    await expect(page.locator("#draft-check")).to_contain_text("已通过消息规则检查")

    await page.fill("#note", "本周全场打折，欢迎来店")
    # The live preview (console.js) checks the note as it is typed ...
    await expect(page.locator("#draft-text")).to_contain_text("本周全场打折")
    await expect(page.locator("#draft-check")).to_contain_text("不符合消息规则")
    # ... and the Preview button does the same without script.
    await page.click("#preview")
    await expect(page.locator("#draft-text")).to_contain_text("本周全场打折")
    await expect(page.locator("#draft-check")).to_contain_text("不符合消息规则")
    await expect(page.locator("#draft-check")).to_contain_text("promotion")
    await page.click("#send")
    await expect(page.locator(".error").first).to_contain_text("未发送")
    async with transaction(sessions) as s:
        assert list(await s.exec(select(OutboxMessage))) == []

    await page.fill("#note", "祝您和家人身体健康")
    await page.click("#preview")
    await expect(page.locator("#draft-check")).to_contain_text("已通过消息规则检查")
    await page.click("#send")
    await expect(page).to_have_url(f"{base_url}/staff/members/{member_id}?sent=new")
    await expect(page.locator(".notice")).to_contain_text("祝福已加入发送队列")
    await expect(page.locator("#contacts")).to_contain_text("祝您和家人身体健康")
    async with transaction(sessions) as s:
        rows = list(await s.exec(select(OutboxMessage)))
    assert len(rows) == 1
    assert rows[0].member_id == member_id
    assert rows[0].kind == "personal_greeting"
    assert "祝您和家人身体健康" in rows[0].text

    await page.click("#signout")
    await expect(page).to_have_url(f"{base_url}/staff/signin?out=1")
    await expect(page.locator(".notice")).to_contain_text("你已退出登录")
    await page.goto(f"{base_url}/staff/members/{member_id}")
    await expect(page.locator("h1")).to_have_text("导购登录")


async def step_card(sessions, settings, application_id: int, *steps: str) -> None:
    from datetime import UTC, datetime

    from models import cards

    for step in steps:
        async with transaction(sessions) as s:
            await cards.advance(
                s, rules=settings.loyalty, application_id=application_id, to_status=step,
                actor="api", now=datetime.now(UTC), tz=settings.brand.tz,
            )  # fmt: skip


async def test_manager_and_cards_pages_render_under_their_own_csp(
    page, base_url, sessions, settings
):
    """No page of the console breaks its own Content-Security-Policy (an inline style
    is refused and reported on the console); dates are date pickers; the icon loads."""
    from playwright.async_api import expect

    world = await seed(sessions, settings)
    await step_card(sessions, settings, world.application_id,
                    "entered", "sent_to_head_office", "approved")  # fmt: skip
    reports: list[str] = []
    page.on(
        "console",
        lambda msg: reports.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    icons: list[int] = []
    page.on("response", lambda r: icons.append(r.status) if "favicon" in r.url else None)

    await page.goto(f"{base_url}/staff/signin")
    await page.fill("#secret", world.tokens["M01"])
    await page.click("#signin")
    await expect(page).to_have_url(f"{base_url}/staff/")

    await page.goto(f"{base_url}/staff/manager")
    await expect(page.locator("h1")).to_have_text("店长视图")
    assert await page.get_attribute("#start", "type") == "date"
    assert await page.get_attribute("#end", "type") == "date"
    start_width = await page.eval_on_selector("#start", "e => e.getBoundingClientRect().width")
    form_width = await page.eval_on_selector("#start", "e => e.form.getBoundingClientRect().width")
    assert start_width < form_width / 2  # sized to its content, not the full row
    await page.fill("#start", "2026-01-01")
    await page.click("form.row button[type=submit]")
    await expect(page).to_have_url(re.compile(r"start=2026-01-01"))

    await page.goto(f"{base_url}/staff/cards")
    picker = page.locator(f"#application-{world.application_id} input[name=pickup_date]")
    await expect(picker).to_have_attribute("type", "date")
    picker_width = await picker.evaluate("e => e.getBoundingClientRect().width")
    row_width = await page.eval_on_selector(
        f"#application-{world.application_id}", "e => e.getBoundingClientRect().width"
    )
    assert picker_width < row_width / 2

    assert reports == []
    assert icons and all(status == 200 for status in icons)
    icon = await page.request.get(f"{base_url}/favicon.ico")
    assert icon.status == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
