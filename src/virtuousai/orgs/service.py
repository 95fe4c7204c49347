"""Organizations and access: creating tenants and their owners, issuing and checking API keys."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.errors import NotFound, Unauthorized, ValidationFailed
from virtuousai.ids import new_id
from virtuousai.orgs.repository import AccessLookup, ApiKeyRepository, MembershipRepository
from virtuousai.orgs.tables import ApiKey, Membership, Organization, Role, User
from virtuousai.store.drivers import Wakeup, driver_for_session
from virtuousai.store.pagination import PageRequest, PageResult
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

# vai_<12-char lookup prefix>_<43-char secret>: the prefix is an index, the whole string is the credential.
KEY_PATTERN = re.compile(r"^vai_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
# last_used_at is a hint, not an audit log: write it at most this often so reads do not become writes.
LAST_USED_RESOLUTION = timedelta(seconds=60)
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a user acting in one organization through one API key."""

    tenant: TenantContext
    role: Role
    user: User
    organization: Organization
    api_key: ApiKey


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str


@dataclass(frozen=True)
class CreatedOrganization:
    organization: Organization
    owner: User
    membership: Membership
    key: IssuedKey


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new ``(prefix, plaintext)`` pair."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    prefix = "".join(secrets.choice(alphabet) for _ in range(12))
    return prefix, f"vai_{prefix}_{secrets.token_urlsafe(32)}"


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_PATTERN.match(email):
        raise ValidationFailed.at(["email"], f"not an email address: {email!r}")
    return email


def presented_key(authorization: str | None) -> str:
    """The API key in an ``Authorization`` header; a 401 naming the case if there is none or it is not one."""
    if not authorization:
        raise Unauthorized("missing Authorization header", reason="missing")
    scheme, _, raw = authorization.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or KEY_PATTERN.match(raw) is None:
        raise Unauthorized("malformed credentials: expected 'Authorization: Bearer vai_…'", reason="malformed")
    return raw


async def authenticate(session: AsyncSession, authorization: str | None) -> Principal:
    """Check an ``Authorization`` header. Every failure is a 401 whose detail names the case, never the key."""
    raw = presented_key(authorization)
    lookup = AccessLookup(session)
    found = await lookup.key_by_prefix(raw.split("_", 2)[1])  # vai_<prefix>_<secret>
    if found is None or not hmac.compare_digest(found[0].key_hash, hash_key(raw)):
        raise Unauthorized("unknown API key", reason="unknown")
    key, membership, user, org = found
    now = utcnow()
    if key.revoked_at is not None:
        raise Unauthorized("API key revoked", reason="revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("API key expired", reason="expired")
    role = min(key.role, membership.role, key=lambda r: r.rank)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        await lookup.touch_key(key.id, now)
        key.last_used_at = now
    tenant = TenantContext(tenant_id=org.id, user_id=user.id, role=role.value, api_key_id=key.id)
    return Principal(tenant=tenant, role=role, user=user, organization=org, api_key=key)


def _issue_key(membership: Membership, *, name: str, role: Role, expires_at: datetime | None) -> IssuedKey:
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValidationFailed.at(["body", "expires_at"], "must carry a timezone (e.g. 2030-01-01T00:00:00Z)")
    prefix, plaintext = generate_key()
    key = ApiKey(
        id=new_id("key"),
        tenant_id=membership.tenant_id,
        membership_id=membership.id,
        name=name,
        prefix=prefix,
        key_hash=hash_key(plaintext),
        role=role,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    return IssuedKey(api_key=key, plaintext=plaintext)


async def create_organization(
    session: AsyncSession, name: str, owner_email: str, owner_name: str = "", timezone: str = "UTC"
) -> CreatedOrganization:
    """A new tenant with its owner (an existing user is reused by email) and the owner's first API key."""
    name = name.strip()
    if not name:
        raise ValidationFailed.at(["name"], "organization name must not be empty")
    email = normalize_email(owner_email)
    lookup = AccessLookup(session)
    user = await lookup.user_by_email(email)
    if user is None:
        user = User(
            id=new_id("usr"), email=email, name=owner_name or email.split("@")[0], timezone=timezone, preferences={}
        )
        session.add(user)
    org = Organization(id=new_id("org"), name=name, settings={})
    session.add(org)
    await session.flush()
    membership = Membership(id=new_id("mem"), tenant_id=org.id, user_id=user.id, role=Role.owner)
    session.add(membership)
    await session.flush()
    issued = _issue_key(membership, name="owner key", role=Role.owner, expires_at=None)
    session.add(issued.api_key)
    await session.commit()
    return CreatedOrganization(organization=org, owner=user, membership=membership, key=issued)


class ApiKeyService:
    def __init__(self, session: AsyncSession, tenant: TenantContext) -> None:
        self.session = session
        self.keys = ApiKeyRepository(session, tenant)
        self.memberships = MembershipRepository(session, tenant)

    async def create_for_user(
        self,
        user_id: str,
        *,
        name: str = "",
        role: Role | None = None,
        expires_at: datetime | None = None,
        acting_role: Role | None = None,
    ) -> IssuedKey:
        """``acting_role`` is the effective role of the key making this request (None for the CLI, which acts
        as the machine's administrator): a new key never exceeds it, or an admin-limited key could mint an
        owner key for its owner."""
        membership = await self.memberships.get_by_user(user_id)
        if membership is None:
            raise NotFound("no membership for that user in this organization")
        limit = membership.role if acting_role is None else min(membership.role, acting_role, key=lambda r: r.rank)
        ceiling = role or limit
        if not limit.at_least(ceiling):
            raise ValidationFailed.at(["body", "role"], f"a key cannot exceed the role that creates it ({limit.value})")
        if expires_at is not None and expires_at.tzinfo is None:
            # Checked before comparing with the clock: comparing naive with aware raises TypeError (a 500).
            raise ValidationFailed.at(["body", "expires_at"], "must carry a timezone (e.g. 2030-01-01T00:00:00Z)")
        if expires_at is not None and expires_at <= utcnow():
            raise ValidationFailed.at(["body", "expires_at"], "must be in the future")
        issued = _issue_key(membership, name=name, role=ceiling, expires_at=expires_at)
        self.keys.add(issued.api_key)
        await self.session.commit()
        return issued

    async def list(self, page: PageRequest) -> PageResult[ApiKey]:
        return await self.keys.paginate(self.keys.base_query(), page)

    async def get(self, key_id: str) -> ApiKey:
        key = await self.keys.get(key_id)
        if key is None:
            raise NotFound(f"API key {key_id} not found")
        return key

    async def revoke(self, key_id: str) -> ApiKey:
        key = await self.get(key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
            # Processes that verified this key a moment ago forget it (orgs/verified_keys.py): this one as the
            # commit returns, the others when the wake-up reaches them.
            access = Wakeup("access", tenant_id=key.tenant_id)
            await driver_for_session(self.session).publish(self.session, access)
            await self.session.commit()
        return key
