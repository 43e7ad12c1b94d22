"""Reading vendor definition files (docs/vendors.md, vendors defined by a file): the worked
example and each kind of refusal by hand, then generated bad files — every mutation of a valid
definition (an unknown key, a wrong type, a missing required key, an unknown option, an amount
with 7 decimals) is refused with the key path that holds it."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.schema import DefinitionError
from tests.vendors.configured_smsco import smsco_toml
from tests.vendors.configured_toml import dumps
from tests.vendors.one_parse_gen import props

pytestmark = pytest.mark.store_free

VALID: dict[str, Any] = tomllib.loads(smsco_toml())
# The options the worked example does not use, so that generated mutations reach them too.
EXTENDED: dict[str, Any] = {
    **VALID,
    "request": {**VALID["request"], "refuse_headers": ["on-behalf-of"], "trailing_slash": True},
    "forbid": [{"paths": ["headers[*].name"], "values": ["bcc", "resent-*"], "why": "recipients"}],
}


def refused(doc: dict[str, Any] | str) -> DefinitionError:
    text = doc if isinstance(doc, str) else dumps(doc)
    with pytest.raises(DefinitionError) as exc:
        parse_definition(text, "smsco.toml", "smsco")
    assert str(exc.value).startswith("smsco.toml: ")
    return exc.value


def test_the_worked_example_reads_as_documented() -> None:
    d = parse_definition(smsco_toml(), "smsco.toml", "smsco")
    assert (d.name, d.title, d.base_url, d.upstream_hosts) == (
        "smsco",
        "SMSCo",
        "https://api.smsco.example",
        ("api.smsco.example",),
    )
    assert [(e.match.text, e.pricing) for e in d.endpoints] == [
        ("POST /v1/messages", "per_item"),
        ("POST /v1/lookups", "fixed"),
        ("* /v1/keys/**", "free"),
        ("GET /v1/**", "free"),
    ]
    assert d.endpoints[1].usd is not None and d.endpoints[1].usd.micro == 5000
    assert d.settings() == {"KEYBRAKE_SMSCO_USD_PER_SMS": 7900}
    assert d.credential.fields == ("account", "token") and d.credential.inject == "basic"
    assert [s.field for s in d.scopes] == ["allowed_smsco_prefixes", "allowed_smsco_senders"]
    assert parse_definition(dumps(VALID), "x", "smsco") == parse_definition(smsco_toml(), "x", "smsco")


@pytest.mark.parametrize(
    ("change", "where", "what"),
    [
        (lambda d: d.update(nmae="x"), "nmae", "is not a known key"),
        (lambda d: d["credential"].update(inject="cookie"), "credential.inject", "must be one of bearer"),
        (lambda d: d["credential"].update(header="X-Key"), "credential.header", "is required with inject = 'header'"),
        (lambda d: d["credential"].update(password="{tokn}"), "credential.password", "{tokn} is not one of"),
        (lambda d: d["endpoint"][1].update(usd="0.0050001"), "endpoint[1].usd", "more than 6 decimals"),
        (lambda d: d["endpoint"][1].update(usd=0.005), "endpoint[1].usd", "decimal strings"),
        (lambda d: d["endpoint"][1].update(pricing="per_item"), "endpoint[1].items", "is required with pricing"),
        (lambda d: d["endpoint"][3].update(usd="1"), "endpoint[3].usd", "is not used with pricing = 'free'"),
        (lambda d: d["endpoint"][0].update(match="POST v1/messages"), "endpoint[0].match", "must start with '/'"),
        (lambda d: d["endpoint"][0]["items"].update(paths=["to..x"]), "endpoint[0].items.paths[0]", "is empty"),
        (lambda d: d["endpoint"][2].update(match="POST /v1/messages"), "endpoint[2].match", "is also endpoint[0]"),
        (lambda d: d["scope"][0].update(field="daily_usd_cap"), "scope[0].field", "Keybrake's own policy fields"),
        (lambda d: d["scope"][0].update(match="regex"), "scope[0].match", "must be one of exact"),
        (lambda d: d.update(base_url="http://api.smsco.example"), "base_url", "https://"),
        (lambda d: d.update(base_url="https://evil.example"), "base_url", "is not one of upstream_hosts"),
        (lambda d: d.update(name="v1"), "name", "Keybrake's own path prefixes"),
        (lambda d: d.update(name="other"), "name", "must equal the file name"),
        (lambda d: d.update(format=2), "format", "reads format 1"),
        (lambda d: d["error"].update(body={"error": "{message}"}), "error.body", "must carry {code} and {message}"),
        (lambda d: d["request"].update(forward_headers=["Authorization"]), "request.forward_headers[0]", "sets"),
        (lambda d: d["request"].update(bodies=["xml"]), "request.bodies[0]", "must be one of json, form"),
        (lambda d: d["vault_key"].update(arrives="header"), "vault_key.header", "is required with arrives"),
        (lambda d: d.pop("credential"), "credential", "is required"),
    ],
)
def test_each_refusal_names_the_key_and_what_is_wrong(change: Any, where: str, what: str) -> None:
    doc = copy.deepcopy(VALID)
    change(doc)
    err = refused(doc)
    assert err.where == where, err
    assert what in err.what, err


def test_toml_syntax_errors_carry_the_line() -> None:
    err = refused(smsco_toml().replace('title = "SMSCo"', "title SMSCo"))
    assert err.where == "" and "not valid TOML" in err.what and "line 3" in err.what


# --- generated bad files ---------------------------------------------------------------------


def _places(node: Any, where: str) -> list[tuple[str, Any, Any]]:
    """(key path, container, key) of every value in a definition, depth first."""
    out: list[tuple[str, Any, Any]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{where}.{k}" if where else k
            out.append((here, node, k))
            if k != "body":  # the error body is free-form: any value is a body
                out += _places(v, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, dict):
                out += _places(v, f"{where}[{i}]")
    return out


# Inside a tool's input schema JSON Schema's own rules apply (an unknown keyword is an annotation,
# `required = []` is valid): its table and the tool's keys are mutated, not what the schema holds.
PLACES = [p[0] for p in _places(EXTENDED, "") if ".input_schema." not in p[0]]


def _at(doc: Any, where: str) -> Any:
    for path, container, k in _places(doc, ""):
        if path == where:
            return container, k
    raise KeyError(where)


_WRONG = [[], {"x": 1}, -3, True, "", ["a", "a"]]


@st.composite
def bad_definition(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    doc = copy.deepcopy(EXTENDED)
    kind = draw(st.sampled_from(["unknown", "wrong_type", "missing"]))
    if kind == "unknown":
        tables = [w for w in ["", *PLACES] if isinstance((_at(doc, w)[0][_at(doc, w)[1]] if w else doc), dict)]
        tables = [w for w in tables if not w.endswith("body") and ".body." not in w]
        where = draw(st.sampled_from(tables))
        table = _at(doc, where)[0][_at(doc, where)[1]] if where else doc
        table["colour"] = "blue"
        return doc, f"{where}.colour" if where else "colour"
    if kind == "missing":
        required = ["format", "name", "base_url", "upstream_hosts", "credential", "error", "credential.inject",
                    "endpoint[0].match", "endpoint[2].pricing", "scope[1].paths", "error.body"]  # fmt: skip
        where = draw(st.sampled_from(required))
        container, k = _at(doc, where)
        del container[k]
        return doc, where
    where = draw(st.sampled_from([w for w in PLACES if not w.endswith("body") and ".body." not in w]))
    container, k = _at(doc, where)
    original = container[k]
    wrong = draw(st.sampled_from([w for w in _WRONG if type(w) is not type(original) or w != original]))
    container[k] = wrong
    return doc, where


@props(400)
@given(bad_definition())
def test_a_generated_bad_definition_is_refused_naming_its_key(case: tuple[dict[str, Any], str]) -> None:
    doc, where = case
    try:
        parse_definition(dumps(doc), "smsco.toml", "smsco")
    except DefinitionError as err:
        # The refusal names the changed key, or a key inside it, or the table whose rule it breaks.
        assert err.where and (err.where.startswith(where) or where.startswith(err.where)), (err.where, where, err)
        return
    # Some replacements are still valid values (an empty password, `guarded = true`, no redaction): say which.
    container, k = _at(doc, where)
    still_valid = {
        "password": "",
        "username": "",
        "guarded": True,
        "required": True,
        "redact": [],
        "scope": [],
        "endpoint": [],
        "forbid": [],
        "refuse_headers": [],
        "trailing_slash": True,
    }
    assert k in still_valid and container[k] == still_valid[k], (where, container[k])


@pytest.mark.parametrize(
    ("rename", "where", "hint"),
    [
        (("upstream_hosts", "upstream_host"), "upstream_host", "did you mean 'upstream_hosts'?"),
        (("base_url", "baseurl"), "baseurl", "did you mean 'base_url'?"),
    ],
)
def test_a_misspelt_required_key_is_named_with_the_key_it_resembles(
    rename: tuple[str, str], where: str, hint: str
) -> None:
    doc = copy.deepcopy(VALID)
    doc[rename[1]] = doc.pop(rename[0])
    message = str(refused(doc))
    assert f"{where}: is not a known key here ({hint})" in message, message


def test_a_misspelt_pricing_in_an_endpoint_is_named() -> None:
    doc = copy.deepcopy(VALID)
    doc["endpoint"][0]["priceing"] = doc["endpoint"][0].pop("pricing")
    assert "endpoint[0].priceing: is not a known key here (did you mean 'pricing'?)" in str(refused(doc))
