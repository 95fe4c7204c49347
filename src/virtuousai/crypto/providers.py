"""Key-encryption-key (KEK) providers: what wraps and unwraps the per-record data keys.

A provider holds one or more numbered KEK versions and never hands a KEK out; it only wraps a data key under a
version and unwraps it again. ``context`` is authenticated (not encrypted) with the wrap, so a wrapped key only
unwraps for the record it was made for. An external KMS or Vault transit engine implements the same protocol
(``encrypt``/``decrypt`` with an encryption context).

- ``LocalKeyFileProvider`` (default): one key in ``<data_dir>/master.key`` (mode 0600), version 1.
- ``EnvKeyProvider``: one key from ``VAI_MASTER_KEY`` (base64), version 1.
- ``LocalKeyring`` (``crypto/keyring.py``): several versioned local keys; rotation and retirement.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from virtuousai.config import Settings
from virtuousai.crypto.kek import KeyProvider, KeyUnavailable, aes_unwrap, aes_wrap
from virtuousai.crypto.keyfile import KEY_BYTES, ensure_key_file
from virtuousai.crypto.keyring import LocalKeyring


class _SingleKeyProvider:
    """One KEK, version 1. Subclasses say where the key comes from."""

    name = "single"
    VERSION = 1

    def _key(self) -> bytes:
        raise NotImplementedError

    def _check_version(self, version: int) -> None:
        if version != self.VERSION:
            raise KeyUnavailable(
                f"key version {version} is not held by the {self.name} provider (it holds version {self.VERSION})"
            )

    async def active_version(self) -> int:
        self._key()  # fail early (and clearly) when the key cannot be read
        return self.VERSION

    async def wrap(self, data_key: bytes, *, version: int, context: bytes) -> bytes:
        self._check_version(version)
        return aes_wrap(self._key(), data_key, context)

    async def unwrap(self, wrapped: bytes, *, version: int, context: bytes) -> bytes:
        self._check_version(version)
        return aes_unwrap(self._key(), wrapped, context)


class LocalKeyFileProvider(_SingleKeyProvider):
    """The default: ``<data_dir>/master.key``, created with mode 0600 on first use."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: bytes | None = None

    def _key(self) -> bytes:
        if self._cached is None:
            self._cached = ensure_key_file(self.path)
        return self._cached


class EnvKeyProvider(_SingleKeyProvider):
    """``VAI_MASTER_KEY``: a base64 32-byte key, for containers whose secret store injects the environment."""

    name = "env"

    def __init__(self, encoded: str) -> None:
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            # Never echo the value: it is the key (or a typo of it).
            raise KeyUnavailable(f"VAI_MASTER_KEY must be {KEY_BYTES} bytes, base64-encoded")
        self._value = key

    def _key(self) -> bytes:
        return self._value


def build_key_provider(settings: Settings) -> KeyProvider:
    """The provider the settings choose (``VAI_KEY_PROVIDER``; see ``Settings.key_provider``)."""
    kind = settings.resolved_key_provider
    if kind == "env":
        if not settings.master_key:
            raise KeyUnavailable("VAI_KEY_PROVIDER=env needs VAI_MASTER_KEY")
        return EnvKeyProvider(settings.master_key)
    if kind == "keyring":
        return LocalKeyring(settings.keys_dir, seed_file=settings.resolved_master_key_file)
    return LocalKeyFileProvider(settings.resolved_master_key_file)
