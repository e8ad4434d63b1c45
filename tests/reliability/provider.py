"""The fake Twilio and WeChat APIs of tests/fakes.py as a process of their own on a
loopback port, which `memberbot serve` replicas (other processes) can be pointed at
(`[sms.twilio] api_base_url`, `[wechat] api_base_url`), with a control interface for
the harness:

    provider = Provider(workdir).start()          # python -m tests.reliability.provider
    provider.url                                  # http://127.0.0.1:<port>
    provider.set("twilio", down=503)              # every send answers 503 …
    provider.set("twilio", down=None)             # … until set back
    provider.set("twilio", failures=[[429, {"Retry-After": "3"}]])
    provider.set("twilio", hold_for=60)           # sends get no answer for 60 s (then 503)
    provider.set("twilio", refuse_to={"+86…": ["code", 21610]})
    provider.log("twilio")                        # what it received (see `_log`)

Times in the log are `time.monotonic()`, the system-wide clock the harness reads too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

from aiohttp import web

from tests.fakes import Failure, FakeTwilioApi, FakeWeChatApi
from tests.reliability.configs import REPO
from tests.reliability.stack import Process, free_port, port_open, wait_until

CONTROL = "/_fake"


def _failure(value) -> Failure:
    """A failure from JSON: 503, ["code", 21610], [429, {"Retry-After": "3"}]."""
    return value if isinstance(value, int) else (value[0], value[1])


class _Fakes:
    def __init__(self) -> None:
        self.fakes = {"twilio": FakeTwilioApi(), "wechat": FakeWeChatApi()}
        self.fakes["twilio"].before_answer = self._stamp

    @staticmethod
    async def _stamp(message: dict) -> None:
        message["at"] = time.monotonic()

    def app(self) -> web.Application:
        app = web.Application()
        for fake in self.fakes.values():
            sub = fake.app()
            for route in sub.router.routes():
                app.router.add_route(route.method, route.resource.canonical, route.handler)
            app.on_shutdown.append(fake._on_shutdown)
        app.router.add_post(CONTROL + "/{name}", self._set)
        app.router.add_get(CONTROL + "/{name}", self._log)
        return app

    async def _set(self, request: web.Request) -> web.Response:
        fake = self.fakes[request.match_info["name"]]
        body = await request.json()
        if "down" in body:
            fake.down = body["down"]
        if "failures" in body:
            fake.failures[:] = [_failure(f) for f in body["failures"]]
        if "refuse_to" in body:
            fake.refuse_to = {k: _failure(v) for k, v in body["refuse_to"].items()}
        if "hold_for" in body:
            fake.hold(10**9)
            asyncio.get_running_loop().call_later(body["hold_for"], self._unhold, fake)
        return web.json_response({"ok": True})

    @staticmethod
    def _unhold(fake) -> None:
        fake.hangs = 0
        fake.release()

    async def _log(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        fake = self.fakes[name]
        accepted = fake.messages if name == "twilio" else fake.sent
        return web.json_response(
            {
                "accepted": accepted,
                "received": fake.received,
                "refused": fake.refused,
                "hung": fake.hung,
                "hanging": fake.hangs > 0,
            }
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(_Fakes().app(), host="127.0.0.1", port=args.port, print=None)


class Provider:
    """The harness's side: the process and its control interface."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        argv = [sys.executable, "-m", "tests.reliability.provider", "--port", str(self.port)]
        self.process = Process(
            "provider", argv, workdir / "provider.log", env={"PYTHONPATH": str(REPO)}, cwd=REPO
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Provider:
        self.process.start()
        wait_until(lambda: port_open(self.port), timeout=30, what="the fake provider")
        return self

    def stop(self) -> None:
        self.process.stop()

    def set(self, name: str, **changes) -> None:
        self._call(name, changes)

    def log(self, name: str) -> dict:
        return self._call(name, None)

    def _call(self, name: str, body: dict | None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{CONTROL}/{name}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())


if __name__ == "__main__":
    main()
