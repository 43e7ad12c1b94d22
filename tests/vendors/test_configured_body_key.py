"""`[vault_key] body_field` (src/keybrake/vendors/configured/body_key.py): a JSON body member that
may carry the vault key too — checked against the key the headers carry, never forwarded."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.load import spec_of
from keybrake.vendors.configured.schema import DefinitionError
from keybrake.vendors.configured.vendor import ConfiguredVendor
from tests.vendors.configured_toml import dumps

pytestmark = pytest.mark.store_free
KEY = "vault_key_" + "k" * 43
OTHER = "vault_key_" + "o" * 43


def definition(vault_key: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {
        "format": 1,
        "name": "trackco",
        "base_url": "https://api.trackco.example",
        "upstream_hosts": ["api.trackco.example"],
        "credential": {"inject": "basic", "username": "{secret}", "password": ""},
        "vault_key": vault_key,
        "error": {"body": {"code": "{code}", "message": "{message}"}},
        "endpoint": [{"match": "POST /v1/track", "pricing": "fixed", "usd": "0.001", "sends": 1}],
        **over,
    }


def vendor(json_keys: str = "exact", **vault_key: Any) -> ConfiguredVendor:
    doc = definition({"arrives": "basic_user", "body_field": "writeKey", **vault_key}, request={"json_keys": json_keys})
    built = spec_of(parse_definition(dumps(doc), "trackco.toml", "trackco")).build({})
    assert isinstance(built, ConfiguredVendor)
    return built


def basic(user: str, password: str = "") -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def forwarded(v: ConfiguredVendor, doc: Any, *headers: tuple[str, str]) -> Any:
    body = json.dumps(doc).encode()
    req = ProxyRequest("POST", b"/v1/track", b"", (("content-type", "application/json"), *headers), body, "127.0.0.1")
    vreq = v.parse(req, v.canonical("POST", ("v1", "track")))
    return json.loads(v.upstream_body(vreq, body))


def test_the_member_is_removed_when_it_is_the_vault_key_wherever_the_headers_carry_it() -> None:
    v = vendor()
    doc = {"userId": "u1", "event": "A", "properties": {"writeKey": "kept: not top-level"}}
    for headers in ([basic(KEY)], [basic("x", KEY)], [("authorization", f"Bearer {KEY}")], [("x-keybrake-key", KEY)]):
        assert forwarded(v, {**doc, "writeKey": KEY}, *headers) == doc
    assert forwarded(v, doc, basic(KEY)) == doc  # absent: the agent's bytes, untouched


@pytest.mark.parametrize("value", [OTHER, "FakeSegmentWriteKey0123456789abc", "", 7, None, [KEY], {"k": KEY}])
def test_any_other_value_is_refused(value: Any) -> None:
    with pytest.raises(Denial) as exc:
        forwarded(vendor(), {"userId": "u1", "writeKey": value}, basic(KEY))
    assert exc.value.code == "key_ambiguous" and "'writeKey'" in exc.value.message
    assert KEY not in exc.value.message


def test_without_a_vault_key_in_the_headers_the_member_is_refused() -> None:
    with pytest.raises(Denial) as exc:
        forwarded(vendor(), {"userId": "u1", "writeKey": KEY})
    assert exc.value.code == "key_ambiguous"


def test_spellings_follow_json_keys() -> None:
    with pytest.raises(Denial) as exc:  # exact: a case variant is a near miss, refused
        forwarded(vendor(), {"userId": "u1", "WriteKey": KEY}, basic(KEY))
    assert exc.value.code == "body_invalid"
    assert forwarded(vendor("case_insensitive"), {"userId": "u1", "WRITEKEY": KEY}, basic(KEY)) == {"userId": "u1"}
    for name in ("writeKey ", "ｗriteKey"):
        with pytest.raises(Denial) as exc:
            forwarded(vendor("case_insensitive"), {"userId": "u1", name: KEY}, basic(KEY))
        assert exc.value.code == "body_invalid"


@pytest.mark.parametrize(
    ("vault_key", "over", "what"),
    [
        ({"arrives": "basic_user", "body_field": "a.b"}, {}, "JSON member name"),
        ({"arrives": "basic_user", "body_field": " writeKey"}, {}, "JSON member name"),
        ({"arrives": "basic_user", "body_field": ""}, {}, "JSON member name"),
        ({"arrives": "basic_user", "body_field": 3}, {}, "JSON member name"),
        ({"arrives": "basic_user", "body_field": "writeKey"}, {"request": {"bodies": ["form"]}}, "bodies"),
    ],
)
def test_a_bad_body_field_is_refused_naming_it(vault_key: dict[str, Any], over: dict[str, Any], what: str) -> None:
    with pytest.raises(DefinitionError) as exc:
        parse_definition(dumps(definition(vault_key, **over)), "trackco.toml", "trackco")
    assert exc.value.where == "vault_key.body_field" and what in exc.value.what
