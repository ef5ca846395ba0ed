"""What /openapi.json (and /docs) says beyond what the routes declare: the bearer scheme when
keys are checked, and the parameters whose default and maximum the settings decide.

The routers are built once, at import, so a parameter bounded by a setting (`k` <= --max-k,
defaulting to --default-k) is declared `T | None = None` and checked by its route; here it is
documented as the plain `T` with the settings' default and maximum, as a route declaring them
itself would be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from imagesim.web.settings import WebSettings

Schema = dict[str, Any]


def pin(schema: Schema, default: Any, maximum: float | None = None) -> None:
    """Document a `T | None = None` parameter as `T` with this default (and maximum)."""
    options = schema.pop("anyOf", None)
    if options:
        schema.update(next(o for o in options if o.get("type") != "null"))
    schema["default"] = default
    if maximum is not None:
        schema["maximum"] = maximum


def query_schema(schema: Schema, path: str, name: str) -> Schema:
    operation = schema["paths"][path]["get"]
    found: Schema = next(p["schema"] for p in operation["parameters"] if p["name"] == name)
    return found


def document_settings(schema: Schema, settings: WebSettings) -> None:
    pin(query_schema(schema, "/api/similar", "k"), settings.default_k, settings.max_k)
    form = schema["components"]["schemas"]["Body_search_api_search_post"]["properties"]
    pin(form["k"], settings.default_k, float(settings.max_k))
    duplicates_distance = query_schema(schema, "/api/duplicates", "max_distance")
    pin(duplicates_distance, settings.duplicates_distance)
    pin(query_schema(schema, "/api/duplicates", "wait"), settings.duplicates_wait)


def document_bearer(schema: Schema, open_paths: set[str]) -> None:
    """Every operation but `open_paths` needs `Authorization: Bearer KEY` (Swagger UI then
    offers "Authorize"; signed in, its calls carry the cookie anyway)."""
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"}
    }
    schema["security"] = [{"bearer": []}]
    for path in open_paths & set(schema["paths"]):
        for operation in schema["paths"][path].values():
            operation["security"] = []


def customize_openapi(app: FastAPI, settings: WebSettings, keys_checked: bool) -> None:
    """app.openapi(): FastAPI's schema (made once, then cached), completed as above (both
    steps may run again on the cached schema)."""
    plain: Callable[[], Schema] = app.openapi

    def openapi() -> Schema:
        schema = plain()
        document_settings(schema, settings)
        if keys_checked:
            document_bearer(schema, {"/healthz", "/readyz"})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
