"""bot.errors.error_middleware: the one translator of domain errors into JSON answers.

A handler only raises; the middleware answers with the error's status, `{"error",
"field", **details()}`, its `Retry-After`, `WWW-Authenticate` for `Unauthorized`, and one
INFO line on ``memberbot.api`` naming the route pattern (never the path's values).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from bot.app import create_app
from bot.errors import Unauthorized
from models.errors import Conflict, DomainError


class Throttled(DomainError):
    status = 429
    retry_after = 17

    def details(self) -> dict[str, Any]:
        return {"reason": "throttled"}


def _raising(exc: Exception):
    async def handler(request: web.Request) -> web.Response:
        raise exc

    return handler


@pytest.fixture
async def client(aiohttp_client, settings):
    app = create_app(settings)
    app.router.add_post("/api/conflict/{phone}", _raising(Conflict("already there", "code")))
    app.router.add_get("/api/throttled", _raising(Throttled("slow down", "assistant")))
    app.router.add_get("/api/secret", _raising(Unauthorized("who are you", "authorization")))
    return await aiohttp_client(app)


async def test_a_domain_error_is_its_status_and_json(client, caplog):
    caplog.set_level(logging.INFO, logger="memberbot.api")
    response = await client.post("/api/conflict/13900139000")
    assert response.status == 409
    assert await response.json() == {"error": "already there", "field": "code"}
    assert "Retry-After" not in response.headers
    assert "WWW-Authenticate" not in response.headers
    lines = [r.getMessage() for r in caplog.records if r.name == "memberbot.api"]
    assert lines == ["POST /api/conflict/{phone} -> 409 already there (field code)"]


async def test_details_and_retry_after_go_into_the_answer(client):
    response = await client.get("/api/throttled")
    assert response.status == 429
    assert await response.json() == {
        "error": "slow down",
        "field": "assistant",
        "reason": "throttled",
    }
    assert response.headers["Retry-After"] == "17"


async def test_unauthorized_asks_for_a_bearer_credential(client):
    response = await client.get("/api/secret")
    assert response.status == 401
    assert await response.json() == {"error": "who are you", "field": "authorization"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
