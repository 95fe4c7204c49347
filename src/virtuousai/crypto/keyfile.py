"""Local key files: 32 random bytes, base64, created with mode 0600.

The server refuses to start when a key file is readable or writable by group or others: a key anyone on the
machine can read protects nothing.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32


class InsecureKeyFile(RuntimeError):
    pass


def ensure_key_file(path: Path) -> bytes:
    """Read the key at ``path``, creating it (mode 0600) if missing."""
    try:
        return create_key_file(path)
    except FileExistsError:
        return read_key_file(path)


def create_key_file(path: Path, key: bytes | None = None) -> bytes:
    """Write a new key file (a fresh random key unless ``key`` is given); ``FileExistsError`` if it exists.

    O_EXCL: two processes creating the same file at once cannot both succeed (and disagree on the key).
    """
    key = key if key is not None else secrets.token_bytes(KEY_BYTES)
    if len(key) != KEY_BYTES:
        raise ValueError(f"a key is {KEY_BYTES} bytes")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    return key


def read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFile(
            f"{path} is accessible by group or others (mode {stat.filemode(mode)}); run: chmod 600 {path}"
        )
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise InsecureKeyFile(f"{path} does not hold a {KEY_BYTES}-byte base64 key")
    return key
