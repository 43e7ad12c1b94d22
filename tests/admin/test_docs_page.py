"""/docs: Swagger UI from the swagger-ui-bundle package on the admin listener — no CDN, no token needed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
import swagger_ui_bundle

from tests.harness import KeybrakeThread

ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture
def kb_admin(tmp_path: Path) -> Iterator[KeybrakeThread]:
    """A Keybrake with its admin API on a listener of its own."""
    with KeybrakeThread(tmp_path / "data", admin_port=0) as server:
        yield server


def test_the_docs_page_loads_only_local_assets(kb_admin: KeybrakeThread) -> None:
    page = httpx.get(f"{kb_admin.admin_url}/docs")  # no Authorization: describes routes, never data
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert len(urls) == 4, urls  # stylesheet, icon, Swagger UI, start script
    assert "//" not in page.text.replace("<!DOCTYPE html>", "")  # no scheme, no host: nothing from elsewhere
    for url in urls:
        absolute = urljoin(f"{kb_admin.admin_url}/docs", url)
        assert urlsplit(absolute).netloc == urlsplit(kb_admin.admin_url).netloc, url
        asset = httpx.get(absolute)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(ASSET_TYPES[Path(url).suffix]), (url, asset.headers)
        if not url.endswith("start.js"):  # the package's own file, byte for byte
            assert asset.content == (Path(swagger_ui_bundle.swagger_ui_path) / Path(url).name).read_bytes()
    start = httpx.get(f"{kb_admin.admin_url}/docs/assets/start.js").text
    assert 'fetch("openapi.json")' in start and "SwaggerUIBundle(" in start and "http" not in start
    assert httpx.get(urljoin(f"{kb_admin.admin_url}/docs", "openapi.json")).json()["openapi"].startswith("3.1")


def test_only_the_listed_assets_are_served(kb_admin: KeybrakeThread) -> None:
    for name in ("index.html", "swagger-initializer.js", "..%2F..%2Fswagger_ui_bundle%2F__init__.py", "nope.js"):
        r = httpx.get(f"{kb_admin.admin_url}/docs/assets/{name}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", name


def test_the_proxy_listener_serves_no_docs(kb_admin: KeybrakeThread) -> None:
    for path in ("/docs", "/docs/assets/swagger-ui.css", "/openapi.json"):
        r = httpx.get(f"{kb_admin.url}{path}")
        assert r.status_code == 404, path
