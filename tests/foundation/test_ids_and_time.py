"""Ids are prefixed, time-ordered and monotonic; stored timestamps are timezone-aware UTC and never naive."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.ids import has_prefix, new_id
from virtuousai.orgs.tables import Organization
from virtuousai.store.base import UTCDateTime

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def id_millis(value: str) -> int:
    """The creation time (Unix ms) encoded in the first 10 ULID characters."""
    ulid = value.split("_", 1)[1]
    millis = 0
    for char in ulid[:10]:
        millis = millis * 32 + CROCKFORD.index(char)
    return millis


prefixes = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=5)


@settings(max_examples=50, deadline=None)
@given(prefix=prefixes, count=st.integers(min_value=2, max_value=300))
def test_ids_are_strictly_increasing_and_carry_their_time(prefix: str, count: int) -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [new_id(prefix) for _ in range(count)]
    after_ms = time.time_ns() // 1_000_000
    # Many ids share a millisecond here: the random part is bumped so order still holds.
    assert ids == sorted(ids)
    assert len(set(ids)) == count
    for value in ids:
        assert has_prefix(value, prefix)
        assert set(value.split("_", 1)[1]) <= set(CROCKFORD)
        assert before_ms <= id_millis(value) <= after_ms


@settings(max_examples=20, deadline=None)
@given(first=prefixes, second=prefixes)
def test_ids_of_different_kinds_share_one_clock(first: str, second: str) -> None:
    earlier, later = new_id(first), new_id(second)
    assert earlier.split("_", 1)[1] < later.split("_", 1)[1]


def test_ids_stay_unique_across_threads() -> None:
    minted: list[list[str]] = [[] for _ in range(4)]

    def mint(bucket: list[str]) -> None:
        bucket.extend(new_id("run") for _ in range(2000))

    threads = [threading.Thread(target=mint, args=(bucket,)) for bucket in minted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for bucket in minted for value in bucket]
    assert len(set(every)) == len(every)
    assert all(bucket == sorted(bucket) for bucket in minted), "each thread sees increasing ids"


@pytest.mark.parametrize("value", ["run_01ARZ3NDEKTSV4RRFFQ69G5FA", "run_", "runx01ARZ3NDEKTSV4RRFFQ69G5FAV", "x"])
def test_has_prefix_refuses_malformed_ids(value: str) -> None:
    assert not has_prefix(value, "run")


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgres"])
def test_utc_datetime_refuses_naive_values(dialect: sa.Dialect) -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2030, 1, 1, 12, 0), dialect)


@settings(max_examples=50, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31), timezones=st.timezones()))
def test_utc_datetime_keeps_the_instant_and_answers_utc(moment: datetime) -> None:
    column = UTCDateTime()
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        stored = column.process_bind_param(moment, dialect)
        assert stored is not None
        loaded = column.process_result_value(stored, dialect)
        # Compared in UTC: Python never calls a time inside a DST fold equal to one in another zone (PEP 495).
        assert loaded == moment.astimezone(UTC)
        assert loaded is not None and loaded.tzinfo == UTC


async def test_naive_timestamps_never_reach_the_database(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        session.add(Organization(id=new_id("org"), name="Naive", settings={}, created_at=datetime(2030, 1, 1)))
        with pytest.raises(StatementError) as raised:
            await session.commit()
        assert isinstance(raised.value.orig, ValueError)
    async with sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Organization)) == 0


async def test_stored_timestamps_come_back_aware_utc(sessions: async_sessionmaker[AsyncSession]) -> None:
    plus_five = datetime(2030, 6, 1, 17, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5)))
    org_id = new_id("org")
    async with sessions() as session:
        session.add(Organization(id=org_id, name="Aware", settings={}, created_at=plus_five))
        await session.commit()
    async with sessions() as session:
        stored = await session.get(Organization, org_id)
        assert stored is not None
        assert stored.created_at == plus_five
        assert stored.created_at.tzinfo == UTC
        assert stored.created_at.hour == 12
