"""The one loop behind every run's event stream (``GET …/events``): stored events in ``seq`` order as server-sent
events, resumable from ``Last-Event-ID``, ending after the run's terminal event.

Each round reads, in one short session, whether the run is terminal and then the events after the last one sent
(terminal first: if it was, its terminal event is already visible). A round that finds nothing waits ``poll_s``
(progress events publish no wake-up); a full batch is followed by the next at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent

from virtuousai.timeutil import json_default

BATCH = 500
POLL_S = 0.25


class StoredEvent(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...


# ``(session, after seq) → (the run is terminal, up to BATCH events after that seq)``
ReadEvents = Callable[[AsyncSession, int], Awaitable[tuple[bool, Sequence[StoredEvent]]]]


@dataclass(frozen=True)
class Outgoing:
    """One server-sent event: its id (what ``Last-Event-ID`` sends back), its name and its JSON payload."""

    id: str
    kind: str
    payload: dict[str, Any]


# ``(session, the last id sent) → (the stream may end after these, the events that follow it)``
ReadOutgoing = Callable[[AsyncSession, str], Awaitable[tuple[bool, Sequence[Outgoing]]]]


def event_stream(
    sessions: async_sessionmaker[AsyncSession], read: ReadEvents, *, after: int, poll_s: float = POLL_S
) -> EventSourceResponse:
    """A run's stored events, ``id`` = ``seq``."""

    async def read_outgoing(session: AsyncSession, seen: str) -> tuple[bool, Sequence[Outgoing]]:
        finished, batch = await read(session, int(seen))
        rows = [Outgoing(str(e.seq), e.kind, stored_payload(e)) for e in batch]
        return finished and len(rows) < BATCH, rows

    return outgoing_stream(sessions, read_outgoing, after=str(after), poll_s=poll_s)


def stored_payload(event: StoredEvent) -> dict[str, Any]:
    return {"seq": event.seq, "kind": event.kind, "data": event.data, "at": event.created_at}


def outgoing_stream(
    sessions: async_sessionmaker[AsyncSession], read: ReadOutgoing, *, after: str, poll_s: float = POLL_S
) -> EventSourceResponse:
    """The loop itself, for streams whose ids are not one counter (an agent run's interleaves its model calls'
    narration: ``ReadOutgoing`` decides what follows an id)."""

    async def events() -> AsyncIterator[ServerSentEvent]:
        seen = after
        while True:
            async with sessions() as session:
                done, rows = await read(session, seen)
                await session.rollback()  # a read: end its transaction (the rows are plain data now)
            for row in rows:
                seen = row.id
                yield ServerSentEvent(data=json.dumps(row.payload, default=json_default), event=row.kind, id=row.id)
            if done:
                return
            if not rows:
                await asyncio.sleep(poll_s)

    return EventSourceResponse(events(), ping=15)
