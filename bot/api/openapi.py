"""`GET /api/openapi.json`: the operator API as an OpenAPI 3.1 document, public (it
describes routes and shapes, no data).

The document is made from what the app runs, not written beside it: every `/api/*`
route of the app's route table (method, path and path parameters), the pydantic model
each handler parses its body with (`model_json_schema`, validation mode), and the
`describe` note on the handler (summary, success statuses, query parameters). The
security of a route is the handler's own: `common.operator` marks the API-key routes;
the assistant-token routes say so in their note. Every 4xx is the one error shape of
`bot.errors` (`{"error", "field", …}`); no 5xx is documented, so a tool such as
schemathesis reports any as a failure. A route without a `describe` note still appears
(from the route table) but without a summary, and `tests/test_openapi.py` fails on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.api.common import API_KEY_SCHEME, ASSISTANT_SCHEME, Handler

PATH = "/api/openapi.json"
DOCUMENT = web.AppKey("openapi_document", bytes)
ROW_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
"""A table id in a path (`models.strict.row_id`)."""
CREATED = {201: "created", 200: "already there: updated or the same"}

_PARAM = re.compile(r"\{(\w+)\}")
_REFS = "#/components/schemas/{model}"
_ERROR_REF = _REFS.format(model="Error")


@dataclass(frozen=True)
class Operation:
    """What the route table cannot tell about one route."""

    summary: str
    body: type[BaseModel] | None = None
    body_required: bool = True
    ok: dict[int, str] = field(default_factory=lambda: {200: "done"})
    returns: Literal["object", "array"] = "object"
    query: dict[str, str] = field(default_factory=dict)
    """Query parameters (strings): name → description."""
    path: dict[str, dict] = field(default_factory=dict)
    """Path parameter schemas other than a string: name → JSON schema."""
    auth: str | None = None
    """A security scheme the handler checks itself; None: `operator`'s mark, or public."""


def describe(summary: str, **details) -> Callable[[Handler], Handler]:
    """Note `Operation(summary, **details)` on a handler for the document."""
    note = Operation(summary, **details)

    def mark(handler: Handler) -> Handler:
        handler.openapi = note  # type: ignore[attr-defined]
        return handler

    return mark


routes = web.RouteTableDef()


@routes.get(PATH)
@describe("This document (public: it holds no data)")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


async def _build(app: web.Application) -> None:
    """On startup, once every route is registered."""
    app[DOCUMENT] = json.dumps(document(app), ensure_ascii=False).encode("utf-8")


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
    app.on_startup.append(_build)


def _api_routes(app: web.Application):
    for route in app.router.routes():
        resource = route.resource
        path = resource.canonical if resource is not None else ""
        if route.method != "HEAD" and path.startswith("/api/"):
            yield route.method.lower(), path, route.handler


def document(app: web.Application) -> dict:
    """The OpenAPI 3.1 document of `app`'s `/api/*` routes."""
    found = list(_api_routes(app))
    notes = {(m, p): getattr(handler, "openapi", _UNDESCRIBED) for m, p, handler in found}
    models = sorted({n.body for n in notes.values() if n.body}, key=lambda m: m.__qualname__)
    refs, defs = models_json_schema([(m, "validation") for m in models], ref_template=_REFS)
    paths: dict[str, dict] = {}
    for method, path, handler in found:
        note = notes[(method, path)]
        auth = note.auth or getattr(handler, "auth_scheme", None)
        paths.setdefault(path, {})[method] = _operation(method, path, note, auth, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "memberbot operator API",
            "version": _version(),
            "description": 'CONTRACT.md "HTTP" and docs/interface-additions.md. '
            'Every 4xx answer is JSON {"error", "field"} (some add details).',
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {**defs.get("$defs", {}), "Error": _ERROR},
            "responses": {
                "Error": {
                    "description": "refused: bad credential, input, state or rate",
                    "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
                }
            },
            "securitySchemes": {
                API_KEY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "one of `api.keys` (the operator's key)",
                },
                ASSISTANT_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an assistant's own token (`POST /api/assistants` shows it)",
                },
            },
        },
    }


_ERROR = {
    "type": "object",
    "required": ["error", "field"],
    "properties": {
        "error": {"type": "string"},
        "field": {"type": ["string", "null"]},
    },
}


_UNDESCRIBED = Operation(summary="")
"""A route without a `describe` note: what the route table tells, no summary."""


def _operation(method, path, note: Operation, auth: str | None, refs) -> dict:
    op: dict = {"operationId": f"{method}_{path}", "security": [{auth: []}] if auth else []}
    if note.summary:
        op["summary"] = note.summary
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": note.path.get(name, {"type": "string"}),
        }
        for name in _PARAM.findall(path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "description": text,
         "schema": {"type": "string"}}
        for name, text in note.query.items()
    ]  # fmt: skip
    if params:
        op["parameters"] = params
    if note.body is not None:
        op["requestBody"] = {
            "required": note.body_required,
            "content": {"application/json": {"schema": refs[(note.body, "validation")]}},
        }
    op["responses"] = {
        str(status): {
            "description": text,
            "content": {"application/json": {"schema": {"type": note.returns}}},
        }
        for status, text in note.ok.items()
    }
    op["responses"]["4XX"] = {"$ref": "#/components/responses/Error"}
    return op


def _version() -> str:
    try:
        return metadata.version("memberbot")
    except metadata.PackageNotFoundError:  # a checkout run without installing
        return "0"
