"""The web UI: static pages (hand-written HTML, CSS and JavaScript shipped in the package).

The pages hold no data: every number they show comes from the REST API, called by the
page with the caller's token in a header, so the UI can do nothing the API would not let
the same user do. Routing is in the page (``#/dags/...``), so ``/`` is the only HTML
document; no Node build step, no front-end library.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_FOLDER = Path(__file__).resolve().parent / "static"
#: The UI's files are small and change with the package: always revalidate.
NO_CACHE = {"Cache-Control": "no-cache"}


def install_ui(app: FastAPI) -> None:
    """Serve ``/`` (the page) and ``/static/*`` (its script and style)."""
    app.mount("/static", StaticFiles(directory=STATIC_FOLDER), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_FOLDER / "index.html", media_type="text/html", headers=NO_CACHE)

    @app.get("/ui", include_in_schema=False)
    def ui() -> RedirectResponse:
        return RedirectResponse("/")
