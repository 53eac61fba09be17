"""The OpenAPI document and the pages that render it, offline.

- The scoring routes read raw bytes (their request models come from the
  schema of the model served now and change on a hot swap), so the document
  is FastAPI's plus the generated request bodies, rebuilt when the served
  version changes. The feedback routes read bytes too; their bodies (one
  object or a list of 1 to `GENDETECT_MAX_BATCH_SIZE`) are always there.
- Swagger UI and ReDoc are served from the assets that the fastapi-offline
  package ships, not from a CDN: fraud systems often run in closed networks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from serving import examples
from serving.feedback_models import VerdictIn
from serving.model_manager import ModelManager
from serving.responses import LabelIn

ASSETS_URL = "/docs-assets"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"
# ReDoc's bundle loads its footer logo from Redocly's CDN: served with that
# one address pointed at a local image instead.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_JS_URL = "/redoc.standalone.js"
# The pages may load nothing from elsewhere: a closed network stays closed,
# and a CDN address that slips into an asset fails in the browser's console
# (and in tests/integration/serving/test_openapi_examples.py), not silently.
# Swagger UI starts from an inline script; ReDoc runs a worker from a blob.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
            "connect-src 'self'; font-src 'self' data:")


def docs_router(app: FastAPI, dependencies: list[Any]) -> APIRouter:
    """/openapi.json, /docs and /redoc, and the assets they load (mounted on
    `app`); `dependencies` may require the API key (a setting)."""
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS), name="docs-assets")
    router = APIRouter(include_in_schema=False, dependencies=dependencies)

    @router.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} - docs",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url="/openapi.json", title=f"{app.title} - ReDoc",
            redoc_js_url=REDOC_JS_URL,
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    redoc_js = (_ASSETS / "redoc.standalone.js").read_bytes().replace(
        _REDOC_LOGO, f"{ASSETS_URL}/favicon.png".encode())

    @router.get(REDOC_JS_URL)
    async def redoc_bundle() -> Response:
        return Response(redoc_js, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    return router


def build_openapi(app: FastAPI, manager: ModelManager) -> dict[str, Any]:
    """FastAPI's document plus the request schemas of the model now served;
    rebuilt when the served version changes (the schema may have too)."""
    served = manager.current
    key = served.ref.version if served is not None else None
    cached = getattr(app.state, "openapi_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]  # type: ignore[no-any-return]
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    if served is not None:
        add_request_bodies(doc, served.record_model, served.batch_model)
        _set_examples(doc, "/v1/score", examples.record_examples(served.record_model))
        _set_examples(doc, "/v1/score/batch", examples.batch_examples(served.record_model))
    add_feedback_bodies(doc, app.state.settings.max_batch_size)
    _set_examples(doc, "/v1/feedback", examples.VERDICT_EXAMPLES)
    _set_examples(doc, "/v1/labels", examples.LABEL_EXAMPLES)
    _prune_errors(doc)
    app.state.openapi_cache = (key, doc)
    return doc


# Errors only a request with a body can get: 409 (a transaction id scored
# with other content), 413 and 415 (the body's size and media type).
_BODY_ERRORS = {"409": ("/v1/score", "/v1/score/batch"), "413": None, "415": None}


def _prune_errors(doc: dict[str, Any]) -> None:
    """Each operation lists the errors it can answer: none of the body's on a
    GET, and 409 only where a transaction id is scored."""
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.get("responses", {})
            for code, paths in _BODY_ERRORS.items():
                if method == "get" or (paths is not None and path not in paths):
                    responses.pop(code, None)


def _set_examples(doc: dict[str, Any], path: str, named: dict[str, Any] | None) -> None:
    body = doc.get("paths", {}).get(path, {}).get("post", {}).get("requestBody")
    if body is not None and named:
        body["content"]["application/json"]["examples"] = named


def add_request_bodies(
    doc: dict[str, Any], record_model: type[BaseModel], batch_model: type[BaseModel]
) -> dict[str, Any]:
    """Put the generated request models into an OpenAPI document: the score
    routes read raw bytes (see serving.api.routes.score), so FastAPI cannot infer them."""
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    _set_body(doc, "/v1/score", _register(components, record_model))
    _set_body(doc, "/v1/score/batch", _register(components, batch_model))
    return doc


def add_feedback_bodies(doc: dict[str, Any], max_items: int) -> dict[str, Any]:
    """The feedback bodies: one object, or a list of 1 to `max_items` of
    them (serving.feedback refuses an empty or longer list with a 422)."""
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for path, model in (("/v1/labels", LabelIn), ("/v1/feedback", VerdictIn)):
        one = _register(components, model)
        many = {"type": "array", "items": one, "minItems": 1, "maxItems": max_items}
        _set_body(doc, path, {"anyOf": [one, many]})
    return doc


def _register(components: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _set_body(doc: dict[str, Any], path: str, schema: dict[str, Any]) -> None:
    operation = doc.get("paths", {}).get(path, {}).get("post")
    if operation is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
