"""``vai org …`` and ``vai key …``: administration from the machine that holds the database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from virtuousai.cli.common import OrgOption, open_org, open_sessions, run
from virtuousai.cli.output import JsonListOption, JsonObjectOption, cell, echo_json, print_table
from virtuousai.config import Settings
from virtuousai.errors import NotFound
from virtuousai.orgs.repository import AccessLookup
from virtuousai.orgs.service import ApiKeyService, create_organization, normalize_email
from virtuousai.orgs.tables import Role
from virtuousai.store.pagination import MAX_LIMIT, PageRequest

org_app = typer.Typer(help="Organizations (tenants).", no_args_is_help=True, add_completion=False)
key_app = typer.Typer(help="API keys.", no_args_is_help=True, add_completion=False)


@org_app.command("create")
def org_create(
    name: Annotated[str, typer.Argument(help="Organization name.")],
    owner_email: Annotated[str, typer.Option("--owner-email", help="The owner's email.")],
    owner_name: Annotated[str, typer.Option("--owner-name")] = "",
    as_json: JsonObjectOption = False,
) -> None:
    """Create an organization with its owner, and print the owner's API key (shown once)."""

    async def main() -> None:
        async with open_sessions(Settings()) as sessions, sessions() as session:
            created = await create_organization(session, name, owner_email, owner_name)
        if as_json:
            echo_json(
                {"org_id": created.organization.id, "user_id": created.owner.id, "api_key": created.key.plaintext}
            )
        else:
            typer.echo(f"organization: {created.organization.id}")
            typer.echo(f"owner:        {created.owner.email} ({created.owner.id})")
            typer.echo(f"api key:      {created.key.plaintext}")
            typer.echo("The key is shown once; store it now.")

    run(main())


@org_app.command("list")
def org_list(as_json: JsonListOption = False) -> None:
    """List organizations (ids and names) in this database."""

    async def main() -> None:
        async with open_sessions(Settings()) as sessions, sessions() as session:
            orgs = await AccessLookup(session).organizations()
        if as_json:
            echo_json([{"id": o.id, "name": o.name, "created_at": o.created_at} for o in orgs])
            return
        print_table(("id", "name", "created"), [(o.id, o.name, o.created_at) for o in orgs])

    run(main())


@key_app.command("create")
def key_create(
    org: OrgOption,
    email: Annotated[str, typer.Option("--email", help="The member the key acts as.")],
    name: Annotated[str, typer.Option("--name")] = "",
    role: Annotated[Role | None, typer.Option("--role", help="Ceiling for the key.")] = None,
    expires_at: Annotated[datetime | None, typer.Option("--expires-at", help="UTC expiry.")] = None,
    as_json: JsonObjectOption = False,
) -> None:
    """Issue an API key for a member of an organization."""

    async def main() -> None:
        async with open_org(org) as (sessions, tenant), sessions() as session:
            user = await AccessLookup(session).user_by_email(normalize_email(email))
            if user is None:
                raise NotFound(f"no user {email}")
            expiry = expires_at.replace(tzinfo=expires_at.tzinfo or UTC) if expires_at else None
            issued = await ApiKeyService(session, tenant).create_for_user(
                user.id, name=name, role=role, expires_at=expiry
            )
        if as_json:
            echo_json({"id": issued.api_key.id, "api_key": issued.plaintext, "role": issued.api_key.role.value})
        else:
            typer.echo(f"key id:  {issued.api_key.id}")
            typer.echo(f"api key: {issued.plaintext}")

    run(main(), words={("body", "expires_at"): "--expires-at", ("body", "role"): "--role"})


@key_app.command("list")
def key_list(org: OrgOption, as_json: JsonListOption = False) -> None:
    """List an organization's API keys (never the keys themselves)."""

    async def main() -> None:
        async with open_org(org) as (sessions, tenant), sessions() as session:
            page = await ApiKeyService(session, tenant).list(PageRequest(limit=MAX_LIMIT))
        rows = [
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "role": k.role.value,
                "created_at": k.created_at,
                "last_used_at": k.last_used_at,
                "expires_at": k.expires_at,
                "revoked_at": k.revoked_at,
            }
            for k in page.items
        ]
        if as_json:
            echo_json(rows)
            return
        columns = ("id", "name", "prefix", "role", "last_used_at", "expires_at", "revoked_at")
        print_table(
            ("id", "name", "prefix", "role", "last used", "expires", "revoked"),
            [[r[c] for c in columns] for r in rows],
        )

    run(main())


@key_app.command("revoke")
def key_revoke(key_id: Annotated[str, typer.Argument()], org: OrgOption) -> None:
    """Revoke an API key; requests with it answer 401 from now on (a server on the same SQLite file may trust it
    for up to VAI_AUTH_CACHE_TTL_S more)."""

    async def main() -> None:
        async with open_org(org) as (sessions, tenant), sessions() as session:
            key = await ApiKeyService(session, tenant).revoke(key_id)
        typer.echo(f"revoked {key.id} at {cell(key.revoked_at)}")

    run(main())
