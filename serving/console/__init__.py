"""The analyst console: one HTML shell and a few ES modules, served by the
API process under /console from this package's static folder (no build
step, nothing fetched from elsewhere). The browser holds the API key in
sessionStorage and sends it as X-API-Key to the same /v1 routes any client
uses, so the console has no access of its own: a key sees in it what its
scopes allow over the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
ASSETS_URL = "/console/assets"
# No inline script or style, nothing from another origin, no framing (a
# cross-site page cannot overlay the verdict buttons), no forms posted away.
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
               "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CONSOLE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Assets(StaticFiles):
    """The console's modules and styles, with the console's headers."""

    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def console_router(app: FastAPI) -> APIRouter:
    """The shell at /console and its assets (mounted on `app`). Neither
    needs a key: they hold no data; every read goes through /v1 with one."""
    app.mount(ASSETS_URL, _Assets(directory=STATIC), name="console-assets")
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    async def shell() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)

    @router.get("/console/")
    async def slash() -> RedirectResponse:
        return RedirectResponse("/console")

    return router
