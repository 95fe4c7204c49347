"""``vai query`` and ``vai connections …``: the lake and the connections on a server (``cli/remote.py``)."""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Any

import typer

from virtuousai.cli import remote
from virtuousai.cli.output import (
    EXIT_FAILED,
    JsonListOption,
    JsonObjectOption,
    Words,
    echo_json,
    parse_pairs,
    print_table,
    refuse,
)
from virtuousai.cli.remote import connect, ref_of, segment

connections_app = typer.Typer(
    help="Connections on the server (VAI_URL): list, create, test.", no_args_is_help=True, add_completion=False
)


def query(
    sql: Annotated[str, typer.Argument(help="One read-only statement; tables are <layer>.<dataset>.<table>.")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Most rows (the server caps it too).")] = None,
    as_json: JsonListOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV with a header row.")] = False,
) -> None:
    """Run a read-only SQL query on the lake, through the server (VAI_URL): a table, JSON or CSV."""
    if as_json and as_csv:
        refuse("--json or --csv, not both")

    async def main() -> dict[str, Any]:
        async with connect() as server:
            answered: dict[str, Any] = await server.request(
                "POST", "/query", json_body={"sql": sql, **({"limit": limit} if limit else {})}
            )
            return answered

    result = remote.run(main(), words={("body", "sql"): "SQL", ("body", "limit"): "--limit"})
    names = [column["name"] for column in result["columns"]]
    if as_json:
        echo_json([dict(zip(names, row, strict=True)) for row in result["rows"]])
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(result["rows"])
    else:
        print_table(names, result["rows"])
    if result["truncated"]:
        typer.echo(f"note: truncated to {len(result['rows'])} rows (--limit, VAI_QUERY_ROW_CAP)", err=True)


ConnectionArgument = Annotated[str, typer.Argument(help="An id (conn_…), a slug, or provider:<provider>.")]
CONNECTION_WORDS: Words = {
    ("body", "config"): "--config",
    ("body", "secrets"): "--secret",
    ("body", "slug"): "--slug",
    ("body", "provider"): "PROVIDER",
    ("body", "name"): "NAME",
    ("body", "description"): "--description",
}


@connections_app.command("list")
def connections_list(
    provider: Annotated[str | None, typer.Option("--provider", help="Only this provider's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    as_json: JsonListOption = False,
) -> None:
    """The organization's connections (never their secrets: only which secret fields are set)."""

    async def main() -> list[dict[str, Any]]:
        async with connect() as server:
            page = await server.request("GET", "/connections", params={"provider": provider, "limit": limit})
        items: list[dict[str, Any]] = page["items"]
        return items

    rows = remote.run(main(), words={("query", "provider"): "--provider"})
    if as_json:
        echo_json(rows)
        return
    print_table(
        ("id", "slug", "provider", "name", "default", "secrets set"),
        [
            (
                r["id"],
                r["slug"],
                r["provider"],
                r["name"],
                "yes" if r["is_default"] else "",
                ", ".join(r["secret_fields_set"]),
            )
            for r in rows
        ],
    )


@connections_app.command("create")
def connections_create(
    provider: Annotated[str, typer.Argument(help="A provider (GET /api/v1/connections/providers), e.g. sqlite.")],
    name: Annotated[str, typer.Argument(help="A name for people.")],
    slug: Annotated[str | None, typer.Option("--slug", help="Reference it as slug:<slug>.")] = None,
    config: Annotated[list[str] | None, typer.Option("--config", "-c", help="k=v of the provider's config.")] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option("--secret", "-s", help="k=v of its secrets; k=@file reads the value from a file."),
    ] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    default: Annotated[bool, typer.Option("--default", help="The organization's default for this provider.")] = False,
    as_json: JsonObjectOption = False,
) -> None:
    """Create a connection; its secrets are encrypted by the server and never shown again (admins)."""
    body = {
        "provider": provider,
        "name": name,
        "slug": slug,
        "description": description,
        "config": parse_pairs(config, "--config"),
        "secrets": parse_pairs(secret, "--secret", files=True),
        "is_default": default,
    }

    async def main() -> dict[str, Any]:
        async with connect() as server:
            created: dict[str, Any] = await server.request("POST", "/connections", json_body=body)
            return created

    created = remote.run(main(), words=CONNECTION_WORDS)
    if as_json:
        echo_json(created)
    else:
        typer.echo(f"created {created['id']}" + (f" (slug:{created['slug']})" if created["slug"] else ""))


@connections_app.command("test")
def connections_test(ref: ConnectionArgument, as_json: JsonObjectOption = False) -> None:
    """Check that the server can reach it (databases: SELECT 1; HTTP APIs: one GET); exit 1 if it cannot."""

    async def main() -> dict[str, Any]:
        async with connect() as server:
            result: dict[str, Any] = await server.request("POST", f"/connections/{segment(ref_of(ref, 'conn'))}/test")
            return result

    result = remote.run(main())
    if as_json:
        echo_json(result)
    elif result["ok"]:
        typer.echo(f"ok ({result['latency_ms']:.1f} ms)")
    else:
        typer.echo(f"failed: {result['error']}", err=True)
    if not result["ok"]:
        raise typer.Exit(code=EXIT_FAILED)
