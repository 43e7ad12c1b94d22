"""Bearer tokens: `vault_key_` / `kb_admin_` + 43 base62 random chars + 6 base62 checksum chars.

The checksum lets secret scanners recognise a token and lets Keybrake reject garbage before any
store lookup. Only an HMAC-SHA256 of a token under the store's pepper is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VAULT_PREFIX = "vault_key_"
ADMIN_PREFIX = "kb_admin_"
_RANDOM_LEN = 43  # 43 × log2(62) ≈ 256 bits
_CHECK_LEN = 6
_BASE62_BODY = re.compile(f"[0-9A-Za-z]{{{_RANDOM_LEN + _CHECK_LEN}}}")


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(reversed(out))


def _checksum(prefix: str, body: str) -> str:
    return _b62(zlib.crc32((prefix + body).encode()), _CHECK_LEN)


def new_token(prefix: str) -> str:
    body = "".join(secrets.choice(BASE62) for _ in range(_RANDOM_LEN))
    return prefix + body + _checksum(prefix, body)


def is_well_formed(token: str, prefix: str) -> bool:
    """Format and checksum only: tells a mistyped or invented token from a possible real one."""
    if not token.startswith(prefix) or len(token) != len(prefix) + _RANDOM_LEN + _CHECK_LEN:
        return False
    rest = token[len(prefix) :]
    if _BASE62_BODY.fullmatch(rest) is None:
        return False
    body, check = rest[:_RANDOM_LEN], rest[_RANDOM_LEN:]
    return hmac.compare_digest(check, _checksum(prefix, body))


def token_hash(pepper: bytes, token: str) -> str:
    return hmac.new(pepper, token.encode(), hashlib.sha256).hexdigest()


def new_id(prefix: str) -> str:
    """Public ids such as `vk_…`, `adm_…`: 22 base62 chars, not secret."""
    return prefix + "".join(secrets.choice(BASE62) for _ in range(22))
