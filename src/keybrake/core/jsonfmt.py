"""The one JSON encoding Keybrake writes: compact, Decimal-exact (money is never a float)."""

from __future__ import annotations

from typing import Any

import simplejson


def dumps(obj: Any) -> bytes:
    """`obj` as compact JSON bytes; Decimal values are written exactly (simplejson `use_decimal`)."""
    return str(simplejson.dumps(obj, use_decimal=True, separators=(",", ":"))).encode()
