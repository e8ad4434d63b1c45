"""The README's short tour works call by call against `memberbot serve --demo` (issue 10,
point 20): every curl of it is sent, as written, to a demo server."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import aiohttp

from bot.cli.serve import start_server
from bot.demo import DEMO_API_KEY

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_calls() -> list[tuple[str, str, dict[str, str], str | None]]:
    """(method, path, headers, body) of each curl in the tour's shell block."""
    text = README.read_text()
    block = re.search(r"## A short tour.*?```sh\n(.*?)```", text, re.S).group(1)
    key = re.search(r"^KEY=(\S+)$", block, re.M).group(1)
    words = shlex.split(block.replace("$KEY", key), comments=True)
    calls, i = [], 0
    while i < len(words):
        if words[i] != "curl":
            i += 1
            continue
        method, headers, body, url = "GET", {}, None, None
        i += 1
        while i < len(words) and words[i] != "curl":
            word = words[i]
            if word == "-H":
                name, _, value = words[i + 1].partition(": ")
                headers[name] = value
                i += 1
            elif word == "-X":
                method = words[i + 1]
                i += 1
            elif word == "-d":
                body = words[i + 1]
                i += 1
            elif word.startswith("http"):
                url = word
            i += 1
        calls.append((method, url.removeprefix("http://127.0.0.1:8080"), headers, body))
    return calls


async def test_every_call_of_the_readme_tour_works_on_the_demo(make_settings):
    calls = tour_calls()
    assert len(calls) >= 6 and any(path.startswith("/api/members/") for _, path, _, _ in calls)
    settings = make_settings(api={"keys": [DEMO_API_KEY]})
    runner, url = await start_server(settings, host="127.0.0.1", port=0, demo=True)
    try:
        async with aiohttp.ClientSession() as client:
            for method, path, headers, body in calls:
                async with client.request(method, url + path, headers=headers, data=body) as resp:
                    assert resp.status < 300, (method, path, resp.status, await resp.text())
    finally:
        await runner.cleanup()
