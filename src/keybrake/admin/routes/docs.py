"""`/docs`: the admin API's docs page (Swagger UI), served from the swagger-ui-bundle package — no CDN.

Air-gapped operators get the page from the admin listener itself: the HTML, the Swagger UI
script and stylesheet (the package's files), and a small start script. The page and its assets
need no admin token, like `/openapi.json` (they describe routes, never data); calls made from
the page's "Try it out" need one ("Authorize"). The admin listener's loopback default keeps all
of it off the network unless the operator moves it.

Swagger UI 4.15.5 (swagger-ui-bundle 1.1.0) renders OpenAPI 3.0 documents only, and
/openapi.json is 3.1: the start script relabels the copy the page renders as 3.0.3. Nothing
else changes; 3.1-only constructs (`"type": "null"` in an `anyOf`) show as written.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from keybrake.admin.errors import not_found

router = APIRouter(include_in_schema=False)
ASSET_ROOT = Path(swagger_ui_bundle.swagger_ui_path)
# name → media type: the only files served (the package also holds a demo page pointing elsewhere)
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Relative URLs: the page works under any path prefix a reverse proxy adds.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Keybrake admin API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/start.js"></script>
</body>
</html>
"""
START = """"use strict";
// Swagger UI 4 renders OpenAPI 3.0 only: the copy shown here is relabelled; /openapi.json stays 3.1.
fetch("openapi.json")
  .then((answer) => answer.json())
  .then((spec) => {
    spec.openapi = "3.0.3";
    window.ui = SwaggerUIBundle({ spec: spec, dom_id: "#swagger-ui", deepLinking: true });
  });
"""
_NO_STORE = {"cache-control": "no-store"}


@router.get("/docs")
async def docs_page() -> Response:
    """The docs page."""
    return HTMLResponse(PAGE, headers=_NO_STORE)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> Response:
    """One of ASSETS from the swagger-ui-bundle package, or the start script; 404 for any other name."""
    if name == "start.js":
        return Response(START, media_type="text/javascript; charset=utf-8", headers=_NO_STORE)
    media_type = ASSETS.get(name)
    if media_type is None:
        raise not_found(f"docs asset {name!r}")
    return FileResponse(ASSET_ROOT / name, media_type=media_type)
