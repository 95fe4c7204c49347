"""The problems a lake query can answer, in one small module: the guard raises the first two, the query processes
the others, and ``isolation.py`` carries them across the process boundary by their ``type_slug``.

Nothing here imports more than ``virtuousai.errors``, so a query process starts without sqlglot or the settings.
"""

from __future__ import annotations

from virtuousai.errors import FieldError, ServiceUnavailable, ValidationFailed


class SqlRejected(ValidationFailed):
    """The guard refused the SQL; ``detail`` names the statement, function or table."""

    type_slug = "sql-rejected"
    title = "SQL refused"


class UnknownTable(ValidationFailed):
    type_slug = "unknown-table"
    title = "Unknown table"


class QueryTimedOut(ValidationFailed):
    type_slug = "query-timeout"
    title = "Query timed out"


class QueryMemoryExceeded(ValidationFailed):
    """The query needed more memory than its process may have (DuckDB's limit, the address-space limit, or the
    largest result a query may return), or its process died of it."""

    type_slug = "query-memory"
    title = "Query ran out of memory"


class QueryFailed(ValidationFailed):
    """DuckDB refused or failed the (already guarded) query: a missing column, a bad cast, a permission error."""

    type_slug = "query-failed"
    title = "Query failed"


class QueriesBusy(ServiceUnavailable):
    """No query process was free for this query within its time limit (it never started); try again."""

    type_slug = "query-busy"
    title = "Query processes busy"

    @classmethod
    def at(cls, loc: list[str | int], msg: str) -> QueriesBusy:
        return cls(msg, errors=[FieldError(loc, msg, "query_busy")])


# What a query process may report, by slug (``ValidationFailed``: a transform's own input errors, e.g. its row cap).
QUERY_ERRORS: dict[str, type[ValidationFailed]] = {
    cls.type_slug: cls
    for cls in (ValidationFailed, SqlRejected, UnknownTable, QueryTimedOut, QueryMemoryExceeded, QueryFailed)
}
