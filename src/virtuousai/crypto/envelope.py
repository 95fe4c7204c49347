"""Envelope encryption of a record's secret fields.

Per record (e.g. one connection):

- a fresh random 256-bit **data key**;
- each secret field encrypted with it: AES-256-GCM, a random 96-bit nonce, and associated data binding the
  ciphertext to (format version, purpose, tenant id, record id, field name);
- the data key **wrapped** by a key-encryption key (KEK) version from a ``KeyProvider``, with associated data
  binding it to (format version, purpose, tenant id, record id, KEK version).

Why the key version is bound on the wrap and not on each field: rotation re-wraps the data key under a new KEK
version without touching the field ciphertexts (``rewrap``). A field ciphertext only decrypts under its record's
data key, and that data key only unwraps for its record, tenant and key version, so the whole chain stays bound.
Copying ciphertext (or a whole envelope) into another tenant's or another record's row fails to decrypt; so does
any changed byte.

Errors name the record and field, never a value or a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from virtuousai.crypto.kek import NONCE_BYTES, KeyProvider, KeyUnavailable, UnwrapFailed

FORMAT_VERSION = 1
DATA_KEY_BYTES = 32


class DecryptionFailed(Exception):
    """A sealed record could not be opened. The message says which part failed, never what it held."""


@dataclass(frozen=True)
class SealBinding:
    """What a record's ciphertext is bound to. ``purpose`` names the kind of record (``"connection"``)."""

    purpose: str
    tenant_id: str
    record_id: str

    def _encode(self, **extra: str | int) -> bytes:
        # Canonical JSON: unambiguous (no separator games) and stable across versions of this code.
        doc = {"fmt": FORMAT_VERSION, "purpose": self.purpose, "tenant": self.tenant_id, "record": self.record_id}
        return json.dumps(doc | extra, sort_keys=True, separators=(",", ":")).encode()

    def field_context(self, field_name: str) -> bytes:
        return self._encode(field=field_name)

    def wrap_context(self, key_version: int) -> bytes:
        return self._encode(kek_version=key_version)


@dataclass(frozen=True)
class SealedSecrets:
    """What is stored: the KEK version, the wrapped data key and one ciphertext per field (all base64)."""

    key_version: int
    wrapped_key: str
    fields: Mapping[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def field_names(self) -> list[str]:
        return sorted(self.fields)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionFailed(f"{what} is not valid base64") from None


class EnvelopeCipher:
    """Seals and opens secret fields with per-record data keys wrapped by ``provider``."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider

    async def seal(self, binding: SealBinding, secrets: Mapping[str, str]) -> SealedSecrets:
        data_key = AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)
        aead = AESGCM(data_key)
        fields: dict[str, str] = {}
        for name, value in secrets.items():
            nonce = os.urandom(NONCE_BYTES)
            fields[name] = _b64(nonce + aead.encrypt(nonce, value.encode(), binding.field_context(name)))
        version = await self.provider.active_version()
        wrapped = await self.provider.wrap(data_key, version=version, context=binding.wrap_context(version))
        return SealedSecrets(key_version=version, wrapped_key=_b64(wrapped), fields=fields)

    async def _data_key(self, binding: SealBinding, sealed: SealedSecrets) -> bytes:
        if sealed.format_version != FORMAT_VERSION:
            raise DecryptionFailed(f"{binding.purpose} {binding.record_id}: unknown format {sealed.format_version}")
        wrapped = _unb64(sealed.wrapped_key, f"{binding.purpose} {binding.record_id}: wrapped key")
        try:
            return await self.provider.unwrap(
                wrapped, version=sealed.key_version, context=binding.wrap_context(sealed.key_version)
            )
        except (KeyUnavailable, UnwrapFailed) as exc:
            raise DecryptionFailed(f"{binding.purpose} {binding.record_id}: {exc}") from None

    async def open(self, binding: SealBinding, sealed: SealedSecrets) -> dict[str, str]:
        aead = AESGCM(await self._data_key(binding, sealed))
        opened: dict[str, str] = {}
        for name, encoded in sealed.fields.items():
            what = f"{binding.purpose} {binding.record_id}: field {name!r}"
            blob = _unb64(encoded, what)
            try:
                plaintext = aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], binding.field_context(name))
            except (InvalidTag, ValueError):
                raise DecryptionFailed(f"{what} does not authenticate (tampered or copied)") from None
            opened[name] = plaintext.decode()
        return opened

    async def rewrap(
        self, binding: SealBinding, sealed: SealedSecrets, *, to_version: int | None = None
    ) -> SealedSecrets:
        """The same data key wrapped under ``to_version`` (default: the active one); field ciphertexts unchanged."""
        data_key = await self._data_key(binding, sealed)
        version = to_version if to_version is not None else await self.provider.active_version()
        wrapped = await self.provider.wrap(data_key, version=version, context=binding.wrap_context(version))
        return SealedSecrets(
            key_version=version, wrapped_key=_b64(wrapped), fields=dict(sealed.fields), format_version=FORMAT_VERSION
        )
