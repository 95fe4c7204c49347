"""``LocalKeyring``: several versioned local KEKs, the provider that makes rotation possible without a KMS.

Layout of ``<data_dir>/keys/`` (directory mode 0700)::

    v1.key       base64 key, mode 0600
    v2.key
    v1.retired   marker: version 1 may no longer unwrap anything

New records are wrapped under the newest version that is not retired. The directory is read on every wrap and
every unwrap (a listing and a ``stat``, cheap), so a ``vai keys rotate`` or ``retire`` run from the CLI takes
effect in running servers at once; key bytes are cached once read.

The first version is seeded from the master key file when one exists, so records written with the default
``LocalKeyFileProvider`` (also version 1) keep decrypting after switching ``VAI_KEY_PROVIDER`` to ``keyring``.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from virtuousai.crypto.kek import KeyUnavailable, KeyVersionInfo, aes_unwrap, aes_wrap
from virtuousai.crypto.keyfile import create_key_file, read_key_file
from virtuousai.timeutil import utcnow

_KEY_FILE = re.compile(r"^v([1-9][0-9]{0,8})\.key$")


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


class LocalKeyring:
    name = "keyring"

    def __init__(self, directory: Path, *, seed_file: Path | None = None) -> None:
        self.directory = directory
        self.seed_file = seed_file
        self._keys: dict[int, bytes] = {}

    def key_path(self, version: int) -> Path:
        return self.directory / f"v{version}.key"

    def retired_marker(self, version: int) -> Path:
        return self.directory / f"v{version}.retired"

    def _scan(self) -> dict[int, KeyVersionInfo]:
        if not self.directory.is_dir():
            return {}
        found: dict[int, KeyVersionInfo] = {}
        for entry in self.directory.iterdir():
            match = _KEY_FILE.match(entry.name)
            if match is None:
                continue
            version = int(match.group(1))
            marker = self.retired_marker(version)
            found[version] = KeyVersionInfo(
                version=version,
                created_at=_mtime(entry),
                retired_at=_mtime(marker) if marker.exists() else None,
            )
        return dict(sorted(found.items()))

    def _ensure_initialised(self) -> None:
        """Create version 1 when the keyring is empty: the master key file's key if there is one, else random."""
        if self._scan():
            return
        seed = read_key_file(self.seed_file) if self.seed_file is not None and self.seed_file.exists() else None
        # FileExistsError: another process initialised it first; same outcome.
        with contextlib.suppress(FileExistsError):
            create_key_file(self.key_path(1), seed)

    def _usable_key(self, version: int) -> bytes:
        self._ensure_initialised()
        if self.retired_marker(version).exists():
            raise KeyUnavailable(f"key version {version} is retired and can no longer decrypt")
        if version not in self._keys:
            path = self.key_path(version)
            if not path.exists():
                raise KeyUnavailable(f"key version {version} is not in the keyring at {self.directory}")
            self._keys[version] = read_key_file(path)
        return self._keys[version]

    async def active_version(self) -> int:
        self._ensure_initialised()
        usable = [info.version for info in self._scan().values() if not info.retired]
        if not usable:
            raise KeyUnavailable("every key version is retired; run `vai keys rotate` to add one")
        return usable[-1]

    async def wrap(self, data_key: bytes, *, version: int, context: bytes) -> bytes:
        return aes_wrap(self._usable_key(version), data_key, context)

    async def unwrap(self, wrapped: bytes, *, version: int, context: bytes) -> bytes:
        return aes_unwrap(self._usable_key(version), wrapped, context)

    async def versions(self) -> list[KeyVersionInfo]:
        return list(self._scan().values())

    async def add_version(self) -> KeyVersionInfo:
        """A new random key, one above the newest (retired versions keep their numbers)."""
        self._ensure_initialised()
        while True:
            version = max(self._scan(), default=0) + 1
            try:
                create_key_file(self.key_path(version))
            except FileExistsError:
                continue  # a concurrent rotate took this number; take the next
            return self._scan()[version]

    async def retire(self, version: int) -> KeyVersionInfo:
        """Mark ``version`` retired (idempotent). Callers check first that no record still needs it."""
        if version not in self._scan():
            raise KeyUnavailable(f"key version {version} is not in the keyring at {self.directory}")
        marker = self.retired_marker(version)
        if not marker.exists():
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(utcnow().isoformat() + "\n")
        self._keys.pop(version, None)
        return self._scan()[version]
