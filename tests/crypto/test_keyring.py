"""The versioned local keyring: rotation adds versions, rewrap moves data keys, a retired version opens nothing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from virtuousai.crypto.envelope import DecryptionFailed, EnvelopeCipher, SealBinding
from virtuousai.crypto.kek import RotatableKeyProvider
from virtuousai.crypto.keyfile import InsecureKeyFile
from virtuousai.crypto.keyring import LocalKeyring
from virtuousai.crypto.providers import LocalKeyFileProvider

CANARY = "canary-keyring-31c5"
BINDING = SealBinding("connection", "org_A", "conn_1")


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring(tmp_path / "keys", seed_file=tmp_path / "master.key")


async def test_the_keyring_is_a_rotatable_provider(keyring: LocalKeyring) -> None:
    assert isinstance(keyring, RotatableKeyProvider)
    assert not isinstance(LocalKeyFileProvider(Path("unused")), RotatableKeyProvider)


async def test_rotation_adds_a_private_version_that_new_seals_use(keyring: LocalKeyring) -> None:
    cipher = EnvelopeCipher(keyring)
    old = await cipher.seal(BINDING, {"password": CANARY})
    assert old.key_version == 1
    added = await keyring.add_version()
    assert added.version == 2
    assert stat.S_IMODE(keyring.key_path(2).stat().st_mode) == 0o600
    assert stat.S_IMODE(keyring.directory.stat().st_mode) == 0o700
    assert (await cipher.seal(BINDING, {"password": CANARY})).key_version == 2
    assert await cipher.open(BINDING, old) == {"password": CANARY}


async def test_rewrap_changes_only_the_wrapped_key(keyring: LocalKeyring) -> None:
    cipher = EnvelopeCipher(keyring)
    old = await cipher.seal(BINDING, {"password": CANARY})
    await keyring.add_version()
    new = await cipher.rewrap(BINDING, old)
    assert new.key_version == 2
    assert new.fields == old.fields
    assert new.wrapped_key != old.wrapped_key
    assert await cipher.open(BINDING, new) == {"password": CANARY}


async def test_a_retired_version_decrypts_nothing(keyring: LocalKeyring) -> None:
    cipher = EnvelopeCipher(keyring)
    old = await cipher.seal(BINDING, {"password": CANARY})
    await keyring.add_version()
    await keyring.retire(1)
    with pytest.raises(DecryptionFailed, match="retired") as caught:
        await cipher.open(BINDING, old)
    assert CANARY not in str(caught.value)
    # A second keyring object over the same folder (another process) sees the retirement too.
    with pytest.raises(DecryptionFailed):
        await EnvelopeCipher(LocalKeyring(keyring.directory)).open(BINDING, old)
    assert [(v.version, v.retired) for v in await keyring.versions()] == [(1, True), (2, False)]


async def test_version_one_is_the_master_key_so_records_of_the_file_provider_keep_opening(tmp_path: Path) -> None:
    file_cipher = EnvelopeCipher(LocalKeyFileProvider(tmp_path / "master.key"))
    sealed = await file_cipher.seal(BINDING, {"password": CANARY})
    keyring = LocalKeyring(tmp_path / "keys", seed_file=tmp_path / "master.key")
    assert await EnvelopeCipher(keyring).open(BINDING, sealed) == {"password": CANARY}


async def test_a_key_readable_by_others_is_refused(keyring: LocalKeyring) -> None:
    await keyring.add_version()
    keyring.key_path(2).chmod(0o640)
    with pytest.raises(InsecureKeyFile):
        await EnvelopeCipher(keyring).seal(BINDING, {"password": CANARY})
