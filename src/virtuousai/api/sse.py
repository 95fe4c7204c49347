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


def event_stream(
    sessions: async_sessionmaker[AsyncSession], read: ReadEvents, *, after: int, poll_s: float = POLL_S
) -> EventSourceResponse:
    async def events() -> AsyncIterator[ServerSentEvent]:
        seen = after
        while True:
            async with sessions() as session:
                finished, batch = await read(session, seen)
                rows = [
                    (e.seq, e.kind, {"seq": e.seq, "kind": e.kind, "data": e.data, "at": e.created_at}) for e in batch
                ]
                await session.rollback()  # a read: end its transaction (the rows are plain data now)
            for seen, kind, payload in rows:
                yield ServerSentEvent(data=json.dumps(payload, default=json_default), event=kind, id=str(seen))
            if finished and len(rows) < BATCH:
                return
            if not rows:
                await asyncio.sleep(poll_s)

    return EventSourceResponse(events(), ping=15)
