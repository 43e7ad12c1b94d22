"""The Python examples of docs/client.md run as written against a real Keybrake (with a Stripe
credential named "default" on the fake Stripe): only the address and the admin token change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import ADMIN_TOKEN, KeybrakeThread

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_doc_has_its_examples() -> None:
    assert len(BLOCKS) == 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(
    index: int, kb: KeybrakeThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = BLOCKS[index].replace("http://127.0.0.1:8080", kb.url).replace("kb_admin_…", ADMIN_TOKEN)
    exec(compile(code, f"{DOC.name} example {index + 1}", "exec"), {"__name__": "__doc_example__"})  # noqa: S102
    printed = capsys.readouterr().out
    expected = {
        0: ["['default']", "404 not_found"],
        1: ["20 ['allowed']"],
        2: ["True 0 0"],
        3: ["spend_cap_exceeded daily_usd_cap 10"],
    }[index]
    for text in expected:
        assert text in printed, printed
