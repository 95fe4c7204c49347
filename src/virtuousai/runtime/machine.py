"""State machines as data, and the one guarded write that moves a row from one state to the next.

Every run kind — ActionRun (``runtime/states.py``), AutomationRun and its steps (``automations/states.py``), the
AgentRun — is a ``StateMachine``: a table ``state → the states it may move to``, where a terminal state maps to
nothing. ``check`` refuses a move the table does not have (``IllegalTransition``). ``guarded_update`` writes a move:
one ``UPDATE … WHERE`` whose guards say what the writer believes the row still is (its status, and the lease token
of a worker or the version of a parent run); zero rows updated means the row moved on without the writer, who gets
``Stale`` and must not act on what it read.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

S = TypeVar("S", bound=enum.StrEnum)


class IllegalTransition(Exception):
    """A move the table does not allow (a programming error, or a request on a run in the wrong state)."""

    def __init__(self, current: enum.StrEnum, target: enum.StrEnum, machine: str = "") -> None:
        where = f"{machine}: " if machine else ""
        super().__init__(f"{where}illegal transition {current.value} → {target.value}")
        self.current = current
        self.target = target


class Stale(Exception):
    """A guarded write changed nothing: the row is no longer what the writer read. Read again, or stop."""


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    name: str
    allowed: Mapping[S, frozenset[S]]
    terminal: frozenset[S] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terminal", frozenset(s for s, targets in self.allowed.items() if not targets))

    def check(self, current: S, target: S) -> None:
        if target not in self.allowed[current]:
            raise IllegalTransition(current, target, self.name)

    def is_terminal(self, state: S) -> bool:
        return not self.allowed[state]


async def guarded_update(
    session: AsyncSession,
    table: Any,
    *,
    key: Mapping[str, Any],
    guards: Mapping[str, Any],
    values: Mapping[str, Any],
    where: Sequence[sa.ColumnElement[bool]] = (),
    returning: tuple[Any, ...] = (),
    stale: type[Stale] = Stale,
) -> tuple[Any, ...]:
    """``UPDATE table SET values WHERE key AND guards AND where RETURNING returning``, in the caller's transaction.

    ``key`` names the row (``id``, ``tenant_id``); ``guards`` are what the writer read (``status``, ``lease_token``,
    ``last_event_seq``), ``where`` any other condition of its own. Raises ``Stale`` when no row matched (the
    ``stale`` exception type, if given); returns the ``returning`` columns otherwise."""
    columns = table.__table__.c if hasattr(table, "__table__") else table.c
    conditions = [columns[name] == value for name, value in {**key, **guards}.items()] + list(where)
    stmt = sa.update(table).where(*conditions).values(dict(values)).execution_options(synchronize_session=False)
    stmt = stmt.returning(*(returning or (columns[next(iter(key))],)))
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise stale(f"{columns[next(iter(key))].table.name} {dict(key)} is no longer {dict(guards)}")
    return tuple(row)
