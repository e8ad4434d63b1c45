"""`POST /api/stores` and `POST /api/assistants`: the shops and their staff."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field, StrictBool

from bot.api.common import Body, Code, operator, read_object, tx
from bot.api.openapi import CREATED, describe
from bot.errors import json_response
from models import stores
from models.staff_auth import hash_password

routes = web.RouteTableDef()


class StoreIn(Body):
    code: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    city: Annotated[str, Field(max_length=100)] = ""


class AssistantIn(Body):
    code: Code
    name: Annotated[str, Field(min_length=1, max_length=200)]
    store: Code
    rotate_token: StrictBool = False
    role: Literal["assistant", "manager"] | None = None
    """Staff console role; unchanged when absent (new assistants: "assistant")."""
    password: Annotated[str, Field(min_length=8, max_length=200)] | None = None
    """Staff console password (stored as a scrypt hash); unchanged when absent."""


@routes.post("/api/stores")
@describe("Create or update a store", body=StoreIn, ok=CREATED)
@operator
async def post_store(request: web.Request) -> web.Response:
    data = StoreIn.model_validate(await read_object(request))
    async with tx(request) as session:
        store, created = await stores.upsert_store(
            session, code=data.code, name=data.name, city=data.city
        )
        body = {"code": store.code, "name": store.name, "city": store.city}
    return json_response(body, status=201 if created else 200)


@routes.post("/api/assistants")
@describe(
    "Create or update an assistant (a new one, or `rotate_token`, answers its token once)",
    body=AssistantIn,
    ok=CREATED,
)
@operator
async def post_assistant(request: web.Request) -> web.Response:
    data = AssistantIn.model_validate(await read_object(request))
    async with tx(request) as session:
        assistant, created, token = await stores.create_or_update_assistant(
            session,
            code=data.code,
            name=data.name,
            store_code=data.store,
            rotate_token=data.rotate_token,
            role=data.role,
            password_hash=hash_password(data.password) if data.password is not None else None,
        )
        body: dict[str, Any] = {
            "code": assistant.code,
            "name": assistant.name,
            "store": data.store,
            "role": assistant.role,
        }
    if token is not None:
        body["token"] = token
    return json_response(body, status=201 if created else 200)
