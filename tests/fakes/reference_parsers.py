"""Reference parsers: how each vendor reads a request's parameters, for fakes and differential tests.

- Stripe: Rack-style nested form parsing (`Rack::QueryParser#parse_nested_query`, rack 3.x,
  `lib/rack/query_parser.rb`): pairs split on `&` followed by any spaces, `+` and `%XX` decoded
  (a malformed escape is a 400), a plain key assigns (the last wins, and it overwrites an array
  or hash built so far), `x[]` appends, `x[a]` nests, `x[][a]` builds hashes inside an array;
  a type conflict (`x=1&x[]=2`, `x[]=1&x[a]=2`) raises, which Rack apps answer with 400. The
  query string and the body are merged shallowly, the body winning (`Rack::Request#params` is
  `GET.merge(POST)`).
- Twilio: a plain form (`parse_qsl`): names are literal (no bracket syntax) and case-sensitive;
  a repeated scalar yields its first value (the fake Twilio's documented choice), a repeatable
  list name (`MediaUrl`) all of them.
- Resend and other JSON vendors: `json.loads` defaults, as Node's `JSON.parse`: keys are
  case-sensitive and the last of a duplicated key wins.

`rack_flat` turns a Rack tree back into `{dotted name: [leaf values]}` with indices dropped,
the same naming Keybrake's `Params` uses, so the two can be compared name by name.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

DEPTH_LIMIT = 32  # Rack::Utils.default_query_parser = QueryParser.make_default(32)
_SEP = re.compile(r"& *")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"^[0-9]+$")


class RackError(Exception):
    """Rack raised (ParameterTypeError, InvalidParameterError, ParamsTooDeepError): a 400."""


class RackHash(dict[str, Any]):
    """A hash Rack built (`QueryParser::Params`), told apart from values and arrays."""


def _unescape(text: str) -> str:
    """`URI.decode_www_form_component`: `+` → space, `%XX` → byte; a stray `%` raises."""
    if _BAD_ESCAPE.search(text):
        raise RackError(f"invalid %-encoding ({text})")
    raw = unquote_to_bytes(text.replace("+", " "))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # Rack keeps such strings; Stripe cannot act on them
        raise RackError("invalid byte sequence in UTF-8") from exc


def rack_pairs(text: str) -> list[tuple[str, str | None]]:
    """Rack's `each_query_pair`: a piece without `=` has the value nil (None)."""
    out: list[tuple[str, str | None]] = []
    for piece in _SEP.split(text):
        if not piece:
            continue
        key, sep, value = piece.partition("=")
        out.append((_unescape(key), _unescape(value) if sep else None))
    return out


def rack_parse(text: str) -> RackHash:
    """`parse_nested_query(text)`; raises RackError where Rack raises."""
    params = RackHash()
    for key, value in rack_pairs(text):
        _normalize(params, key, value, 0)
    return params


def _hash_has_key(h: Any, key: str) -> bool:
    if "[]" in key:
        return False
    for part in re.split(r"[\[\]]+", key):
        if part == "":
            continue
        if not isinstance(h, RackHash) or part not in h:
            return False
        h = h[part]
    return True


def _normalize(params: RackHash, name: str, v: str | None, depth: int) -> Any:
    """A line-by-line port of `QueryParser#_normalize_params` (rack 3.x)."""
    if depth >= DEPTH_LIMIT:
        raise RackError("params too deep")
    if depth == 0:
        start = name.find("[", 1)
        k, after = (name[:start], name[start:]) if start != -1 else (name, "")
    elif name.startswith("[]"):
        k, after = "[]", name[2:]
    elif name.startswith("[") and name.find("]", 1) != -1:
        start = name.find("]", 1)
        k, after = name[1:start], name[start + 1 :]
    else:
        k, after = name, ""
    if k == "":
        return None
    if after == "":
        if k == "[]" and depth != 0:
            return [v]
        params[k] = v
    elif after == "[":
        params[name] = v
    elif after == "[]":
        if params.get(k) is None:
            params[k] = []
        if not isinstance(params[k], list):
            raise RackError(f"expected Array (got {type(params[k]).__name__}) for param `{k}'")
        params[k].append(v)
    elif after.startswith("[]"):
        child: str | None = None
        if after[2] == "[" and after.endswith("]"):
            inner = after[3:-1]
            if inner and "[" not in inner and "]" not in inner:
                child = inner
        if child is None:
            child = after[2:]
        if params.get(k) is None:
            params[k] = []
        arr = params[k]
        if not isinstance(arr, list):
            raise RackError(f"expected Array (got {type(arr).__name__}) for param `{k}'")
        last = arr[-1] if arr else None
        if isinstance(last, RackHash) and not _hash_has_key(last, child):
            _normalize(last, child, v, depth + 1)
        else:
            arr.append(_normalize(RackHash(), child, v, depth + 1))
    else:
        if params.get(k) is None:
            params[k] = RackHash()
        if not isinstance(params[k], RackHash):
            raise RackError(f"expected Hash (got {type(params[k]).__name__}) for param `{k}'")
        params[k] = _normalize(params[k], after, v, depth + 1)
    return params


def stripe_params(query: str, body: str) -> RackHash:
    """What Stripe acts on: the query and the body, each Rack-parsed, merged with the body winning."""
    merged = RackHash(rack_parse(query))
    merged.update(rack_parse(body))
    return merged


def rack_flat(tree: Any) -> dict[str, list[str | None]]:
    """`{dotted name: leaves}`: hash keys joined with '.', numeric keys and array positions dropped."""
    out: dict[str, list[str | None]] = {}

    def walk(path: tuple[str, ...], node: Any) -> None:
        if isinstance(node, dict):
            for k, sub in node.items():
                walk(path if _DIGITS.match(k) else (*path, k), sub)
        elif isinstance(node, list):
            for sub in node:
                walk(path, sub)
        elif path:
            out.setdefault(".".join(path), []).append(node)

    walk((), tree)
    return out


def rack_at(tree: Any, path: list[str]) -> Any:
    """The node at a path of hash keys, or None."""
    node = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def to_form_params(tree: Any) -> dict[str, list[str]]:
    """A Rack tree as `{raw key: [values]}` with one canonical key per leaf (`x[]` for arrays of
    values, `x[i][k]` for arrays of hashes): the shape the fake Stripe's handlers read."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, sub in node.items():
                walk(f"{prefix}[{k}]" if prefix else k, sub)
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                if isinstance(sub, dict | list):
                    walk(f"{prefix}[{i}]", sub)
                else:
                    out.setdefault(f"{prefix}[]", []).append("" if sub is None else sub)
        else:
            out.setdefault(prefix, []).append("" if node is None else node)

    walk("", tree)
    return out


def twilio_params(query: str, body: str) -> dict[str, list[str]]:
    """Literal names → every value, query first (Twilio acts on the first of a scalar)."""
    out: dict[str, list[str]] = {}
    for text in (query, body):
        for k, v in parse_qsl(text, keep_blank_values=True):
            out.setdefault(k, []).append(v)
    return out


def json_params(body: bytes) -> Any:
    """`JSON.parse`: the last of a duplicated key wins; keys are case-sensitive."""
    return json.loads(body)
