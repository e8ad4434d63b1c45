"""`GET /api/openapi.json` (bot/api/openapi.py): public, a valid OpenAPI 3.1 document, made
from the app's own route table — every `/api/*` route is in it with a summary, its body's
pydantic schema and its security — so a route added without a `describe` note fails here."""

from __future__ import annotations

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from bot.api.openapi import document
from bot.app import create_app
from tests.conftest import API_KEY

SERVED = "/api/openapi.json"


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


def api_routes(app: web.Application) -> set[tuple[str, str]]:
    found = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource}
    return {(m, path) for m, path in found if m != "head" and path.startswith("/api/")}


def operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {(m, path): op for path, ops in doc["paths"].items() for m, op in ops.items()}


async def test_served_without_a_key_and_valid(client):
    resp = await client.get(SERVED)  # no Authorization: it describes no data
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc = await resp.json()
    validate(doc)  # raises on an invalid OpenAPI document
    assert doc["openapi"].startswith("3.1")
    assert operations(doc)[("get", SERVED)]["security"] == []


async def test_every_api_route_is_in_the_document_with_a_summary(client):
    doc = await (await client.get(SERVED)).json()
    ops = operations(doc)
    routes = api_routes(client.server.app)
    assert len(routes) > 20
    assert routes == set(ops)
    assert [key for key, op in ops.items() if not op.get("summary")] == []


def test_an_undescribed_route_shows_without_a_summary(settings):
    app = create_app(settings)

    async def extra(request):  # pragma: no cover - never called
        return web.json_response({})

    app.router.add_post("/api/extra/{thing}", extra)
    op = operations(document(app))[("post", "/api/extra/{thing}")]
    assert "summary" not in op  # what the test above refuses
    assert op["parameters"][0]["name"] == "thing"


async def test_bodies_security_and_errors_come_from_the_code(client):
    doc = await (await client.get(SERVED)).json()
    ops = operations(doc)
    schemas = doc["components"]["schemas"]

    store = ops[("post", "/api/stores")]
    assert store["security"] == [{"apiKey": []}]
    ref = store["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/StoreIn"
    assert set(schemas["StoreIn"]["required"]) == {"code", "name"}
    assert schemas["StoreIn"]["additionalProperties"] is False
    assert set(store["responses"]) == {"200", "201", "4XX"}

    purchase = schemas["PurchaseIn"]
    assert purchase["properties"]["items"]["items"]["$ref"] == "#/components/schemas/ItemIn"
    assert ops[("post", "/api/greetings")]["security"] == [{"assistantToken": []}]
    assert ops[("get", "/api/inbox")]["parameters"][0]["name"] == "status"
    reply = ops[("post", "/api/inbox/{id}/reply")]
    assert reply["parameters"][0]["schema"]["type"] == "integer"
    error = doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert schemas["Error"]["required"] == ["error", "field"]
    assert not any(s.startswith("5") for op in ops.values() for s in op["responses"])


async def test_a_documented_refusal_has_the_documented_shape(client):
    """A 4xx of an operator route is the Error schema's object."""
    resp = await client.post("/api/stores", json={"code": "S1"})
    assert resp.status == 401
    assert set(await resp.json()) == {"error", "field"}
    resp = await client.post(
        "/api/stores", json={"code": "S1"}, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert resp.status == 422
    body = await resp.json()
    assert body["field"] == "name" and isinstance(body["error"], str)
