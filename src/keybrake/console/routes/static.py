"""The console's static files: its stylesheet, icon and the vendored htmx — only those listed."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from keybrake.admin.errors import ApiError

router = APIRouter(include_in_schema=False)
STATIC = Path(str(files("keybrake.console") / "static"))
# path under /console/static/ → media type; nothing else is served
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "vendor/htmx.min.js": "text/javascript; charset=utf-8",
}


@router.get("/console/static/{name:path}")
async def asset(name: str) -> Response:
    """One listed file; 404 for any other name."""
    media = ASSETS.get(name)
    if media is None:
        raise ApiError(404, "not_found", "no such console file")
    return FileResponse(STATIC / name, media_type=media, headers={"cache-control": "public, max-age=3600"})
