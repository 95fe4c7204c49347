"""Key rotation over every table that stores sealed secrets: status, rewrap, retire.

A sealed table has the columns ``id``, ``tenant_id``, ``key_version``, ``wrapped_key``, ``sealed_fields`` and
``encryption_format`` (see ``connections/tables.py``). These are maintenance queries across all tenants, like the
run-queue drivers: each record is still opened with its own tenant and id as associated data.

Runbook (``docs/connections.md``): ``vai keys rotate`` → ``vai keys rewrap`` → ``vai keys status`` shows nothing on
the old version → ``vai keys retire <old>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.crypto.envelope import DecryptionFailed, EnvelopeCipher, SealBinding, SealedSecrets
from virtuousai.crypto.kek import KeyVersionInfo, RotatableKeyProvider
from virtuousai.errors import Conflict


@dataclass(frozen=True)
class SealedTable:
    purpose: str
    table: sa.Table


@dataclass
class RewrapReport:
    target_version: int
    rewrapped: int = 0
    already_current: int = 0
    # Record ids that could not be re-wrapped, with the (secret-free) reason; they stay on their old version.
    failed: dict[str, str] = field(default_factory=dict)


async def count_by_version(session: AsyncSession, tables: Sequence[SealedTable]) -> dict[int, int]:
    """Records per KEK version, over every sealed table."""
    counts: dict[int, int] = {}
    for sealed in tables:
        column = sealed.table.c.key_version
        rows = await session.execute(sa.select(column, sa.func.count()).group_by(column))
        for version, count in rows.tuples():
            counts[int(version)] = counts.get(int(version), 0) + int(count)
    return dict(sorted(counts.items()))


async def rewrap_all(
    sessions: async_sessionmaker[AsyncSession],
    cipher: EnvelopeCipher,
    tables: Sequence[SealedTable],
    *,
    batch_size: int = 200,
) -> RewrapReport:
    """Re-wrap every data key that is not under the active version. Only ``wrapped_key`` and ``key_version``
    change; field ciphertexts stay as they are. One transaction per batch; safe to run again after a failure."""
    report = RewrapReport(target_version=await cipher.provider.active_version())
    for sealed in tables:
        await _rewrap_table(sessions, cipher, sealed, report, batch_size)
    return report


async def _rewrap_table(
    sessions: async_sessionmaker[AsyncSession],
    cipher: EnvelopeCipher,
    sealed: SealedTable,
    report: RewrapReport,
    batch_size: int,
) -> None:
    table, target = sealed.table, report.target_version
    last_id = ""
    while True:
        async with sessions() as session, session.begin():
            rows = (
                await session.execute(
                    sa.select(
                        table.c.id,
                        table.c.tenant_id,
                        table.c.key_version,
                        table.c.wrapped_key,
                        table.c.sealed_fields,
                        table.c.encryption_format,
                    )
                    .where(table.c.key_version != target, table.c.id > last_id)
                    .order_by(table.c.id)
                    .limit(batch_size)
                )
            ).all()
            for row in rows:
                binding = SealBinding(sealed.purpose, row.tenant_id, row.id)
                old = SealedSecrets(row.key_version, row.wrapped_key, row.sealed_fields, row.encryption_format)
                try:
                    new = await cipher.rewrap(binding, old, to_version=target)
                except DecryptionFailed as exc:
                    report.failed[row.id] = str(exc)
                    continue
                # Guarded on the old wrap: a concurrent secret update (a new data key) is never overwritten.
                result = await session.execute(
                    sa.update(table)
                    .where(table.c.id == row.id, table.c.wrapped_key == row.wrapped_key)
                    .values(key_version=new.key_version, wrapped_key=new.wrapped_key)
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    report.rewrapped += 1
                else:
                    report.already_current += 1
        if len(rows) < batch_size:
            return
        last_id = rows[-1].id


async def retire_version(
    sessions: async_sessionmaker[AsyncSession],
    provider: RotatableKeyProvider,
    tables: Sequence[SealedTable],
    version: int,
    *,
    force: bool = False,
) -> KeyVersionInfo:
    """Retire a KEK version: it decrypts nothing from now on. Refused for the active version, and while records
    still use it unless ``force`` (those records become unreadable)."""
    if version == await provider.active_version():
        raise Conflict(f"key version {version} is the active version; run `vai keys rotate` first")
    async with sessions() as session:
        in_use = (await count_by_version(session, tables)).get(version, 0)
    if in_use and not force:
        raise Conflict(
            f"{in_use} record(s) still use key version {version}; run `vai keys rewrap` first "
            "(or --force, which makes them unreadable)",
            records=in_use,
        )
    return await provider.retire(version)
