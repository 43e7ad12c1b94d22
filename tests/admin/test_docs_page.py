"""/docs: Swagger UI 5 from the fastapi-offline package on the admin listener — no CDN, no token needed."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.harness import KeybrakeThread

ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
PACKAGE_STATIC = Path(str(files("fastapi_offline") / "static"))
CHROMIUM = shutil.which("chromium")


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
            assert asset.content == (PACKAGE_STATIC / Path(url).name).read_bytes()
    start = httpx.get(f"{kb_admin.admin_url}/docs/assets/start.js").text
    assert 'url: "openapi.json"' in start and "SwaggerUIBundle(" in start and "http" not in start
    assert "3.0" not in start  # no relabelling: the page renders the 3.1 document as served
    doc = httpx.get(urljoin(f"{kb_admin.admin_url}/docs", "openapi.json"), timeout=60).json()
    assert doc["openapi"].startswith("3.1")


def test_only_the_listed_assets_are_served(kb_admin: KeybrakeThread) -> None:
    assert (PACKAGE_STATIC / "redoc.standalone.js").is_file()  # in the package, yet not served
    for name in ("index.html", "redoc.standalone.js", "..%2Fcore.py", "..%2F..%2Ffastapi_offline%2Fcore.py", "nope.js"):
        r = httpx.get(f"{kb_admin.admin_url}/docs/assets/{name}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", name


def test_the_proxy_listener_serves_no_docs(kb_admin: KeybrakeThread) -> None:
    for path in ("/docs", "/docs/assets/swagger-ui.css", "/openapi.json"):
        r = httpx.get(f"{kb_admin.url}{path}")
        assert r.status_code == 404, path


# The page involves no store: one pass (embedded SQLite) is enough.
@pytest.mark.sqlite_only
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="no chromium on PATH (scripts/test installs it; or: apt-get install --no-install-recommends chromium)",
)
def test_the_docs_page_renders_the_admin_api_in_a_browser(kb_admin: KeybrakeThread) -> None:
    """Headless Chromium (Debian's, through Playwright) opens /docs: every operation of /openapi.json
    renders as OpenAPI 3.1, every request stays on the admin listener, and the console shows no error."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "CI needs chromium: apt-get install --no-install-recommends chromium"
    spec = httpx.get(f"{kb_admin.admin_url}/openapi.json", timeout=60).json()
    issue = spec["paths"]["/v1/keys"]["post"]
    n_operations = sum(len(item) for item in spec["paths"].values())
    requested: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
            page.goto(f"{kb_admin.admin_url}/docs")
            # Deep-linking ids: operations-<tag>-<operationId>
            issue_block = page.locator(f"#operations-{issue['tags'][0]}-{issue['operationId']}")
            try:
                issue_block.wait_for(timeout=10_000)
            except PlaywrightTimeout:
                pytest.fail(f"POST /v1/keys never rendered; console: {errors}")
            assert issue_block.locator(".opblock-summary-path").get_attribute("data-path") == "/v1/keys"
            assert issue_block.locator(".opblock-summary-method").inner_text() == "POST"
            assert issue_block.locator(".opblock-summary-description").inner_text() == issue["summary"]
            assert page.locator(".opblock").count() == n_operations
            assert "OAS 3.1" in page.locator(".info .version-stamp").inner_text()
            assert page.title() == "Keybrake admin API"
        finally:
            browser.close()
    admin = urlsplit(kb_admin.admin_url)
    assert requested and {(urlsplit(url).scheme, urlsplit(url).netloc) for url in requested} == {
        ("http", admin.netloc)
    }, requested
    assert admin.hostname == "127.0.0.1"
    assert errors == []
