"""What the commands that work on the database share: an engine for one command, the ``--org`` they act in, and
running their coroutine with domain errors printed the one way (``cli/output.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from virtuousai import eventloop
from virtuousai.cli.output import Words, exit_with
from virtuousai.config import Settings
from virtuousai.errors import NotFound, ServiceUnavailable, VaiError
from virtuousai.orgs.repository import AccessLookup
from virtuousai.store.engine import make_engine, make_sessionmaker
from virtuousai.store.tenant import TenantContext

T = TypeVar("T")

OrgOption = Annotated[str, typer.Option("--org", help="Organization id (`vai org list` shows them).")]


class UnknownOrganization(NotFound):
    def __init__(self, org: str) -> None:
        super().__init__(f"no organization {org}")


class NotMigrated(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__(
            "the database has no VirtuousAI tables yet: run `vai migrate` first (`make run` does), "
            "with the same VAI_DATABASE_URL / VAI_DATA_DIR"
        )


def _missing_table(error: DBAPIError) -> bool:
    text = str(error.orig)  # SQLite: "no such table: x"; PostgreSQL: 'relation "x" does not exist'
    return "no such table" in text or ("relation" in text and "does not exist" in text)


@asynccontextmanager
async def open_sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions for one command. A database that was never migrated is one clear sentence, not a traceback: the
    check costs nothing on the way that works (the command's first statement is the test)."""
    engine = make_engine(settings.resolved_database_url)
    try:
        yield make_sessionmaker(engine)
    except DBAPIError as error:
        if _missing_table(error):
            raise NotMigrated() from error
        raise
    finally:
        await engine.dispose()


async def resolve_org(session: AsyncSession, org: str) -> TenantContext:
    """The tenant of ``--org``: every command that takes one starts here, so an unknown id is refused before the
    command does anything, with the same message and exit status everywhere."""
    if await AccessLookup(session).organization(org) is None:
        raise UnknownOrganization(org)
    return TenantContext(tenant_id=org)


@asynccontextmanager
async def open_org(
    org: str, settings: Settings | None = None
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], TenantContext]]:
    """Sessions on the database and the tenant of ``--org``, checked once."""
    async with open_sessions(settings or Settings()) as sessions:
        async with sessions() as session:
            tenant = await resolve_org(session, org)
        yield sessions, tenant


def run(
    main: Coroutine[Any, Any, T],
    words: Words | None = None,
    report: Callable[[VaiError], NoReturn] | None = None,
) -> T:
    """Run a command's coroutine. A domain error is printed once, in the command's ``words``, and exits 2; a
    command that reports its own errors (a spec's, with line numbers) passes ``report``, which still never sees an
    unknown ``--org``."""
    try:
        return eventloop.run(main)
    except UnknownOrganization as exc:
        exit_with(exc.detail)
    except VaiError as exc:
        if report is not None:
            report(exc)
        exit_with(exc.detail, exc.errors, words)
