"""/openapi.json: the admin API's OpenAPI 3.1 description, generated from the routers once per app.

FastAPI writes the document from the routes' models. Added here: the schemas of request bodies
that routes read themselves (merge patches, the optional revoke body; `KeyModels.extra_models`,
referenced from the routes' `openapi_extra`) and the description of the page envelope and
authentication. docs/api.md, "The OpenAPI description", says how to generate a client.
The document is built by the first request for it, on a worker thread (≈ 0.4 s of CPU): the
event loop, which also serves proxied calls, keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

DESCRIPTION = """Keybrake's admin API (docs/api.md). Every operation but the health ones needs
`Authorization: Bearer <admin token>`. Money is a JSON number in US dollars, exact, at most 6
decimals; timestamps are RFC 3339 UTC strings. Lists share one envelope:
`{"object": "list", "data": [...], "next_cursor": ...}` (`GET /v1/spend` adds `group_by` and
`timezone`). Every error is `{"error": {"type": "keybrake_error", "code", "message", "field"}}`."""


def describe(app: FastAPI, extra_models: Sequence[type[BaseModel]]) -> None:
    """Make `app.openapi()` build the document once, with `extra_models` (`KeyModels.extra_models`:
    the bodies routes read themselves) in its components, and serve it at /openapi.json (the app
    is made with `openapi_url=None`; the first request builds it off the event loop)."""
    building = asyncio.Lock()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes)
            _, top = models_json_schema(
                [(m, "validation") for m in extra_models], ref_template="#/components/schemas/{model}"
            )
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in top.get("$defs", {}).items():
                schemas.setdefault(name, schema)
            _as_answered(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        if app.openapi_schema is None:
            async with building:
                await asyncio.to_thread(app.openapi)
        return JSONResponse(app.openapi_schema)


_JSON = "application/json"
# Query parameters the routes parse themselves (exact messages, 400 naming them) but that have a
# type a client should know: declared here as what is accepted.
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "revoke_keys": {"type": "boolean", "default": False, "description": "exactly `true` or `false`"},
}


def _as_answered(spec: dict[str, Any]) -> None:
    """Say what the API answers, where FastAPI's defaults say otherwise.

    - JSON answers are keyed `application/json` (the answers carry `; charset=utf-8`, a parameter
      OpenAPI tools do not match on);
    - FastAPI's own 422 shape (`HTTPValidationError`) is never answered: the admin app turns every
      validation failure into the admin error shape (`ErrorBody`), declared where it occurs;
    - `limit` is an integer from 1 to 1000 and `revoke_keys` a boolean (QUERY_SCHEMAS), though
      the routes read them as text to answer their own 400s.
    """
    for operations in spec["paths"].values():
        for op in operations.values():
            for param in op.get("parameters", []):
                if param["in"] == "query" and param["name"] in QUERY_SCHEMAS:
                    param["schema"] = QUERY_SCHEMAS[param["name"]]
            answers = op.get("responses", {})
            unprocessable = answers.get("422", {}).get("content", {}).get(_JSON, {}).get("schema", {})
            if unprocessable.get("$ref", "").endswith("/HTTPValidationError"):
                del answers["422"]
            for answer in answers.values():
                content = answer.get("content", {})
                for media in [m for m in content if m.startswith(_JSON + ";")]:
                    content.setdefault(_JSON, content.pop(media))
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
