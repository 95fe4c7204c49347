"""PostgreSQL: claim with ``FOR UPDATE SKIP LOCKED``; wake-ups with ``LISTEN``/``NOTIFY`` (asyncpg)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai.store.base import UTCDateTime
from virtuousai.store.drivers import (
    CLAIM_PARAM_TYPES,
    CLAIM_RESULT_TYPES,
    CLAIM_RETURNING,
    ClaimedRun,
    ClaimEvents,
    Rows,
    RunFinish,
    claim_choice_sql,
    claim_params,
    in_claim_order,
)
from virtuousai.store.drivers.wakeups import Wakeup, WakeupHub, hub_for, publish_at_commit

log = logging.getLogger(__name__)

CHANNEL = "vai_action_runs"

# claim_runs: the shared choice (``claim_choice_sql``) with its candidates locked ``SKIP LOCKED``. Two workers
# claiming at the same instant may each count the same running rows, so the limit is exact per statement and may
# be exceeded by at most one batch under contention (documented in docs/runtime.md). The RUNNING events are
# inserted by the same statement (a data-modifying CTE), taking the caller's event ids in order.
CLAIM_SQL = (
    sa.text(
        f"""
{claim_choice_sql(chr(10) + "    FOR UPDATE SKIP LOCKED")}, claimed AS (
    UPDATE action_runs SET
        status = 'RUNNING',
        attempt = action_runs.attempt + 1,
        lease_token = action_runs.lease_token + 1,
        lease_owner = :owner,
        lease_expires_at = :lease_until,
        started_at = :now,
        updated_at = :now,
        last_event_seq = action_runs.last_event_seq + 1
    FROM chosen WHERE action_runs.id = chosen.id
    RETURNING {", ".join("action_runs." + c.strip() for c in CLAIM_RETURNING.split(","))}
), events AS (
    INSERT INTO action_run_events (id, tenant_id, run_id, seq, kind, data, created_at)
    SELECT event.id, numbered.tenant_id, numbered.id, numbered.last_event_seq, 'status',
           CAST(:event_data AS jsonb) || jsonb_build_object('attempt', numbered.attempt), :now
    FROM (SELECT claimed.*, row_number() OVER (ORDER BY claimed.id) AS n FROM claimed) AS numbered
    JOIN unnest(CAST(:event_ids AS text[])) WITH ORDINALITY AS event(id, n) ON event.n = numbered.n
)
SELECT * FROM claimed
"""
    )
    .bindparams(*CLAIM_PARAM_TYPES)
    .columns(**CLAIM_RESULT_TYPES)
)

# finish_runs_if_owned: every outcome of a group commit in one statement — the guarded UPDATE, the status events
# and the NOTIFYs. Each row keeps its own guard, so a run whose lease was lost changes nothing, gets no event and
# no wake-up, and is absent from the answer.
FINISH_SQL = sa.text(
    """
WITH moved AS (
    UPDATE action_runs AS r SET
        status = v.status,
        output = v.output::jsonb,
        error = v.error::jsonb,
        available_at = coalesce(v.available_at, r.available_at),
        finished_at = v.finished_at,
        attempt = r.attempt + v.attempt_delta,
        lease_owner = NULL,
        lease_expires_at = NULL,
        updated_at = :now,
        last_event_seq = r.last_event_seq + 1
    FROM unnest(
        CAST(:ids AS text[]), CAST(:tenant_ids AS text[]), CAST(:tokens AS bigint[]), CAST(:statuses AS text[]),
        CAST(:outputs AS text[]), CAST(:errors AS text[]), CAST(:available_ats AS timestamptz[]),
        CAST(:finished_ats AS timestamptz[]), CAST(:attempt_deltas AS integer[]), CAST(:event_ids AS text[]),
        CAST(:event_data AS text[]), CAST(:wakeups AS text[])
    ) AS v(id, tenant_id, token, status, output, error, available_at, finished_at, attempt_delta, event_id,
           event_data, wakeup)
    WHERE r.id = v.id AND r.tenant_id = v.tenant_id AND r.lease_token = v.token AND r.status = 'RUNNING'
    RETURNING r.id, r.tenant_id, r.last_event_seq, v.event_id, v.event_data, v.wakeup
), events AS (
    INSERT INTO action_run_events (id, tenant_id, run_id, seq, kind, data, created_at)
    SELECT event_id, tenant_id, id, last_event_seq, 'status', event_data::jsonb, :now FROM moved
)
SELECT id, pg_notify(:channel, wakeup)::text AS notified FROM moved
"""
).bindparams(sa.bindparam("now", type_=UTCDateTime()))

# One round trip for any number of wake-ups (each stays its own notification).
NOTIFY_SQL = sa.text("SELECT count(pg_notify(:channel, payload)) FROM unnest(CAST(:payloads AS text[])) AS payload")


# -- write_together: many rows per write, every write of a call in one statement ----------------------------------
#
#   WITH w0 AS (UPDATE t AS r SET c = v.c … FROM unnest(CAST(:w0_c AS type[]), …) AS v(…) WHERE r.k = v.k AND
#               r.guard = :w0_g_guard RETURNING 1),
#        w1 AS (INSERT INTO u (c, …) SELECT v.c, … FROM unnest(CAST(:w1_c AS type[]), …) AS v(…) RETURNING 1)
#   SELECT (SELECT count(*) FROM w0), (SELECT count(*) FROM w1), (SELECT count(pg_notify(…)) FROM unnest(…))
#
# One array parameter per column, so the text depends only on the writes' shapes (tables, columns): it is built
# and compiled once per shape, whatever the number of rows.

# table, columns, key, guard columns, one row only (then scalar parameters, no unnest: the planner and the executor
# do less for the usual single-row write — a pass's run row, a chain's one new child — than for an array of one)
Shape = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], bool]
_TABLES: dict[str, sa.Table] = {}


def _shape(write: Rows) -> Shape:
    _TABLES[write.table.name] = write.table
    return (write.table.name, write.columns, write.key, tuple(write.guard), len(write.rows) == 1)


@functools.cache
def _array_type(column: sa.Column[Any]) -> tuple[str, Any, str]:
    """The array type a column's values travel in, how a value is converted for it (None: as it is), and the
    element's cast."""
    kind = column.type
    if isinstance(kind, sa.JSON):
        return "text[]", _json_or_none, "::jsonb"
    if isinstance(kind, UTCDateTime | sa.DateTime):
        return "timestamptz[]", None, ""
    if isinstance(kind, sa.Boolean):
        return "boolean[]", None, ""
    if isinstance(kind, sa.Integer):
        return "bigint[]", None, ""
    if isinstance(kind, sa.Float):
        return "float8[]", None, ""
    return "text[]", lambda value: None if value is None else str(getattr(value, "value", value)), ""


