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
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from virtuousai.config import Settings
from virtuousai.crypto.keyfile import KEY_BYTES, ensure_key_file

NONCE_BYTES = 12


class KeyUnavailable(Exception):
    """The KEK version a record needs is unknown, retired or unreadable. Never carries key material."""


class UnwrapFailed(Exception):
    """The wrapped key did not authenticate: a wrong KEK, another record's context, or a tampered value."""


@dataclass(frozen=True)
class KeyVersionInfo:
    version: int
    created_at: datetime | None
    retired_at: datetime | None = None

    @property
    def retired(self) -> bool:
        return self.retired_at is not None


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps data keys under a KEK version. Implementations: local file, env variable, keyring, KMS/Vault."""

    @property
    def name(self) -> str: ...

    async def active_version(self) -> int:
        """The version new records are wrapped under (the newest usable one)."""
        ...

    async def wrap(self, data_key: bytes, *, version: int, context: bytes) -> bytes: ...

    async def unwrap(self, wrapped: bytes, *, version: int, context: bytes) -> bytes:
        """The data key; ``KeyUnavailable`` for an unknown or retired version, ``UnwrapFailed`` if it does not
        authenticate."""
        ...


@runtime_checkable
class RotatableKeyProvider(KeyProvider, Protocol):
    """A provider whose versions we manage ourselves (``vai keys rotate|retire``)."""

    async def versions(self) -> list[KeyVersionInfo]: ...

    async def add_version(self) -> KeyVersionInfo: ...

    async def retire(self, version: int) -> KeyVersionInfo: ...


def aes_wrap(kek: bytes, data_key: bytes, context: bytes) -> bytes:
    """AES-256-GCM under the KEK: ``nonce (12) || ciphertext || tag (16)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, context)


def aes_unwrap(kek: bytes, wrapped: bytes, context: bytes) -> bytes:
    if len(wrapped) <= NONCE_BYTES:
        raise UnwrapFailed("wrapped key is truncated")
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
    except InvalidTag:
        raise UnwrapFailed("wrapped key does not authenticate for this record and key version") from None


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
        from virtuousai.crypto.keyring import LocalKeyring

        return LocalKeyring(settings.keys_dir, seed_file=settings.resolved_master_key_file)
    return LocalKeyFileProvider(settings.resolved_master_key_file)
