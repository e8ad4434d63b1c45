"""What `memberbot serve` writes to its log and how its server treats slow or broken
connections (`bot.logsetup`, `server.idle_timeout`): no phone number in any line,
times with their UTC offset, one short line per malformed request, slow headers cut."""

from __future__ import annotations

import asyncio
import io
import logging
import re

import pytest
from aiohttp import ClientSession, web
from sqlalchemy import text

from bot.appkeys import SESSIONS
from bot.cli.serve import start_server
from bot.logsetup import BadRequestFilter, configure_logging, mask_phones
from models.db import transaction
from tests.conftest import API_KEY

PHONE = "+8613800138001"
UNMASKED = re.compile(r"1[3-9][0-9]{9}")
LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d [A-Z]+ ")


@pytest.fixture
def log_stream():
    """`configure_logging` into a buffer; the root logger and aiohttp's put back after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    server_log = logging.getLogger("aiohttp.server")
    buffer = io.StringIO()
    configure_logging(buffer)
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for f in [f for f in server_log.filters if isinstance(f, BadRequestFilter)]:
        server_log.removeFilter(f)


async def _db_error_with_a_phone(request: web.Request) -> web.Response:
    async with transaction(request.app[SESSIONS]) as session:
        await session.exec(
            text("SELECT no_such_column FROM members WHERE phone = :p").bindparams(p=PHONE)
        )
    return web.Response(text="unreachable")


@pytest.fixture
async def served(make_settings, monkeypatch):
    """`start_server` as serve runs it, plus one route whose SQL fails with a phone."""
    import bot.cli.serve

    real = bot.cli.serve.create_app

    def create_app(settings, **kw):
        app = real(settings, **kw)
        app.router.add_get("/test/db-error", _db_error_with_a_phone)
        return app

    monkeypatch.setattr(bot.cli.serve, "create_app", create_app)
    settings = make_settings(server={"idle_timeout": 1})
    runner, url = await start_server(settings, host="127.0.0.1", port=0)
    yield url
    await runner.cleanup()


async def test_no_log_line_holds_a_phone_number_and_every_line_has_its_offset(
    log_stream, served
):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with ClientSession() as http:
        for path in (f"/api/members/{PHONE}", f"/api/members/{PHONE.replace('+', '%2B')}",
                     f"/api/members/{PHONE[3:]}", "/test/db-error"):  # fmt: skip
            async with http.get(served + path, headers=auth) as resp:
                assert resp.status in (404, 500)
    await asyncio.sleep(0.05)  # the access log line is written after the response
    out = log_stream.getvalue()
    assert "no_such_column" in out  # the database error and its traceback were logged
    assert "/api/members/" in out  # so were the requests
    assert not UNMASKED.search(out), out
    lines = [line for line in out.splitlines() if LINE_START.match(line)]
    assert len(lines) >= 5
    assert all(LINE_START.match(line) for line in out.splitlines() if " INFO " in line)


def test_masking_keeps_dates_times_and_short_numbers():
    line = "2026-12-02T09:00:00.000+08:00 INFO x: port 8080 took 1234 ms for +8613800138001"
    assert mask_phones(line) == line.replace("+8613800138001", "+861******8001")
    assert mask_phones("sid 12345678901234567890") == "sid " + "*" * 20


async def test_a_client_sending_its_headers_slowly_is_disconnected(served):
    host, port = served.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def trickle():
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)

    sender = asyncio.create_task(trickle())
    try:
        # closed after idle_timeout (1 s); without the knob it stayed open 300 s and more
        assert await asyncio.wait_for(reader.read(), timeout=15) == b""
    finally:
        sender.cancel()
        writer.close()


async def test_a_malformed_raw_request_logs_one_short_line(log_stream, served):
    host, port = served.removeprefix("http://").split(":")
    for _ in range(3):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        assert answer.startswith(b"HTTP/1.0 400")
    out = log_stream.getvalue()
    assert "Traceback" not in out
    assert out.count("malformed HTTP request from 127.0.0.1: ") == 3
    assert len([line for line in out.splitlines() if "malformed" in line]) == 3


def test_the_other_commands_mask_their_warnings_too():
    """A warning logged by a command (the CSV import logs a database error with its SQL
    parameters) goes through the masking formatter, as a bare line like before."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import logging, sys; from bot.cli import main; "
        "main(['--version']); "
        f"logging.getLogger('memberbot.csv').warning('parameters: (%r,)', {PHONE!r})"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=60,
    )  # fmt: skip
    assert done.stderr.strip() == "parameters: ('+861******8001',)"
