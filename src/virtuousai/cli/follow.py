"""``--follow`` without a worker: say so instead of waiting in silence.

Runs are executed by workers (``vai serve``'s in-process ones, or ``vai worker`` processes), never by the command
that follows them. If nothing of the run has been claimed ``VAI_FOLLOW_NOTICE_S`` seconds after following began,
``unclaimed_notice`` prints once, on stderr, that no worker has picked it up and how to start one; following goes on
(a worker started now is seen at once). Every follower (``vai automation run --follow`` on the database,
``vai run --follow`` over HTTP) marks the moment it sees a claim on the same ``asyncio.Event``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import typer


def notice_text(run_id: str, after_s: float, *, remote: bool) -> str:
    where = "the server's database" if remote else "this database (VAI_DATABASE_URL)"
    return (
        f"note: no worker has claimed {run_id} after {after_s:g} s. Runs are executed by the workers of `vai serve` "
        f"(1 in-process worker on SQLite, 0 on PostgreSQL) or by `vai worker`; start one on {where}, e.g. "
        "`vai worker` in another shell. Still following."
    )


@contextlib.asynccontextmanager
async def unclaimed_notice(run_id: str, after_s: float, *, remote: bool = False) -> AsyncIterator[asyncio.Event]:
    """Within this block, set the event when a worker has claimed the run; if that has not happened after
    ``after_s`` seconds, the notice is printed (once)."""
    claimed = asyncio.Event()

    async def warn() -> None:
        try:
            await asyncio.wait_for(claimed.wait(), after_s)
        except TimeoutError:
            typer.echo(notice_text(run_id, after_s, remote=remote), err=True)

    task = asyncio.create_task(warn())
    try:
        yield claimed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
