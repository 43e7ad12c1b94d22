"""Secrets at rest: AES-256-GCM under the master key, with the purpose bound as associated data."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class MasterKeyError(Exception):
    """The master key is missing, malformed, or cannot decrypt this store."""


class Sealer:
    """Encrypts and decrypts small secrets; `purpose` ties a ciphertext to where it is stored."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise MasterKeyError("the master key must be 32 bytes (base64-encoded in its file)")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        nonce = os.urandom(12)
        return b"\x01" + nonce + self._aead.encrypt(nonce, plaintext, purpose.encode())

    def open(self, blob: bytes, purpose: str) -> bytes:
        if not blob or blob[:1] != b"\x01":
            raise MasterKeyError("unknown ciphertext format")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], purpose.encode())
        except InvalidTag as exc:
            raise MasterKeyError("this master key cannot decrypt the store") from exc


def load_or_create_master_key(env_value: str | None, path: Path, *, create: bool) -> bytes:
    """`KEYBRAKE_MASTER_KEY` (base64) wins; else the key file, created 0600 on first start."""
    if env_value:
        return master_key_bytes(env_value, "KEYBRAKE_MASTER_KEY")
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise MasterKeyError(
                f"master key file {path} has mode {oct(mode)}; it must be readable by its owner only (chmod 600 {path})"
            )
        return master_key_bytes(path.read_text().strip(), str(path))
    if not create:
        raise MasterKeyError(f"master key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(key).decode() + "\n")
    return key


def master_key_bytes(text: str, where: str) -> bytes:
    """The 32 key bytes of base64 `text` (`where` names its source in the error). Raises MasterKeyError."""
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise MasterKeyError(f"{where} is not valid base64") from exc
    if len(key) != 32:
        raise MasterKeyError(f"{where} must hold 32 bytes of base64-encoded key material")
    return key


def write_secret_file(path: Path, text: str) -> None:
    """Write `text` to `path` as a new regular file of mode 0600 (whatever the umask), put in place
    atomically: whatever was at `path` (a file of a wider mode, a symbolic link) is replaced, never
    written through or followed. Raises OSError (the temporary file is removed)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
