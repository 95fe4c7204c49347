"""``vai keys …``: the key-encryption keys that protect connection secrets (status, rotate, rewrap, retire).

Rotation needs a provider with versions we manage: ``VAI_KEY_PROVIDER=keyring`` (its version 1 is the master key
file's key, so switching loses nothing). Runbook: rotate → rewrap → status → retire <old version>.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from virtuousai.cli.common import open_sessions, run
from virtuousai.cli.output import EXIT_REFUSED, JsonObjectOption, echo_json, print_table
from virtuousai.config import Settings
from virtuousai.connections.tables import SEALED_CONNECTIONS
from virtuousai.crypto.envelope import EnvelopeCipher
from virtuousai.crypto.kek import KeyProvider, KeyUnavailable, RotatableKeyProvider
from virtuousai.crypto.keyfile import InsecureKeyFile
from virtuousai.crypto.providers import build_key_provider
from virtuousai.crypto.rotation import SealedTable, count_by_version, retire_version, rewrap_all

keys_app = typer.Typer(
    help="Encryption keys of connection secrets: status, rotate, rewrap, retire.",
    no_args_is_help=True,
    add_completion=False,
)

# Every table that stores sealed secrets; a primitive that seals more adds its table here.
SEALED_TABLES: tuple[SealedTable, ...] = (SEALED_CONNECTIONS,)


def _provider(settings: Settings) -> KeyProvider:
    try:
        return build_key_provider(settings)
    except (KeyUnavailable, InsecureKeyFile) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=EXIT_REFUSED) from exc


def _rotatable(settings: Settings) -> RotatableKeyProvider:
    provider = _provider(settings)
    if not isinstance(provider, RotatableKeyProvider):
        typer.echo(
            f"error: the {provider.name} key provider holds a single key. Set VAI_KEY_PROVIDER=keyring to use "
            "versioned keys (its version 1 is the current master key file), then run this again.",
            err=True,
        )
        raise typer.Exit(code=EXIT_REFUSED)
    return provider


def _run(coro: Any) -> Any:
    try:
        return run(coro)
    except (KeyUnavailable, InsecureKeyFile) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=EXIT_REFUSED) from exc


@keys_app.command("status")
def keys_status(as_json: JsonObjectOption = False) -> None:
    """The provider, its key versions and how many records each version protects."""
    settings = Settings()
    provider = _provider(settings)

    async def run() -> dict[str, Any]:
        async with open_sessions(settings) as sessions, sessions() as session:
            counts = await count_by_version(session, SEALED_TABLES)
        active = await provider.active_version()
        versions: list[dict[str, Any]] = []
        if isinstance(provider, RotatableKeyProvider):
            for info in await provider.versions():
                versions.append(
                    {
                        "version": info.version,
                        "created_at": info.created_at,
                        "retired_at": info.retired_at,
                        "records": counts.get(info.version, 0),
                    }
                )
        else:
            versions.append(
                {"version": active, "created_at": None, "retired_at": None, "records": counts.get(active, 0)}
            )
        known = {v["version"] for v in versions}
        # Records under a version the provider does not hold cannot be decrypted: show them, do not hide them.
        versions += [
            {"version": v, "created_at": None, "retired_at": None, "records": n, "missing": True}
            for v, n in counts.items()
            if v not in known
        ]
        return {"provider": provider.name, "active_version": active, "versions": versions}

    status = _run(run())
    if as_json:
        echo_json(status)
        return
    rows = []
    for v in status["versions"]:
        state = (
            "missing"
            if v.get("missing")
            else "retired"
            if v["retired_at"]
            else "active"
            if v["version"] == status["active_version"]
            else "old"
        )
        rows.append((v["version"], state, v["records"], v["created_at"], v["retired_at"]))
    print_table(
        ("version", "state", "records", "created", "retired"), rows, title=f"key provider: {status['provider']}"
    )


@keys_app.command("rotate")
def keys_rotate(as_json: JsonObjectOption = False) -> None:
    """Add a key version; new secrets are sealed under it. Run `vai keys rewrap` next."""
    provider = _rotatable(Settings())
    info = _run(provider.add_version())
    if as_json:
        echo_json({"version": info.version, "created_at": info.created_at})
    else:
        typer.echo(f"added key version {info.version}; now run: vai keys rewrap")


@keys_app.command("rewrap")
def keys_rewrap(
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000)] = 200,
    as_json: JsonObjectOption = False,
) -> None:
    """Re-wrap every data key under the active version (secret ciphertexts are not touched)."""
    settings = Settings()
    cipher = EnvelopeCipher(_provider(settings))

    async def run() -> Any:
        async with open_sessions(settings) as sessions:
            return await rewrap_all(sessions, cipher, SEALED_TABLES, batch_size=batch_size)

    report = _run(run())
    if as_json:
        echo_json(
            {
                "target_version": report.target_version,
                "rewrapped": report.rewrapped,
                "already_current": report.already_current,
                "failed": report.failed,
            }
        )
    else:
        typer.echo(f"re-wrapped {report.rewrapped} record(s) under key version {report.target_version}")
        for record_id, reason in report.failed.items():
            typer.echo(f"  failed {record_id}: {reason}", err=True)
    if report.failed:
        raise typer.Exit(code=1)


@keys_app.command("retire")
def keys_retire(
    version: Annotated[int, typer.Argument(min=1, help="The key version to retire.")],
    force: Annotated[bool, typer.Option("--force", help="Retire even though records still use it.")] = False,
) -> None:
    """Retire a key version: it decrypts nothing from now on. Refused while records use it (unless --force)."""
    settings = Settings()
    provider = _rotatable(settings)

    async def run() -> Any:
        async with open_sessions(settings) as sessions:
            return await retire_version(sessions, provider, SEALED_TABLES, version, force=force)

    info = _run(run())
    typer.echo(f"key version {info.version} retired at {info.retired_at}")
