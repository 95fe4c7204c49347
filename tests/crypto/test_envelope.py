"""Envelope encryption: bound to tenant, record and field; any changed byte fails; errors carry no secret."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from virtuousai.crypto.envelope import DecryptionFailed, EnvelopeCipher, SealBinding, SealedSecrets
from virtuousai.crypto.kek import KeyUnavailable
from virtuousai.crypto.keyfile import InsecureKeyFile
from virtuousai.crypto.providers import EnvKeyProvider, LocalKeyFileProvider

CANARY = "canary-7f3a9c1e-do-not-leak"
TENANT_A = SealBinding("connection", "org_A", "conn_1")


@pytest.fixture
def cipher(tmp_path: Path) -> EnvelopeCipher:
    return EnvelopeCipher(LocalKeyFileProvider(tmp_path / "master.key"))


def _flip(encoded: str, index: int) -> str:
    raw = bytearray(base64.b64decode(encoded))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


async def test_sealed_secrets_open_again_and_hide_the_plaintext(cipher: EnvelopeCipher) -> None:
    sealed = await cipher.seal(TENANT_A, {"password": CANARY, "token": "t"})
    assert sealed.field_names == ["password", "token"]
    assert CANARY not in repr(sealed)
    assert CANARY.encode() not in b"".join(base64.b64decode(v) for v in sealed.fields.values())
    assert await cipher.open(TENANT_A, sealed) == {"password": CANARY, "token": "t"}


async def test_each_seal_uses_a_fresh_data_key_and_nonce(cipher: EnvelopeCipher) -> None:
    first = await cipher.seal(TENANT_A, {"password": CANARY})
    second = await cipher.seal(TENANT_A, {"password": CANARY})
    assert first.wrapped_key != second.wrapped_key
    assert first.fields["password"] != second.fields["password"]


@pytest.mark.parametrize(
    "other",
    [
        SealBinding("connection", "org_B", "conn_1"),  # same record id, another tenant
        SealBinding("connection", "org_A", "conn_2"),  # another record of the same tenant
        SealBinding("agent", "org_A", "conn_1"),  # another kind of record
    ],
)
async def test_a_whole_envelope_copied_to_another_row_does_not_open(cipher: EnvelopeCipher, other: SealBinding) -> None:
    sealed = await cipher.seal(TENANT_A, {"password": CANARY})
    with pytest.raises(DecryptionFailed) as caught:
        await cipher.open(other, sealed)
    assert CANARY not in str(caught.value)


async def test_a_field_ciphertext_copied_into_another_record_does_not_open(cipher: EnvelopeCipher) -> None:
    victim = await cipher.seal(TENANT_A, {"password": CANARY})
    other_binding = SealBinding("connection", "org_B", "conn_9")
    attacker = await cipher.seal(other_binding, {"password": "mine"})
    spliced = SealedSecrets(attacker.key_version, attacker.wrapped_key, {"password": victim.fields["password"]})
    with pytest.raises(DecryptionFailed):
        await cipher.open(other_binding, spliced)


async def test_a_field_ciphertext_moved_to_another_field_does_not_open(cipher: EnvelopeCipher) -> None:
    sealed = await cipher.seal(TENANT_A, {"password": CANARY, "token": "t"})
    swapped = SealedSecrets(sealed.key_version, sealed.wrapped_key, {"token": sealed.fields["password"]})
    with pytest.raises(DecryptionFailed):
        await cipher.open(TENANT_A, swapped)


async def test_any_single_flipped_byte_fails(cipher: EnvelopeCipher) -> None:
    sealed = await cipher.seal(TENANT_A, {"password": CANARY})
    field_len = len(base64.b64decode(sealed.fields["password"]))
    for index in range(field_len):
        tampered = SealedSecrets(
            sealed.key_version, sealed.wrapped_key, {"password": _flip(sealed.fields["password"], index)}
        )
        with pytest.raises(DecryptionFailed):
            await cipher.open(TENANT_A, tampered)
    for index in range(len(base64.b64decode(sealed.wrapped_key))):
        tampered = SealedSecrets(sealed.key_version, _flip(sealed.wrapped_key, index), dict(sealed.fields))
        with pytest.raises(DecryptionFailed):
            await cipher.open(TENANT_A, tampered)


async def test_another_key_version_number_does_not_open(cipher: EnvelopeCipher) -> None:
    sealed = await cipher.seal(TENANT_A, {"password": CANARY})
    relabelled = SealedSecrets(2, sealed.wrapped_key, dict(sealed.fields))
    with pytest.raises(DecryptionFailed):
        await cipher.open(TENANT_A, relabelled)


async def test_another_master_key_does_not_open(tmp_path: Path, cipher: EnvelopeCipher) -> None:
    sealed = await cipher.seal(TENANT_A, {"password": CANARY})
    stranger = EnvelopeCipher(EnvKeyProvider(base64.b64encode(os.urandom(32)).decode()))
    with pytest.raises(DecryptionFailed):
        await stranger.open(TENANT_A, sealed)


async def test_the_key_file_is_created_private_and_refused_when_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    await EnvelopeCipher(LocalKeyFileProvider(path)).seal(TENANT_A, {"password": CANARY})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(InsecureKeyFile):
        await LocalKeyFileProvider(path).active_version()


def test_a_malformed_env_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(KeyUnavailable) as caught:
        EnvKeyProvider("not-a-key-" + CANARY)
    assert CANARY not in str(caught.value)


async def test_the_env_key_seals_and_opens() -> None:
    cipher = EnvelopeCipher(EnvKeyProvider(base64.b64encode(os.urandom(32)).decode()))
    sealed = await cipher.seal(TENANT_A, {"api_key": CANARY})
    assert await cipher.open(TENANT_A, sealed) == {"api_key": CANARY}
