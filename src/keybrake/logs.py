"""JSON-lines logging with a last-line secret filter on every record (docs/operations.md, logs)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

# Anything that could be a credential or a card number is replaced, whatever logged it.
_SECRETS = re.compile(
    r"vault_key_[A-Za-z0-9]+|kb_admin_[A-Za-z0-9]+|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|\bre_[A-Za-z0-9_]{8,}"
    r"|\b[0-9a-f]{32}\b|\b[0-9]{13,19}\b"
)


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, separators=(",", ":")))


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # uvicorn's access log prints query strings, which may carry customer data: never enabled.
    logging.getLogger("uvicorn.access").disabled = True


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})
