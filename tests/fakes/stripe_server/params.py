"""The fake Stripe's vocabulary: ids, errors, form parameters read Stripe's way, test-mode
magic values and the JSON it answers with."""

from __future__ import annotations

import json
import re
import secrets
import string
from typing import Any

DEFAULT_SECRET = "sk_test_fake_secret_1234567890"

_ALNUM = string.ascii_letters + string.digits
_DOCS = "https://stripe.com/docs/error-codes/"

Params = dict[str, list[str]]

Answer = tuple[int, dict[str, Any]]


def _rand(n: int = 14) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def new_id(prefix: str) -> str:
    """A Stripe-looking object id: ``prefix`` + 14 random letters and digits."""
    return f"{prefix}_{_rand()}"


class StripeError(Exception):
    """Raised by handlers; becomes ``{"error": {...}}`` with ``status``.

    ``cache=False`` marks request-validation errors, whose results Stripe does not keep under the
    idempotency key (the endpoint never started executing).
    """

    def __init__(self, status: int, error: dict[str, Any], *, cache: bool = True) -> None:
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error
        self.cache = cache


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    err: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        err["code"] = code
        err["doc_url"] = _DOCS + code.replace("_", "-")
    if param:
        err["param"] = param
    # validation errors are not kept under the idempotency key; business errors are
    return StripeError(400, err, cache=code is not None and not code.startswith("parameter_"))


def _missing_param(param: str) -> StripeError:
    return _invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def _no_such(kind: str, object_id: str, param: str) -> StripeError:
    code = "resource_missing"
    return StripeError(
        404,
        {
            "type": "invalid_request_error",
            "code": code,
            "doc_url": _DOCS + "resource-missing",
            "param": param,
            "message": f"No such {kind}: '{object_id}'",
        },
    )


def mask_key(key: str) -> str:
    """Mask an API key the way Stripe does in error messages: prefix, asterisks, last four."""
    prefix = ""
    for p in ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_"):
        if key.startswith(p):
            prefix = p
            break
    rest = key[len(prefix) :]
    if len(rest) <= 4:
        return prefix + "*" * len(rest)
    return prefix + "*" * (len(rest) - 4) + rest[-4:]


# --- form parameters (Stripe bracket syntax) -------------------------------------------------


def _one(p: Params, name: str) -> str | None:
    values = p.get(name)
    return values[-1] if values else None


def _str(p: Params, name: str, *, required: bool = False) -> str | None:
    value = _one(p, name)
    if value is None or value == "":
        if required:
            raise _missing_param(name)
        return None
    return value


def _int(p: Params, name: str, *, required: bool = False) -> int | None:
    value = _str(p, name, required=required)
    if value is None:
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise _invalid(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
    return int(value)


def _bool(p: Params, name: str, default: bool) -> bool:
    value = _str(p, name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise _invalid(f"Invalid boolean: {value}", param=name)
    return value == "true"


def _hash(p: Params, name: str) -> dict[str, str]:
    """``name[key]=value`` pairs as a dict (``metadata[order]=42`` -> ``{"order": "42"}``)."""
    out: dict[str, str] = {}
    for key, values in p.items():
        m = re.fullmatch(re.escape(name) + r"\[([^\[\]]+)\]", key)
        if m:
            out[m.group(1)] = values[-1]
    return out


def _array(p: Params, name: str) -> list[str]:
    """``name[]=a&name[]=b`` or ``name[0]=a&name[1]=b`` as a list."""
    if f"{name}[]" in p:
        return list(p[f"{name}[]"])
    indexed = []
    for key, values in p.items():
        m = re.fullmatch(re.escape(name) + r"\[(\d+)\]", key)
        if m:
            indexed.append((int(m.group(1)), values[-1]))
    return [v for _, v in sorted(indexed)]


def _metadata(p: Params, current: dict[str, str] | None = None) -> dict[str, str]:
    md = dict(current or {})
    if _one(p, "metadata") == "":  # metadata= unsets everything
        md = {}
    for k, v in _hash(p, "metadata").items():
        if v == "":
            md.pop(k, None)
        else:
            md[k] = v
    return md


def _currency(p: Params) -> str:
    value = _str(p, "currency", required=True)
    assert value is not None
    return value.lower()


def _amount(p: Params, name: str = "amount", *, required: bool = True) -> int | None:
    value = _int(p, name, required=required)
    if value is not None and value < 1:
        raise _invalid("This value must be greater than or equal to 1.", param=name, code="parameter_invalid_integer")
    return value


# --- test-mode magic values ------------------------------------------------------------------

_DECLINES = {
    "chargeDeclined": ("generic_decline", "Your card was declined."),
    "chargeDeclinedInsufficientFunds": ("insufficient_funds", "Your card has insufficient funds."),
}


def _decline_for(instrument: str | None) -> tuple[str, str] | None:
    if not instrument:
        return None
    for prefix in ("tok_", "pm_card_"):
        if instrument.startswith(prefix):
            return _DECLINES.get(instrument[len(prefix) :])
    return None


def _needs_authentication(payment_method: str | None) -> bool:
    return payment_method in ("pm_card_authenticationRequired", "pm_card_threeDSecure2Required")


def _card_error(decline: tuple[str, str], **extra: Any) -> dict[str, Any]:
    decline_code, message = decline
    return {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": decline_code,
        "doc_url": _DOCS + "card-declined",
        "message": message,
        **extra,
    }


def _list(url: str, data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy without the fake's bookkeeping keys (those starting with ``_``)."""
    copy: dict[str, Any] = json.loads(json.dumps({k: v for k, v in obj.items() if not k.startswith("_")}))
    return copy


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()
