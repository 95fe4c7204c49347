"""Connections: validation against the provider catalog, sealing secrets, references, and THE resolver.

Every consumer of credentials (actions, automations, agents) calls ``resolve_connection``; routes use the
non-decrypting ``ConnectionService.get_by_ref``. A reference is an id (``conn_…``), ``slug:<slug>`` or
``provider:<provider>`` (the organization's default connection for that provider).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.connections.models import ConnectionCreate, ConnectionTestResult, ConnectionUpdate
from virtuousai.connections.providers import (
    ProviderSpec,
    cross_check,
    get_provider,
    validate_config,
    validate_secrets,
)
from virtuousai.connections.repository import ConnectionRepository
from virtuousai.connections.tables import Connection
from virtuousai.connections.testing import check_connectivity
from virtuousai.crypto.envelope import DecryptionFailed, EnvelopeCipher, SealBinding
from virtuousai.crypto.kek import KeyProvider, KeyUnavailable
from virtuousai.errors import Conflict, FieldError, NotFound, VaiError, ValidationFailed
from virtuousai.ids import new_id
from virtuousai.net import DestinationPolicy
from virtuousai.runtime.context import ResolvedConnection
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext

log = logging.getLogger(__name__)

# ---- "who references this connection": automations and agents register a check here --------------------------

ReferenceCheck = Callable[[AsyncSession, TenantContext, Connection], Awaitable[Sequence[str]]]
_REFERENCE_CHECKS: dict[str, ReferenceCheck] = {}


def register_reference_check(name: str, check: ReferenceCheck) -> None:
    """Register ``check(session, tenant, connection) -> ["automation aut_… (nightly-sync)", …]``.

    Deleting a connection is refused (409) while any check returns a reference. Registering the same name again
    replaces the check, so module reloads are harmless.
    """
    _REFERENCE_CHECKS[name] = check


def unregister_reference_check(name: str) -> None:
    _REFERENCE_CHECKS.pop(name, None)


async def find_references(session: AsyncSession, tenant: TenantContext, connection: Connection) -> list[str]:
    found: list[str] = []
    for check in _REFERENCE_CHECKS.values():
        found.extend(await check(session, tenant, connection))
    return found


# ---- references ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionRef:
    by: Literal["id", "slug", "provider"]
    value: str


def parse_ref(ref: str) -> ConnectionRef:
    for prefix in ("slug", "provider"):
        if ref.startswith(prefix + ":"):
            return ConnectionRef(prefix, ref[len(prefix) + 1 :])
    return ConnectionRef("id", ref)


class SecretsUnavailable(VaiError):
    """The connection exists but its secrets cannot be opened (retired key version, wrong key, tampered row)."""

    status, type_slug, title = 409, "secrets-unavailable", "Secrets unavailable"


def binding_for(connection: Connection) -> SealBinding:
    return SealBinding(purpose="connection", tenant_id=connection.tenant_id, record_id=connection.id)


def _summary(errors: Sequence[FieldError]) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])


class ConnectionService:
    def __init__(self, session: AsyncSession, tenant: TenantContext, keys: KeyProvider | None = None) -> None:
        self.session = session
        self.tenant = tenant
        self.connections = ConnectionRepository(session, tenant)
        self._keys = keys

    @property
    def cipher(self) -> EnvelopeCipher:
        if self._keys is None:
            raise RuntimeError("ConnectionService needs a KeyProvider to seal or open secrets")
        return EnvelopeCipher(self._keys)

    # ---- reads (never decrypt) --------------------------------------------------------------------------------

    async def list(self, page: PageRequest, *, provider: str | None = None) -> PageResult[Connection]:
        return await self.connections.paginate(self.connections.list_query(provider), page)

    async def get_by_ref(self, ref: str) -> Connection:
        parsed = parse_ref(ref)
        if parsed.by == "slug":
            found = await self.connections.get_by_slug(parsed.value)
        elif parsed.by == "provider":
            found = await self.connections.get_default(parsed.value)
        else:
            found = await self.connections.get(parsed.value)
        if found is None:
            raise NotFound(f"connection {ref!r} not found")
        return found

    async def ref_error(self, ref: str, loc: Sequence[str | int]) -> FieldError | None:
        """None when ``ref`` names a connection of this organization, else the field error at ``loc``: what a run's
        inputs (or an automation's step) name is checked when it is made, not found missing when it executes."""
        try:
            await self.get_by_ref(ref)
        except VaiError:
            return FieldError(loc, f"unknown connection {ref!r}", "unknown_connection")
        return None

    # ---- writes -----------------------------------------------------------------------------------------------

    async def create(self, body: ConnectionCreate) -> Connection:
        spec = get_provider(body.provider, loc=["body", "provider"])
        config, errors = validate_config(spec, body.config)
        secrets, secret_errors = validate_secrets(spec, body.secrets)
        errors += secret_errors
        if not errors:
            errors += cross_check(spec, config, secrets)
        if errors:
            raise ValidationFailed(_summary(errors), errors=errors)
        await self._check_unique(spec, slug=body.slug, is_default=body.is_default, other_than=None)
        connection = Connection(
            id=new_id("conn"),
            provider=spec.slug,
            name=body.name,
            slug=body.slug,
            description=body.description,
            config=config,
            is_default=body.is_default,
        )
        self.connections.add(connection)  # sets tenant_id, which the seal binds
        connection.sealed = await self.cipher.seal(binding_for(connection), secrets)
        await self._commit()
        log.info("connection %s created (provider %s)", connection.id, connection.provider)
        return connection

    async def update(self, ref: str, body: ConnectionUpdate) -> Connection:
        connection = await self.get_by_ref(ref)
        spec = get_provider(connection.provider, loc=["body", "provider"])
        given = body.model_fields_set
        config, errors = (
            validate_config(spec, body.config) if body.config is not None else (dict(connection.config), [])
        )
        secrets: dict[str, str] | None = None
        if body.secrets is not None:
            secrets, secret_errors = validate_secrets(spec, body.secrets)
            errors += secret_errors
        if not errors:
            names = secrets if secrets is not None else dict.fromkeys(connection.secret_fields_set, "set")
            errors += cross_check(spec, config, names)
        if errors:
            raise ValidationFailed(_summary(errors), errors=errors)
        new_slug = body.slug if "slug" in given else connection.slug
        new_default = body.is_default if body.is_default is not None else connection.is_default
        await self._check_unique(spec, slug=new_slug, is_default=new_default, other_than=connection.id)
        connection.slug, connection.is_default, connection.config = new_slug, new_default, config
        if body.name is not None:
            connection.name = body.name
        if body.description is not None:
            connection.description = body.description
        if secrets is not None:
            # Replaced, never merged: a fresh data key seals exactly the new set.
            connection.sealed = await self.cipher.seal(binding_for(connection), secrets)
        await self._commit()
        return connection

    async def delete(self, ref: str) -> None:
        connection = await self.get_by_ref(ref)
        references = await find_references(self.session, self.tenant, connection)
        if references:
            raise Conflict(
                f"connection {connection.id} is still referenced by {', '.join(references[:10])}",
                references=references,
            )
        await self.connections.delete(connection)
        await self.session.commit()

    async def _check_unique(
        self, spec: ProviderSpec, *, slug: str | None, is_default: bool, other_than: str | None
    ) -> None:
        errors: list[FieldError] = []
        if slug is not None and await self.connections.slug_taken(slug, other_than=other_than):
            errors.append(FieldError(["body", "slug"], f"slug {slug!r} is already used", "unique"))
        if is_default and await self.connections.default_taken(spec.slug, other_than=other_than):
            errors.append(
                FieldError(["body", "is_default"], f"this organization already has a default {spec.slug}", "unique")
            )
        if errors:
            raise Conflict(_summary(errors), errors=errors)

    async def _commit(self) -> None:
        """Commit; a unique index that a concurrent request won first becomes the same 409 as the pre-check."""
        try:
            await self.session.commit()
        except sa.exc.IntegrityError as exc:
            await self.session.rollback()
            text = str(exc.orig)
            loc = ["body", "slug"] if "slug" in text else ["body", "is_default"]
            raise Conflict("slug or default already used", errors=[FieldError(loc, "already used", "unique")]) from None

    # ---- decrypting -------------------------------------------------------------------------------------------

    async def resolve(self, ref: str) -> ResolvedConnection:
        connection = await self.get_by_ref(ref)
        try:
            secrets = await self.cipher.open(binding_for(connection), connection.sealed)
        except (DecryptionFailed, KeyUnavailable) as exc:
            raise SecretsUnavailable(str(exc)) from None
        return ResolvedConnection(
            id=connection.id,
            slug=connection.slug,
            provider=connection.provider,
            config=dict(connection.config),
            secrets=secrets,
        )

    async def test(self, ref: str, *, policy: DestinationPolicy | None = None) -> ConnectionTestResult:
        """Check connectivity (``connections/testing.py``); ``policy`` says where HTTP probes may go."""
        return await check_connectivity(await self.resolve(ref), policy=policy)


async def resolve_connection(
    session: AsyncSession, tenant: TenantContext, ref: str, keys: KeyProvider
) -> ResolvedConnection:
    """THE resolver: ``ref`` (id, ``slug:…`` or ``provider:…``) in ``tenant``, secrets decrypted.

    Raises ``NotFound`` (also for another organization's connection) and ``SecretsUnavailable``."""
    return await ConnectionService(session, tenant, keys).resolve(ref)
