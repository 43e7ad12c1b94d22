"""What an agent controls (a key's label, its run id, the endpoint it calls) never becomes markup
on a console page: generated strings full of HTML's special characters are shown escaped on every
page that shows them (hypothesis), and a hostile label runs nothing in Chromium."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from tests.console.conftest import Watched, sign_in
from tests.console.test_sessions import signed_in
from tests.harness import KeybrakeThread

# Between two sentinels: the raw value can then only appear on a page if it was not escaped.
HOSTILE = st.text(alphabet="<>&\"'/=ab x", min_size=1, max_size=40).map(lambda s: f"QQ{s}ZZ")


@pytest.fixture(scope="module")
def kbm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path_factory.mktemp("esc") / "data", admin_port=0) as server:
        server.add_credential("http://127.0.0.1:9")  # never called: the pages only show the keys
        yield server


def pages_showing(key: dict[str, Any], run: str) -> list[str]:
    return ["/console/keys", f"/console/keys/{key['id']}", f"/console/runs/{run}", f"/console/audit?key_id={key['id']}"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=HOSTILE, run=HOSTILE)
def test_agent_controlled_text_is_escaped_on_every_page(kbm: KeybrakeThread, label: str, run: str) -> None:
    with kbm.admin() as a:
        made = a.post(
            "/v1/keys", json={"vendor": "stripe", "label": label, "metadata": {"agent_run_id": run}, "policy": {}}
        )
    assert made.status_code == 201, made.text  # labels and metadata are free text: all accepted
    key = made.json()
    with signed_in(kbm) as c:
        for path in pages_showing(key, quote(run, safe="")):
            page = c.get(path)
            assert page.status_code == 200, (path, page.status_code)
            for value in (label, run):
                if any(ch in value for ch in "<>&\"'"):
                    assert value not in page.text, (path, value)
            if path == f"/console/keys/{key['id']}":  # the key's own page shows both, escaped
                assert str(escape(label)) in page.text and str(escape(run)) in page.text, path


def test_a_hostile_label_runs_nothing_in_a_browser(browser: Any, tmp_path: Path) -> None:
    payload = '"><img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
    with KeybrakeThread(tmp_path / "d", admin_port=0) as kb:
        kb.add_credential("http://127.0.0.1:9")
        key = kb.issue({}, label=payload, metadata={"agent_run_id": "run-x"})
        context = browser.new_context()
        w = Watched(context.new_page())
        sign_in(w.page, kb)
        for path in pages_showing(key, "run-x"):
            w.page.goto(f"{kb.admin_url}{path}")
            assert w.page.title() != "pwned", path
            assert w.page.locator("img[src=x]").count() == 0 and w.page.locator("main script").count() == 0, path
        assert html.escape(payload) in w.page.content() or payload not in w.page.content()
        assert w.errors == []
        context.close()
