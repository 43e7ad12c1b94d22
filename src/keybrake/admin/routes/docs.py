"""`/docs`: the admin API's docs page (Swagger UI 5), served from the fastapi-offline package — no CDN.

Air-gapped operators get the page from the admin listener itself: the HTML, the Swagger UI
script and stylesheet and the icon (the package's files, byte for byte), and a small start
script. The page and its assets need no admin token, like `/openapi.json` (they describe
routes, never data); calls made from the page's "Try it out" need one ("Authorize"). The admin
listener's loopback default keeps all of it off the network unless the operator moves it.

Swagger UI 5 renders OpenAPI 3.1, so the page shows `/openapi.json` exactly as served.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from keybrake.admin.errors import not_found

router = APIRouter(include_in_schema=False)
# fastapi-offline ships Swagger UI 5 (and redoc) as plain files next to its code.
ASSET_ROOT = Path(str(files("fastapi_offline") / "static"))
# name → media type: the only files served (the package also holds redoc, which the page does not use)
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
# Relative URLs: the page works under any path prefix a reverse proxy adds.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Keybrake admin API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/start.js"></script>
</body>
</html>
"""
# validatorUrl: null — Swagger UI would otherwise offer to send the document to an online validator.
START = """"use strict";
window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null });
"""
_NO_STORE = {"cache-control": "no-store"}


@router.get("/docs")
async def docs_page() -> Response:
    """The docs page."""
    return HTMLResponse(PAGE, headers=_NO_STORE)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> Response:
    """One of ASSETS from the fastapi-offline package, or the start script; 404 for any other name."""
    if name == "start.js":
        return Response(START, media_type="text/javascript; charset=utf-8", headers=_NO_STORE)
    media_type = ASSETS.get(name)
    if media_type is None:
        raise not_found(f"docs asset {name!r}")
    return FileResponse(ASSET_ROOT / name, media_type=media_type)