@functools.cache
def _together_statement(shapes: tuple[Shape, ...], notify: bool) -> sa.TextClause:
    ctes: list[str] = []
    counts: list[str] = []
    for index, (name, columns, key, guard, single) in enumerate(shapes):
        table = _TABLES[name]
        types = {column: _array_type(table.c[column]) for column in columns}
        if single:
            scalar = {column: _scalar(index, column, types[column]) for column in columns}
            if key:
                sets = ", ".join(f"{column} = {scalar[column]}" for column in columns if column not in key)
                where = [f"r.{column} = {scalar[column]}" for column in key]
                where += [f"r.{column} = :w{index}_g_{column}" for column in guard]
                body = f"UPDATE {name} AS r SET {sets} WHERE {' AND '.join(where)} RETURNING 1"
            else:
                body = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join(scalar.values())}) RETURNING 1"
            ctes.append(f"w{index} AS ({body})")
            counts.append(f"(SELECT count(*) FROM w{index})")
            continue
        arrays = ", ".join(f"CAST(:w{index}_{column} AS {types[column][0]})" for column in columns)
        source = f"unnest({arrays}) AS v({', '.join(columns)})"
        value = {column: f"v.{column}{types[column][2]}" for column in columns}
        if key:
            sets = ", ".join(f"{column} = {value[column]}" for column in columns if column not in key)
            where = [f"r.{column} = v.{column}" for column in key]
            # The same keys as ``= ANY``: without it a generic plan may hash-join the whole table with the array.
            where += [f"r.{column} = ANY(CAST(:w{index}_{column} AS {types[column][0]}))" for column in key]
            where += [f"r.{column} = :w{index}_g_{column}" for column in guard]
            body = f"UPDATE {name} AS r SET {sets} FROM {source} WHERE {' AND '.join(where)} RETURNING 1"
        else:
            selected = ", ".join(value.values())
            body = f"INSERT INTO {name} ({', '.join(columns)}) SELECT {selected} FROM {source} RETURNING 1"
        ctes.append(f"w{index} AS ({body})")
        counts.append(f"(SELECT count(*) FROM w{index})")
    if notify:
        counts.append("(SELECT count(pg_notify(:channel, p)) FROM unnest(CAST(:payloads AS text[])) AS p)")
    text = (f"WITH {', '.join(ctes)} " if ctes else "") + f"SELECT {', '.join(counts)}"
    guards = [
        sa.bindparam(f"w{index}_g_{column}", type_=_TABLES[name].c[column].type)
        for index, (name, _, _, guard, _) in enumerate(shapes)
        for column in guard
    ]
    return sa.text(text).bindparams(*guards)


def _scalar(index: int, column: str, types: tuple[str, Any, str]) -> str:
    """One value of a single-row write: its array type's element type (a JSON value: text, then jsonb)."""
    element = types[0].removesuffix("[]")
    return f"CAST(:w{index}_{column} AS {element}){types[2]}"


