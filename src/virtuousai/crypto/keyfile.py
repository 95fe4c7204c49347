"""The local master key file: 32 random bytes, base64, created with mode 0600.

The server refuses to start when the file is readable or writable by group or others: a key anyone on the
machine can read protects nothing.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32


class InsecureKeyFile(RuntimeError):
    pass


def ensure_key_file(path: Path) -> bytes:
    """Read the key at ``path``, creating it (mode 0600) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once cannot both create (and disagree on) the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key_file(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
    return read_key_file(path)


def read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFile(
            f"{path} is accessible by group or others (mode {stat.filemode(mode)}); run: chmod 600 {path}"
        )
    key = base64.b64decode(path.read_text().strip())
    if len(key) != KEY_BYTES:
        raise InsecureKeyFile(f"{path} does not hold a {KEY_BYTES}-byte base64 key")
    return key
