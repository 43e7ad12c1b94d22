"""Checking real admin answers against /openapi.json: the JSON schema an operation declares for a status."""

from __future__ import annotations

import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator


class Spec:
    """An OpenAPI document that can tell whether an answer is one its operation declares."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.checked: set[tuple[str, str, str]] = set()  # (method, path template, status) seen
        self._paths: list[tuple[re.Pattern[str], str]] = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"), template) for template in doc["paths"]
        ]

    def template(self, path: str) -> str:
        """The path template an actual path matches (a literal path before a templated one)."""
        matches = [t for rx, t in self._paths if rx.match(path)]
        assert matches, f"{path} is not in /openapi.json"
        return min(matches, key=lambda t: t.count("{"))

    def check(self, r: httpx.Response) -> httpx.Response:
        """Assert `r` (a JSON answer) matches the schema its operation declares for its status."""
        method, template = r.request.method.lower(), self.template(r.request.url.path)
        op = self.doc["paths"][template].get(method)
        assert op is not None, f"{method} {template} is not declared"
        answer = op["responses"].get(str(r.status_code))
        assert answer is not None, f"{method} {template} does not declare {r.status_code}: {r.text[:300]}"
        schema = answer["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": self.doc["components"]})
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(r.json())]
        assert not problems, f"{method} {template} {r.status_code}: {problems[:5]}"
        self.checked.add((method, template, str(r.status_code)))
        return r
