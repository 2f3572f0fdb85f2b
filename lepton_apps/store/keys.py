"""API keys of the service: a token is ``lk_<key id>_<secret>`` with 32 random bytes of secret; only the
SHA-256 of the secret is stored (a random 256-bit secret needs no slow password hash), compared in constant
time. Each key has a set of domains (or ``*``) and a scope: ``read`` (predict, explain) or ``admin`` (also
reload). :class:`KeysMixin` gives :class:`~lepton_apps.store.Store` its ``create_key``, ``keys``,
``revoke_key`` and ``verify``."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
from typing import Sequence

from lepton_apps.errors import ConfigError

from .times import _now

SCOPES = ("read", "admin")
TOKEN_PREFIX = "lk_"


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """A stored API key (never its secret)."""

    id: str
    name: str
    domains: tuple[str, ...]
    scope: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, domain: str, scope: str = "read") -> bool:
        """True when the key may use ``domain`` with ``scope`` (admin includes read)."""
        in_domain = "*" in self.domains or domain in self.domains
        return self.active and in_domain and (scope == "read" or self.scope == "admin")


class KeysMixin:
    """The API-key methods of :class:`~lepton_apps.store.Store` (uses its ``engine`` and tables ``t``)."""

    def create_key(self, name: str, domains: Sequence[str], scope: str = "read") -> tuple[ApiKey, str]:
        """Create a key; return it and its token (shown once, never stored). Raises ConfigError for a used
        name, an unknown scope or no domains."""
        import sqlalchemy as sa

        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}", where="keys create --scope", fix=f"use one of {SCOPES}")
        domains = tuple(sorted({d.strip() for d in domains if d.strip()}))
        if not domains:
            raise ConfigError("a key needs at least one domain", where="keys create --domains",
                              fix="e.g. --domains medical,finance, or --domains '*' for all")
        if not name or len(name) > 100:
            raise ConfigError(f"invalid key name {name!r}", where="keys create NAME", fix="use 1-100 characters")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = _now()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(self.t.api_keys.c.id).where(self.t.api_keys.c.name == name)).first():
                raise ConfigError(f"a key named {name!r} exists already", where="keys create NAME",
                                  fix="choose another name, or revoke the old key first (names stay taken)")
            conn.execute(self.t.api_keys.insert().values(
                id=key_id, name=name, secret_sha256=_hash(secret), domains=",".join(domains), scope=scope,
                created_at=now, revoked_at=None))
        return ApiKey(key_id, name, domains, scope, now, None), f"{TOKEN_PREFIX}{key_id}_{secret}"

    def keys(self) -> list[ApiKey]:
        """Return every key (active and revoked), oldest first."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self.t.api_keys).order_by(self.t.api_keys.c.created_at)).mappings().all()
        return [_key(r) for r in rows]

    def revoke_key(self, name: str) -> ApiKey:
        """Revoke the key called ``name``; return it. Raises ConfigError for an unknown name."""
        import sqlalchemy as sa

        keys = self.t.api_keys
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(keys).where(keys.c.name == name)).mappings().first()
            if row is None:
                raise ConfigError(f"no key named {name!r}", where="keys revoke NAME",
                                  fix="see the names with 'lepton-apps keys list'")
            if row["revoked_at"] is None:
                conn.execute(keys.update().where(keys.c.id == row["id"]).values(revoked_at=_now()))
            row = conn.execute(sa.select(keys).where(keys.c.id == row["id"])).mappings().first()
        return _key(row)

    def verify(self, token: str | None) -> ApiKey | None:
        """Return the active key a token belongs to, or None (malformed, unknown, wrong secret or revoked)."""
        import sqlalchemy as sa

        if not token or not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            return None
        key_id, _, secret = token[len(TOKEN_PREFIX):].partition("_")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.t.api_keys).where(self.t.api_keys.c.id == key_id)).mappings().first()
        if row is None or not hmac.compare_digest(row["secret_sha256"], _hash(secret)):
            return None
        key = _key(row)
        return key if key.active else None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row) -> ApiKey:
    return ApiKey(row["id"], row["name"], tuple(row["domains"].split(",")), row["scope"], row["created_at"],
                  row["revoked_at"])
