"""What every key-encryption-key (KEK) provider shares: the provider protocols, the errors, and the AES-256-GCM wrap.

The providers themselves are in ``providers.py`` (one key: a local file or an environment variable) and
``keyring.py`` (several versioned local keys).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