def _json_or_none(doc: Any) -> str | None:
    return None if doc is None else _json(doc)


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def asyncpg_dsn(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresRunQueue:
    dialect = "postgresql"

    def __init__(self, url: sa.URL, *, reconnect_delay_s: float = 1.0) -> None:
        self.url = url
        self.reconnect_delay_s = reconnect_delay_s

    @contextlib.asynccontextmanager
    async def batch_session(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        # claim_runs and finish_runs_if_owned are one statement each (their events and NOTIFYs included), atomic on
        # their own: no BEGIN/COMMIT round trips around them. The session's commit sends nothing to the server; it
        # delivers the block's wake-ups to this process (``publish_at_commit``).
        async with sessions() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            yield session
            await session.commit()

    async def claim_runs(
        self,
        session: AsyncSession,
        *,
        owner: str,
        limit: int,
        org_limit: int,
        now: datetime,
        lease_until: datetime,
        events: ClaimEvents,
    ) -> list[ClaimedRun]:
        params = claim_params(owner=owner, limit=limit, org_limit=org_limit, now=now, lease_until=lease_until)
        params |= {"event_ids": list(events.event_ids[:limit]), "event_data": _json(events.data)}
        rows = (await session.execute(CLAIM_SQL, params)).all()
        return in_claim_order(rows)

    async def finish_runs_if_owned(
        self, session: AsyncSession, finishes: Sequence[RunFinish], *, now: datetime
    ) -> set[str]:
        if not finishes:
            return set()
        params: dict[str, Any] = {
            "now": now,
            "channel": CHANNEL,
            "ids": [f.run_id for f in finishes],
            "tenant_ids": [f.tenant_id for f in finishes],
            "tokens": [f.lease_token for f in finishes],
            "statuses": [f.status for f in finishes],
            "outputs": [_json_or_none(f.output) for f in finishes],
            "errors": [_json_or_none(f.error) for f in finishes],
            "available_ats": [f.available_at for f in finishes],
            "finished_ats": [f.finished_at for f in finishes],
            "attempt_deltas": [f.attempt_delta for f in finishes],
            "event_ids": [f.event_id for f in finishes],
            "event_data": [_json(f.event_data) for f in finishes],
            "wakeups": [f.wakeup.encode() for f in finishes],
        }
        moved = {run_id for run_id, _ in (await session.execute(FINISH_SQL, params)).all()}
        publish_at_commit(session, hub_for(self.url), [f.wakeup for f in finishes if f.run_id in moved])
        return moved

    async def insert_ignoring_conflicts(
        self, session: AsyncSession, table: Any, rows: Sequence[Mapping[str, Any]], *, conflict: Sequence[str]
    ) -> set[str]:
        if not rows:
            return set()
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict)).returning(table.c.id)
        return set((await session.execute(stmt, list(rows))).scalars().all())

    async def write_together(
        self, session: AsyncSession, writes: Sequence[Rows], wakeups: Sequence[Wakeup] = ()
    ) -> list[int]:
        present = [write for write in writes if write.rows]  # an empty write writes nothing: counted 0
        if not present and not wakeups:
            return [0] * len(writes)
        statement = _together_statement(tuple(_shape(write) for write in present), bool(wakeups))
        params: dict[str, Any] = {"channel": CHANNEL, "payloads": [w.encode() for w in wakeups]}
        for index, write in enumerate(present):
            for name in write.columns:
                convert = _array_type(write.table.c[name])[1]
                values = [row[name] for row in write.rows]
                values = [convert(value) for value in values] if convert else values
                params[f"w{index}_{name}"] = values[0] if len(values) == 1 else values
            for name, value in write.guard.items():
                params[f"w{index}_g_{name}"] = value
        row = (await session.execute(statement, params)).one()
        publish_at_commit(session, hub_for(self.url), wakeups)
        counts = iter(int(n) for n in row[: len(present)])
        return [next(counts) if write.rows else 0 for write in writes]

    async def publish(self, session: AsyncSession, *wakeups: Wakeup) -> None:
        # NOTIFY is transactional: listeners hear it at commit, never for a rolled-back change. This process hears
        # it at its own commit, not a round trip later (the listener drops the echo).
        if not wakeups:
            return
        params = {"channel": CHANNEL, "payloads": [wakeup.encode() for wakeup in wakeups]}
        await session.execute(NOTIFY_SQL, params)
        publish_at_commit(session, hub_for(self.url), wakeups)

    async def listen(self, hub: WakeupHub) -> None:
        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            wakeup = Wakeup.decode(payload)
            if wakeup is not None and not wakeup.local:  # this process's own were delivered at their commit
                hub.publish(wakeup)

        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(asyncpg_dsn(self.url))
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, on_notify)
                # Anything enqueued while we were not listening is found by this first wake-up, and an access
                # change missed meanwhile by the second (verified keys are checked again).
                hub.publish(Wakeup("enqueued"))
                hub.publish(Wakeup("access"))
                await lost.wait()
                log.warning("LISTEN connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN failed (%s); polling until it reconnects", type(exc).__name__)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(self.reconnect_delay_s)
