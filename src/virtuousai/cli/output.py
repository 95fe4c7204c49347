"""What every ``vai`` command prints (JSON, tables, errors, its exit status) and how it reads ``k=v`` options.

No database and no HTTP here, so both kinds of command (``cli/common.py`` opens the database, ``cli/remote.py``
calls a server) print alike.

Exit status, the same for every command:

- ``0``: done.
- ``1``: it ran and did not succeed: a followed run ended FAILED or CANCELLED, a spec has errors, the server could
  not be reached or failed (5xx).
- ``2``: refused: invalid input, an unknown organization (``no organization org_…``) or object, a conflict; also
  a usage error (an unknown option), as click reports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from virtuousai.timeutil import isoformat, json_default

EXIT_FAILED = 1
EXIT_REFUSED = 2

JsonObjectOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
JsonListOption = Annotated[bool, typer.Option("--json", help="Print a JSON array, one object per row.")]

# Our ids: a kind prefix and a ULID (ids.py). A column holding one is never shortened, whatever the width.
_ID = re.compile(r"^[a-z]+_[0-9A-HJKMNP-TV-Z]{26}$")

# Where an error's ``loc`` points, in the words of a command: ``{("body", "params"): "--param"}`` prints the
# error at ``["body", "params", "day"]`` as ``--param day``.
Words = Mapping[tuple[str | int, ...], str]


def echo_json(payload: Any) -> None:
    """``payload`` as JSON on stdout; timestamps as ``timeutil.isoformat`` writes them."""
    typer.echo(json.dumps(payload, default=json_default))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> None:
    """A table on stdout. Ids are printed whole: on a terminal the other columns wrap around them; into a pipe or
    a file (no width to fit) nothing is shortened at all."""
    text_rows = [[cell(value) for value in row] for row in rows]
    table = Table(title=title)
    for index, name in enumerate(columns):
        ids = [row[index] for row in text_rows if _ID.match(row[index])]
        table.add_column(name, no_wrap=bool(ids), min_width=max(map(len, ids), default=None))
    for row in text_rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=10_000)  # rich shapes the table to its console; a pipe has no width to honour
    console.print(table)


def cell(value: object) -> str:
    """A value as a table shows it: nothing for ``None``, timestamps as everywhere else."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return isoformat(value)
    return str(value)


def where(loc: Sequence[str | int], words: Words | None = None) -> str:
    """An error's ``loc`` in the command's words where it has some, else as a dotted path."""
    for prefix, word in sorted((words or {}).items(), key=lambda item: -len(item[0])):
        if tuple(loc[: len(prefix)]) == prefix:
            rest = ".".join(str(part) for part in loc[len(prefix) :])
            return f"{word} {rest}" if rest else word
    return ".".join(str(part) for part in loc)


def print_error(detail: str, errors: Sequence[Mapping[str, Any]] = (), words: Words | None = None) -> None:
    """Each message once on stderr: one line per invalid field (``error: --param day: …``), and the detail only
    when it says more than those lines (it is often their summary)."""
    messages = [str(error.get("msg", "")) for error in errors]
    if not errors or not all(message in detail for message in messages):
        typer.echo(f"error: {detail}", err=True)
    for error, message in zip(errors, messages, strict=True):
        typer.echo(f"error: {where(error.get('loc', []), words)}: {message}", err=True)


def exit_with(detail: str, errors: Sequence[Mapping[str, Any]] = (), words: Words | None = None) -> NoReturn:
    """Print a refusal (``print_error``) and exit ``EXIT_REFUSED``."""
    print_error(detail, errors, words)
    raise typer.Exit(code=EXIT_REFUSED)


def parse_pairs(pairs: list[str] | None, flag: str, *, files: bool = False) -> dict[str, Any]:
    """``k=v`` values of a repeated option; a value that parses as JSON keeps its type (``n=3`` is a number,
    ``s=abc`` a string). With ``files``, ``k=@path`` reads the value from a file (a secret kept out of shell
    history)."""
    values: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            refuse(f"{flag}: expected key=value, got {pair!r}")
        if files and raw.startswith("@"):
            try:
                values[key] = Path(raw[1:]).read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                refuse(f"{flag} {key}: cannot read {raw[1:]}: {exc.strerror}")
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def refuse(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=EXIT_REFUSED)
