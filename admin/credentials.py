"""Channel credentials: stored encrypted in SQL, edited by admins, picked up by running processes.

One row per (platform, name): several Telegram bots and Slack workspaces can be
configured at once. What is secret (bot tokens, webhook and signing secrets) is
sealed with :mod:`admin.crypto`; what is not (the agents' channel, the web
widget's allowed origins, an API base URL) stays readable. Listings show only
the last 4 characters of a secret.

Every change bumps a version number in Redis (``sb:config:channels``). Gateways
and workers read that number before they use credentials and reload from SQL
when it moved, so a change takes effect at the next request, with no restart.

The environment's settings (``SHOPBOT_TELEGRAM_BOT_TOKEN``...) still configure
a first start; once a platform has an entry in the store, the store wins for
that platform.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import Column, Float, String, Table, Text, delete, select
from sqlalchemy.engine import Engine

from shopbot.db import metadata
from shopbot.errors import Refused

from .crypto import SecretBox, SecretKeyError
from .slack_installs import InstallationTable, SlackInstallation

log = logging.getLogger(__name__)
# Asks the platform whether credentials work (platform, secrets, settings, Settings) -> {"ok", "detail", ...}:
# each channel adapter has its own (channels.checks); the admin side passes it in, so this base module
# imports no adapter.
Checker = Callable[[str, dict[str, str], dict[str, Any], Any], dict[str, Any]]
VERSION_KEY = "sb:config:channels"
ENV = "environment"

credentials = Table(
    "channel_credentials",
    metadata,
    Column("platform", String(20), primary_key=True),
    Column("name", String(60), primary_key=True),
    Column("settings", Text, nullable=False),
    Column("sealed", Text, nullable=False),
    Column("hints", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(200), nullable=False),
)


class CredentialError(Refused):
    """A change an admin asked for that cannot be made; ``reason`` says why, ``status`` is the HTTP answer."""


NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_URL_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


def _telegram_token(v: str) -> str | None:
    return (
        None if re.fullmatch(r"\d{3,15}:[A-Za-z0-9_-]{8,100}", v) else "looks like 123456:ABC-DEF... (from @BotFather)"
    )


def _webhook_secret(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_-]{1,256}", v) else "is 1-256 of A-Z a-z 0-9 _ - (Telegram's rule)"


def _slack_token(v: str) -> str | None:
    return None if re.fullmatch(r"xox[bp]-[A-Za-z0-9-]{4,250}", v) else "is a bot token, xoxb-..."


def _signing_secret(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_-]{8,200}", v) else "is the app's signing secret (8-200 letters/digits)"


def _slack_channel(v: str) -> str | None:
    return None if re.fullmatch(r"[CG][A-Z0-9]{2,40}", v) else "is a channel id like C0123ABCD"


def _slack_user(v: str) -> str | None:
    return None if re.fullmatch(r"[UW][A-Z0-9]{2,40}", v) else f"{v!r} is not a Slack user id like U0123ABCD"


def _slack_team(v: str) -> str | None:
    return None if re.fullmatch(r"T[A-Z0-9]{2,40}", v) else "is a workspace (team) id like T0123ABCD"


def user_ids(text: str | None) -> tuple[str, ...]:
    """Slack user ids from a comma-separated setting."""
    return tuple(dict.fromkeys(u.strip() for u in (text or "").split(",") if u.strip()))


def _url(v: str) -> str | None:
    return None if _URL_RE.match(v) and len(v) <= 300 else "is an http(s):// URL"


def _origin(v: str) -> str | None:
    p = urlsplit(v)
    ok = p.scheme in ("http", "https") and p.netloc and not p.path and not p.query and not p.fragment
    return None if ok and len(v) <= 200 else f"{v!r} is not an origin like https://shop.example.com"


@dataclass(frozen=True)
class Spec:
    secrets: dict[str, Any]  # field -> validator
    settings: dict[str, Any]
    required: tuple[str, ...]
    generated: tuple[str, ...] = ()  # secrets made up when not given (shown once)


SPECS: dict[str, Spec] = {
    "telegram": Spec(
        {"bot_token": _telegram_token, "webhook_secret": _webhook_secret},
        {"api_base_url": _url},
        ("bot_token",),
        generated=("webhook_secret",),
    ),
    "slack": Spec(
        {"bot_token": _slack_token, "signing_secret": _signing_secret},
        {
            "agent_channel": _slack_channel,
            "api_base_url": _url,
            "desk_agents": _slack_user,
            "team_id": _slack_team,
        },
        ("bot_token", "signing_secret"),
    ),
    "web": Spec({}, {"allowed_origins": _origin}, ("allowed_origins",)),
}


# Settings that hold lists, and what their items are.
LIST_SETTINGS = {"allowed_origins": "origins", "desk_agents": "Slack user ids"}


def hint(value: str) -> str:
    """What a listing shows of a secret: its last 4 characters (nothing of a short one)."""
    return "…" + value[-4:] if len(value) >= 12 else "…"


# -- what running processes use -----------------------------------------------------------


@dataclass(frozen=True)
class TelegramBot:
    name: str
    token: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    api_base_url: str

    @property
    def account(self) -> str:
        return self.token.split(":", 1)[0]


@dataclass(frozen=True)
class SlackApp:
    name: str
    bot_token: str = field(repr=False)
    signing_secret: str = field(repr=False)
    agent_channel: str | None
    api_base_url: str
    # Who may work the agents' desk (claim, reply, resolve, notes, /handoff): these Slack user ids, and
    # only in the agents' channel; empty: whoever is a member of that channel (conversations.members).
    desk_agents: tuple[str, ...] = ()
    # The desk's workspace: desk actions whose payload names another team are refused (the app may be
    # installed in several workspaces, and a signature only proves the request came from the app).
    # None: not known (not checked).
    team_id: str | None = None
    # The "Add to Slack" app (SHOPBOT_SLACK_CLIENT_ID is set and this entry's signing secret is
    # SHOPBOT_SLACK_SIGNING_SECRET): only requests it signed, and conversations it carries, may use the
    # workspaces' OAuth installations (whose tokens only ever go to SHOPBOT_SLACK_API_BASE_URL).
    oauth: bool = False


class SlackAuth(NamedTuple):
    """A bot token and the one Web API URL it may be sent to; ``installation``: the OAuth installation it
    comes from (None: a pasted token)."""

    token: str
    base_url: str
    installation: SlackInstallation | None = None


@dataclass(frozen=True)
class Channels:
    """The credentials in force at one moment (a snapshot; the store hands out a new one after a change)."""

    telegram: tuple[TelegramBot, ...] = ()
    slack: tuple[SlackApp, ...] = ()
    web_origins: tuple[str, ...] = ()
    version: str = "0"
    # Workspaces connected by "Add to Slack" (OAuth), newest first (admin.slack_installs).
    installations: tuple[SlackInstallation, ...] = ()
    # Where the installations' tokens were exchanged (SHOPBOT_SLACK_API_BASE_URL): the only URL they go to.
    install_api_base_url: str = "https://slack.com/api/"

    def telegram_by_secret(self, header: str) -> TelegramBot | None:
        """The bot whose webhook secret Telegram sent (every bot's is compared, in constant time)."""
        found = None
        for bot in self.telegram:
            if hmac.compare_digest(header.encode(), bot.webhook_secret.encode()):
                found = bot
        return found

    def telegram_bot(self, account: str) -> TelegramBot | None:
        return next((b for b in self.telegram if b.account == account), None)

    def slack_app(self, name: str | None = None) -> SlackApp | None:
        """The app a conversation came through (by name), else the only one, else the desk's."""
        if name:
            app = next((a for a in self.slack if a.name == name), None)
            if app:
                return app
        return self.slack[0] if len(self.slack) == 1 else self.desk()

    def desk(self) -> SlackApp | None:
        """The workspace whose agents' channel gets the hand-off cards (the first one with a channel)."""
        return next((a for a in self.slack if a.agent_channel), None)

    def installation(self, team_id: str | None, enterprise_id: str | None = None) -> SlackInstallation | None:
        """The OAuth installation of a workspace (or of its Enterprise Grid org, installed org-wide)."""
        for inst in self.installations:
            if team_id and inst.team_id == team_id:
                return inst
        if enterprise_id:
            return next(
                (i for i in self.installations if i.is_enterprise_install and i.enterprise_id == enterprise_id), None
            )
        return None

    def slack_auth(
        self, team_id: str | None, app: SlackApp | None, enterprise_id: str | None = None
    ) -> SlackAuth | None:
        """The bot token for a workspace reached through ``app`` (the entry whose signing secret verified,
        or the conversation's ``via``), with the URL it goes to: a pasted token of an entry bound to that
        very workspace first; then, only through the "Add to Slack" app (``SlackApp.oauth``), the
        workspace's installation, at the URL it was exchanged at; then the entry's pasted token. One
        source's token never goes to another source's URL. None: no token."""
        if app is not None and app.bot_token and app.team_id and app.team_id == team_id:
            return SlackAuth(app.bot_token, app.api_base_url)
        if app is None or app.oauth:
            inst = self.installation(team_id, enterprise_id)
            if inst is not None and inst.bot_token:
                return SlackAuth(inst.bot_token, self.install_api_base_url, inst)
        if app is not None and app.bot_token:
            return SlackAuth(app.bot_token, app.api_base_url)
        return None

    def slack_token(self, team_id: str | None, app: SlackApp | None, enterprise_id: str | None = None) -> str:
        """``slack_auth``'s token alone ("" when none)."""
        auth = self.slack_auth(team_id, app, enterprise_id)
        return auth.token if auth else ""


def _is_oauth_app(settings, signing_secret: str) -> bool:
    """Whether an entry with this signing secret is the "Add to Slack" app (the environment's)."""
    env = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    return bool(settings.slack_client_id and env and hmac.compare_digest(signing_secret.encode(), env.encode()))


def from_environment(settings) -> Channels:
    def sv(s) -> str:
        return s.get_secret_value() if s else ""

    tg, sl = (), ()
    if settings.telegram_bot_token:
        tg = (
            TelegramBot(
                ENV,
                sv(settings.telegram_bot_token),
                sv(settings.telegram_webhook_secret),
                settings.telegram_api_base_url,
            ),
        )
    if settings.slack_bot_token or (settings.slack_signing_secret and settings.slack_client_id):
        # With "Add to Slack" (a client id), the app may have no pasted token: the workspaces' come by OAuth.
        sl = (
            SlackApp(
                ENV,
                sv(settings.slack_bot_token),
                sv(settings.slack_signing_secret),
                settings.slack_agent_channel,
                settings.slack_api_base_url,
                user_ids(settings.slack_desk_agents),
                settings.slack_team_id,
                _is_oauth_app(settings, sv(settings.slack_signing_secret)),
            ),
        )
    origins = tuple(o.strip() for o in (settings.web_allowed_origins or "").split(",") if o.strip())
    return Channels(tg, sl, origins, install_api_base_url=settings.slack_api_base_url)


# -- the store ----------------------------------------------------------------------------


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    """A stored entry as listings show it: settings in full, secrets as their hints."""
    return {
        "platform": row["platform"],
        "name": row["name"],
        "source": "admin",
        **json.loads(row["settings"]),
        "secrets": json.loads(row["hints"]),
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


class CredentialStore:
    """Channel credentials in SQL; ``box`` seals and opens the secrets (None: no key configured)."""

    def __init__(self, engine: Engine, box: SecretBox | None, settings, redis_client=None):
        self.engine = engine
        self.box = box
        self.settings = settings
        self.r = redis_client

    @classmethod
    def from_settings(cls, settings, engine: Engine, redis_client=None) -> CredentialStore:
        try:
            box = SecretBox.from_settings(settings)
        except SecretKeyError as exc:
            log.warning("stored channel credentials are off: %s", exc)
            box = None
        return cls(engine, box, settings, redis_client)

    def _need_box(self) -> SecretBox:
        if self.box is None:
            raise CredentialError(
                "credentials cannot be stored: no secret key (set SHOPBOT_SECRET_KEY; "
                "python -m admin keys generate makes one)",
                503,
            )
        return self.box

    def _rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            q = select(credentials).order_by(credentials.c.platform, credentials.c.name)
            return [dict(r._mapping) for r in conn.execute(q)]

    def _row(self, platform: str, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            q = select(credentials).where(credentials.c.platform == platform, credentials.c.name == name)
            row = conn.execute(q).first()
            return dict(row._mapping) if row else None

    def installations(self) -> InstallationTable:
        return InstallationTable(self.engine, self.box)

    def save_installation(self, values: dict[str, Any]) -> None:
        """Keep a workspace's "Add to Slack" installation (sealed) and tell every process."""
        self.installations().save(values)
        self._bump()

    def delete_installation(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        client_id: str | None = None,
        app_id: str | None = None,
        bot_user_ids: list[str] | None = None,
    ) -> int:
        n = self.installations().delete(enterprise_id, team_id, client_id, app_id, bot_user_ids)
        if n:
            self._bump()
        return n

    def _bump(self) -> None:
        if self.r is not None:
            self.r.incr(VERSION_KEY)

    # -- admin operations

    def listing(self) -> list[dict[str, Any]]:
        """Every entry, secrets shown by their last 4 characters; the environment's too, marked as such."""
        out = []
        stored_platforms = set()
        for row in self._rows():
            stored_platforms.add(row["platform"])
            out.append(_entry(row))
        env = from_environment(self.settings)
        for bot in env.telegram if "telegram" not in stored_platforms else ():
            out.append(
                {
                    "platform": "telegram",
                    "name": ENV,
                    "source": ENV,
                    "api_base_url": bot.api_base_url,
                    "secrets": {"bot_token": hint(bot.token), "webhook_secret": hint(bot.webhook_secret)},
                }
            )
        for app in env.slack if "slack" not in stored_platforms else ():
            out.append(
                {
                    "platform": "slack",
                    "name": ENV,
                    "source": ENV,
                    "agent_channel": app.agent_channel,
                    "api_base_url": app.api_base_url,
                    "desk_agents": list(app.desk_agents),
                    "team_id": app.team_id,
                    "secrets": {"bot_token": hint(app.bot_token), "signing_secret": hint(app.signing_secret)},
                }
            )
        if env.web_origins and "web" not in stored_platforms:
            out.append(
                {"platform": "web", "name": ENV, "source": ENV, "allowed_origins": list(env.web_origins), "secrets": {}}
            )
        return out

    def set(self, platform: str, name: str, values: dict[str, Any], actor: str) -> dict[str, Any]:
        """Add or update an entry; fields left out keep their value. Returns the entry as listed, plus
        ``generated``: secrets made up here (a Telegram webhook secret), shown this once."""
        spec = SPECS.get(platform)
        if spec is None:
            raise CredentialError(f"unknown platform {platform!r}: one of {', '.join(SPECS)}", 404)
        if not NAME_RE.match(name) or name == ENV:
            raise CredentialError("name must be 1-40 of a-z 0-9 _ - (and not 'environment')")
        if not isinstance(values, dict):
            raise CredentialError("the body must be a JSON object of fields")
        unknown = set(values) - set(spec.secrets) - set(spec.settings)
        if unknown:
            allowed = ", ".join([*spec.secrets, *spec.settings])
            raise CredentialError(f"unknown field(s) {', '.join(sorted(unknown))} for {platform}: {allowed}")
        box = self._need_box()
        where = f"{platform}/{name}"
        old = self._row(platform, name)
        old_secrets: dict[str, str] = json.loads(box.open(old["sealed"], where)) if old else {}
        new_settings: dict[str, Any] = json.loads(old["settings"]) if old else {}
        new_secrets = dict(old_secrets)
        for f, check in spec.secrets.items():
            if f in values and values[f] is not None:
                v = values[f]
                if not isinstance(v, str) or (problem := check(v.strip())):
                    raise CredentialError(f"{f} {problem if isinstance(v, str) else 'must be a string'}")
                new_secrets[f] = v.strip()
        for f, check in spec.settings.items():
            if f not in values:
                continue
            v = values[f]
            if v is None or v == "" or v == []:
                new_settings.pop(f, None)
                continue
            if f in LIST_SETTINGS:
                # A list, or one comma-separated string (the admin page's text field).
                if isinstance(v, str):
                    v = list(user_ids(v)) if f == "desk_agents" else [o.strip() for o in v.split(",")]
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise CredentialError(f"{f} is a list of {LIST_SETTINGS[f]}")
                for x in v:
                    if problem := check(x):
                        raise CredentialError(f"{f}: {problem}")
                new_settings[f] = sorted({x.rstrip("/") for x in v if x})
                continue
            if not isinstance(v, str) or (problem := check(v.strip())):
                raise CredentialError(f"{f} {problem if isinstance(v, str) else 'must be a string'}")
            new_settings[f] = v.strip()
        url = new_settings.get("api_base_url")  # None: the platform's own API, where the token belongs anyway
        moved = old is not None and url is not None and url != json.loads(old["settings"]).get("api_base_url")
        if moved and "bot_token" in spec.secrets and not values.get("bot_token"):
            # The stored token would go to the new address at the next call (or "Test"): whoever moves it
            # must know the token already.
            raise CredentialError("changing api_base_url needs the bot_token again (it is sent to that address)")
        generated = {}
        for f in spec.generated:
            if f not in new_secrets:
                new_secrets[f] = generated[f] = secrets.token_urlsafe(32)
        missing = [f for f in spec.required if f not in new_secrets and f not in new_settings]
        if missing:
            raise CredentialError(f"{platform} needs {', '.join(missing)}")
        row = {
            "platform": platform,
            "name": name,
            "settings": json.dumps(new_settings),
            "sealed": box.seal(json.dumps(new_secrets), where),
            "hints": json.dumps({f: hint(v) for f, v in new_secrets.items()}),
            "updated_at": time.time(),
            "updated_by": actor[:200],
        }
        with self.engine.begin() as conn:
            conn.execute(delete(credentials).where(credentials.c.platform == platform, credentials.c.name == name))
            conn.execute(credentials.insert().values(**row))
        self._bump()
        return {**_entry(row), "created": old is None, "generated": generated}

    def remove(self, platform: str, name: str) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(credentials).where(credentials.c.platform == platform, credentials.c.name == name)
            ).rowcount
        if gone:
            self._bump()
        return bool(gone)

    def secrets_of(self, platform: str, name: str) -> tuple[dict[str, str], dict[str, Any]] | None:
        """(secrets, settings) of one entry, for ``test``; the environment's entry by the name 'environment'."""
        if name == ENV:
            env = from_environment(self.settings)
            if platform == "telegram" and env.telegram:
                b = env.telegram[0]
                return {"bot_token": b.token}, {"api_base_url": b.api_base_url}
            if platform == "slack" and env.slack:
                a = env.slack[0]
                conf = {"api_base_url": a.api_base_url, "agent_channel": a.agent_channel, "team_id": a.team_id}
                return {"bot_token": a.bot_token}, conf
            if platform == "web" and env.web_origins:
                return {}, {"allowed_origins": list(env.web_origins)}
            return None
        row = self._row(platform, name)
        if row is None:
            return None
        return json.loads(self._need_box().open(row["sealed"], f"{platform}/{name}")), json.loads(row["settings"])

    def check(
        self, platform: str, name: str, actor: str, checker: Checker, relearn: bool = False
    ) -> dict[str, Any] | None:
        """``checker`` (the channels' own check: ``channels.checks.check_platform``) on an entry (None: no such
        entry). A stored Slack app without a ``team_id``
        takes the workspace ``auth.test`` names as its own (so does one whose bot token was just changed:
        ``relearn``); one whose ``team_id`` is another workspace's does not work (the desk would refuse
        every action): the answer says so."""
        found = self.secrets_of(platform, name)
        if found is None:
            return None
        sec, conf = found
        result = checker(platform, sec, conf, self.settings)
        team = result.pop("team_id", None)
        if platform != "slack" or not result["ok"] or not team:
            return result
        known = conf.get("team_id")
        if name != ENV and team != known and (not known or relearn):
            try:
                self.set(platform, name, {"team_id": team}, actor)
            except CredentialError as exc:  # not a team id we know the shape of: left for the admin to set
                result["detail"] += f"; team_id not recorded ({exc.reason})"
                return result
            result["team_id"] = team
            result["detail"] += f"; the desk takes actions from workspace {team} only (team_id learned)"
        elif known and known != team:
            result["ok"] = False
            result["detail"] += (
                f"; but team_id is {known}: the bot token is workspace {team}'s, so every desk action would be "
                "refused (set team_id to the desk's workspace)"
            )
        elif not known:
            result["detail"] += f"; set SHOPBOT_SLACK_TEAM_ID={team} to take desk actions from this workspace only"
        return result

    def rotate(self) -> int:
        """Re-seal every entry with the current key (after a new one was made current); returns how many."""
        box = self._need_box()
        n = 0
        with self.engine.begin() as conn:
            for row in conn.execute(select(credentials)).all():
                where = f"{row.platform}/{row.name}"
                if box.is_current(row.sealed):
                    continue
                plain = box.open(row.sealed, where)
                conn.execute(
                    credentials.update()
                    .where(credentials.c.platform == row.platform, credentials.c.name == row.name)
                    .values(sealed=box.seal(plain, where))
                )
                n += 1
        n += self.installations().reseal()
        if n:
            self._bump()
        return n

    # -- what processes use

    def snapshot(self, version: str = "0") -> Channels:
        """The credentials in force: the store's per platform where it has entries, else the environment's."""
        env = from_environment(self.settings)
        tg: list[TelegramBot] = []
        sl: list[SlackApp] = []
        origins: list[str] = []
        stored = set()
        for row in self._rows():
            p, name = row["platform"], row["name"]
            stored.add(p)
            conf = json.loads(row["settings"])
            if p == "web":
                origins += conf.get("allowed_origins", [])
                continue
            if self.box is None:
                log.error("channel %s/%s is stored but there is no secret key to open it", p, name)
                continue
            try:
                sec = json.loads(self.box.open(row["sealed"], f"{p}/{name}"))
            except SecretKeyError as exc:
                log.error("channel %s/%s cannot be used: %s", p, name, exc)
                continue
            if p == "telegram":
                base = conf.get("api_base_url") or self.settings.telegram_api_base_url
                tg.append(TelegramBot(name, sec["bot_token"], sec.get("webhook_secret", ""), base))
            elif p == "slack":
                base = conf.get("api_base_url") or self.settings.slack_api_base_url
                agents = tuple(conf.get("desk_agents") or ())
                sl.append(
                    SlackApp(
                        name, sec["bot_token"], sec["signing_secret"], conf.get("agent_channel"), base, agents,
                        conf.get("team_id"), _is_oauth_app(self.settings, sec["signing_secret"]),
                    )
                )  # fmt: skip
        try:
            # The installations of the "Add to Slack" app in force (another client id's are not its tokens).
            client = self.settings.slack_client_id or ""
            installs = tuple(i for i in self.installations().all() if client and i.client_id == client)
        except SecretKeyError as exc:
            log.error("Slack installations cannot be used: %s", exc)
            installs = ()
        return Channels(
            tuple(tg) if "telegram" in stored else env.telegram,
            tuple(sl) if "slack" in stored else env.slack,
            tuple(sorted(set(origins))) if "web" in stored else env.web_origins,
            version,
            installs,
            self.settings.slack_api_base_url,
        )


def learns_team(platform: str, values: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Whether saving ``values`` should have ``CredentialStore.check`` learn a Slack app's workspace: it
    has no ``team_id`` yet, or a new bot token came without one. One the admin gave, or cleared (an empty
    value: no workspace check), is left as it is."""
    if platform != "slack" or "team_id" in values:
        return False
    return not entry.get("team_id") or bool(values.get("bot_token"))


class LiveChannels:
    """The snapshot a process uses, reloaded when the version in Redis moves (at most one reload at a time)."""

    def __init__(self, store: CredentialStore):
        self.store = store
        self._snap: Channels | None = None
        self._lock = threading.Lock()

    def cached(self, version: str | None) -> Channels | None:
        """The snapshot in hand, if it is of ``version`` (no I/O: the gateway asks this on its event loop)."""
        snap = self._snap
        return snap if snap is not None and snap.version == (version or "0") else None

    def for_version(self, version: str | None) -> Channels:
        if (snap := self.cached(version)) is not None:
            return snap
        version = version or "0"
        with self._lock:
            if self._snap is None or self._snap.version != version:
                try:
                    self._snap = self.store.snapshot(version)
                except Exception:  # noqa: BLE001 - keep serving with what we had; try again next time
                    if self._snap is None:
                        raise
                    log.exception("could not reload channel credentials; keeping the previous ones")
            return self._snap

    def current(self) -> Channels:
        """Synchronous callers (workers, commands): one Redis GET, a reload only after a change."""
        return self.for_version(self.store.r.get(VERSION_KEY) if self.store.r is not None else None)
