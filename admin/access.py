"""Who may do what: API tokens with roles, and the audit log of what they did.

Roles, each including the rights of the ones after it:

- ``admin``: channel credentials, policies, tokens, shopper data deletion, the audit log;
- ``agent``: the human queue, conversations, replies, transcript exports;
- ``viewer``: read-only analytics.

A token is ``sbt_<id>_<secret>``; only its SHA-256 is stored (the secret is 256
random bits, so a plain hash is enough: nothing to guess). Tokens are made and
revoked with ``python -m admin tokens ...`` (or by an admin through the
API) and shown once. ``SHOPBOT_AGENT_TOKEN``, from before roles, still works as
an agent token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text, select, update
from sqlalchemy.engine import Engine

from shopbot.db import metadata
from shopbot.errors import Refused

ROLES = ("viewer", "agent", "admin")
TOKEN_RE = re.compile(r"^sbt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
NAME_RE = re.compile(r"^[\w.@:+ -]{1,120}$")
LAST_USED_EVERY_S = 60

tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("role", String(20), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("role", String(20)),
    Column("action", String(80), nullable=False),
    Column("target", String(300)),
    Column("outcome", String(40), nullable=False),
    Column("source", String(200)),
    Column("detail", Text),
    Index("ix_audit_log_at", "at"),
)


class AccessError(Refused):
    """A token or role change that cannot be made."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id and name, and its role."""

    id: str
    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        return f"{self.name} ({self.id})"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, engine: Engine, legacy_agent_token: str | None = None):
        self.engine = engine
        self.legacy = legacy_agent_token or None

    def create(self, name: str, role: str, created_by: str) -> tuple[dict[str, Any], str]:
        """A new token; returns (its listing, the token itself, which is never shown again)."""
        if role not in ROLES:
            raise AccessError(f"role must be one of {', '.join(ROLES)}")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise AccessError("name must be 1-120 letters, digits, spaces or . _ @ : + -")
        tid = secrets.token_hex(6)
        token = f"sbt_{tid}_{secrets.token_urlsafe(32)}"
        row = {
            "id": tid,
            "name": name,
            "role": role,
            "token_hash": _hash(token),
            "created_at": time.time(),
            "created_by": created_by[:200],
        }
        with self.engine.begin() as conn:
            conn.execute(tokens.insert().values(**row))
        return self._public(row), token

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row.get(k) for k in ("id", "name", "role", "created_at", "created_by", "revoked_at", "last_used_at")}

    def listing(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tokens).order_by(tokens.c.created_at)).all()
        return [self._public(dict(r._mapping)) for r in rows]

    def revoke(self, tid: str) -> dict[str, Any]:
        with self.engine.begin() as conn:
            row = conn.execute(select(tokens).where(tokens.c.id == tid)).first()
            if row is None:
                raise AccessError(f"no token with id {tid!r}", 404)
            if row.revoked_at is None:
                conn.execute(update(tokens).where(tokens.c.id == tid).values(revoked_at=time.time()))
        return self._public({**row._mapping, "revoked_at": row.revoked_at or time.time()})

    def verify(self, token: str) -> Principal | None:
        """The principal a presented token stands for; None for anything else (unknown, revoked, malformed)."""
        if self.legacy and hmac.compare_digest(token.encode(), self.legacy.encode()):
            return Principal("env", "SHOPBOT_AGENT_TOKEN", "agent")
        m = TOKEN_RE.match(token)
        if not m:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens).where(tokens.c.id == m.group(1))).first()
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, _hash(token)):
            return None
        now = time.time()
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY_S:
            with self.engine.begin() as conn:
                conn.execute(update(tokens).where(tokens.c.id == row.id).values(last_used_at=now))
        return Principal(row.id, row.name, row.role)


class AuditLog:
    def __init__(self, engine: Engine):
        self.engine = engine

    def record(
        self,
        actor: str,
        role: str | None,
        action: str,
        target: str | None = None,
        outcome: str = "ok",
        source: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                audit_log.insert().values(
                    at=time.time(),
                    actor=actor[:200],
                    role=role,
                    action=action[:80],
                    target=(target or "")[:300] or None,
                    outcome=outcome[:40],
                    source=(source or "")[:200] or None,
                    detail=json.dumps(detail, ensure_ascii=False) if detail else None,
                )
            )

    def entries(self, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
        q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if before_id is not None:
            q = q.where(audit_log.c.id < before_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        out = []
        for r in rows:
            e = dict(r._mapping)
            e["detail"] = json.loads(e["detail"]) if e["detail"] else None
            out.append(e)
        return out
