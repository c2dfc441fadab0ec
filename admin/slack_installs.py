"""Slack workspaces connected by "Add to Slack" (OAuth): one row per workspace, its bot token sealed.

Slack's OAuth install (``gateway/slack_routes.py``, bolt's OAuth flow) ends with
``oauth.v2.access`` handing over a bot token for the workspace that installed
the app. It is kept here, in the product's SQL database, sealed with
:mod:`admin.crypto` like the other channel credentials (AES-256-GCM, bound to
the row: ``slack-install/<enterprise>/<team>``); what is not secret (workspace,
bot user, scopes, who installed it) stays readable. Every change bumps the
credentials version in Redis, so gateways and workers pick the token up at
their next request (``admin.credentials.Channels.installations``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, Column, Float, String, Table, Text, delete, or_, select
from sqlalchemy.engine import Engine

from shopbot.db import metadata

from .crypto import SecretBox, SecretKeyError

log = logging.getLogger(__name__)

installations = Table(
    "slack_installations",
    metadata,
    Column("client_id", String(60), primary_key=True),
    Column("enterprise_id", String(40), primary_key=True),  # "" outside Enterprise Grid
    Column("team_id", String(40), primary_key=True),  # "" for an org-wide install
    Column("team_name", String(200)),
    Column("app_id", String(40)),
    Column("bot_id", String(40)),
    Column("bot_user_id", String(40)),
    Column("bot_scopes", Text),
    Column("installer_user_id", String(40)),
    Column("is_enterprise_install", Boolean, nullable=False),
    Column("sealed", Text, nullable=False),  # JSON of the tokens, AES-GCM sealed
    Column("installed_at", Float, nullable=False),
)

SECRET_FIELDS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")


def _where(enterprise_id: str, team_id: str) -> str:
    return f"slack-install/{enterprise_id or '-'}/{team_id or '-'}"


@dataclass(frozen=True)
class SlackInstallation:
    """A workspace that installed the app through OAuth, as processes use it."""

    client_id: str
    enterprise_id: str
    team_id: str
    team_name: str
    bot_token: str = field(repr=False)
    bot_user_id: str = ""
    bot_id: str = ""
    app_id: str = ""
    bot_scopes: str = ""
    installer_user_id: str = ""
    is_enterprise_install: bool = False
    installed_at: float = 0.0
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # every token, for bolt's Installation


class InstallationTable:
    """Read and write ``slack_installations`` (sync: callers in an event loop use a thread)."""

    def __init__(self, engine: Engine, box: SecretBox | None):
        self.engine, self.box = engine, box

    def save(self, values: dict[str, Any]) -> None:
        """Insert or replace the row of one workspace; ``values`` holds bolt's Installation fields."""
        if self.box is None:
            raise RuntimeError("no secret key: a Slack installation's token cannot be stored unsealed")
        ent, team = values.get("enterprise_id") or "", values.get("team_id") or ""
        sealed = self.box.seal(
            json.dumps({k: values[k] for k in SECRET_FIELDS if values.get(k)}), _where(ent, team)
        )  # fmt: skip
        row = {
            "client_id": values.get("client_id") or "",
            "enterprise_id": ent,
            "team_id": team,
            "team_name": (values.get("team_name") or "")[:200],
            "app_id": values.get("app_id") or "",
            "bot_id": values.get("bot_id") or "",
            "bot_user_id": values.get("bot_user_id") or "",
            "bot_scopes": ",".join(values.get("bot_scopes") or ())
            if not isinstance(values.get("bot_scopes"), str)
            else values["bot_scopes"],
            "installer_user_id": values.get("user_id") or "",
            "is_enterprise_install": bool(values.get("is_enterprise_install")),
            "sealed": sealed,
            "installed_at": float(values.get("installed_at") or time.time()),
        }
        with self.engine.begin() as conn:
            conn.execute(self._match(row["client_id"], ent, team, delete(installations)))
            conn.execute(installations.insert().values(**row))

    @staticmethod
    def _match(client_id: str | None, ent: str, team: str, stmt):
        stmt = stmt.where(installations.c.enterprise_id == ent, installations.c.team_id == team)
        return stmt.where(installations.c.client_id == client_id) if client_id is not None else stmt

    def delete(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        client_id: str | None = None,
        app_id: str | None = None,
        bot_user_ids: list[str] | None = None,
    ) -> int:
        """Delete the row of one workspace (``team_id`` "" : the org-wide install of ``enterprise_id``), of
        ``client_id`` when given; of ``app_id`` when given (rows that recorded another app id stay); only
        with one of ``bot_user_ids`` when given (tokens_revoked). Returns how many rows went."""
        with self.engine.begin() as conn:
            stmt = self._match(client_id, enterprise_id or "", team_id or "", delete(installations))
            if app_id:
                stmt = stmt.where(or_(installations.c.app_id == app_id, installations.c.app_id == ""))
            if bot_user_ids is not None:
                stmt = stmt.where(installations.c.bot_user_id.in_(bot_user_ids))
            return conn.execute(stmt).rowcount

    def all(self) -> list[SlackInstallation]:
        """Every installation whose token opens with the keys at hand, newest first."""
        if self.box is None:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(select(installations).order_by(installations.c.installed_at.desc())).mappings().all()
        out = []
        for r in rows:
            try:
                sec = json.loads(self.box.open(r["sealed"], _where(r["enterprise_id"], r["team_id"])))
            except SecretKeyError as exc:
                log.error("the Slack installation of %s cannot be used: %s", r["team_id"] or r["enterprise_id"], exc)
                continue
            out.append(
                SlackInstallation(
                    r["client_id"], r["enterprise_id"], r["team_id"], r["team_name"] or "", sec.get("bot_token", ""),
                    r["bot_user_id"] or "", r["bot_id"] or "", r["app_id"] or "", r["bot_scopes"] or "",
                    r["installer_user_id"] or "", bool(r["is_enterprise_install"]), r["installed_at"], sec,
                )
            )  # fmt: skip
        return out

    def reseal(self) -> int:
        """Re-seal every row with the current key (key rotation); returns how many."""
        assert self.box is not None
        n = 0
        with self.engine.begin() as conn:
            for r in conn.execute(select(installations)).mappings().all():
                if self.box.is_current(r["sealed"]):
                    continue
                where = _where(r["enterprise_id"], r["team_id"])
                conn.execute(
                    self._match(r["client_id"], r["enterprise_id"], r["team_id"], installations.update()).values(
                        sealed=self.box.seal(self.box.open(r["sealed"], where), where)
                    )
                )
                n += 1
        return n
