"""Slack's OAuth install ("Add to Slack") for the bolt app: where bolt keeps what the flow needs.

- ``RedisStateStore``: the ``state`` of each install link, one-time and
  expiring (``STATE_TTL_S``) in Redis, shared by every gateway; consumed with
  GETDEL, so a state works once, on any gateway, and not after it expired.
- ``SqlInstallationStore``: bolt's installation store over
  ``admin.slack_installs`` (SQL, tokens sealed); saving bumps the credentials
  version so every gateway and worker uses the new token at its next request.
- ``issue_ticket`` / ``consume_ticket``: the one-time install tickets an admin
  asks for (``POST /admin/api/slack/install-link``); ``/install`` starts an
  install only with one.
- ``TeamNotAllowed``: an install for a workspace outside
  ``Settings.slack_allowed_teams`` is refused and not stored.
- ``exchange_failed``: a callback that failed past bolt's own handling
  (a disconnect, a timeout), audited, answered with a 502 page.
- ``flow``: bolt's ``AsyncOAuthFlow`` with the product's settings: the install
  and redirect paths under ``/channels/slack``, the token exchange
  (``oauth.v2.access``) at ``SHOPBOT_SLACK_API_BASE_URL``, and pages that say
  plainly what happened (a refused callback is a 4xx with the reason).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web
from slack_bolt.error import BoltError
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from admin.slack_installs import SlackInstallation
from shopbot.settings import Settings

from .context import aredis_key, audit_key, credentials_key, current_channels

log = logging.getLogger(__name__)


class _NoCodes(logging.Filter):
    """bolt's flow logs a failed exchange with its one-time code: the code stays out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "code" in msg:
            record.msg, record.args = re.sub(r"(code[:=]\s*)[^\s,&'\"]+", r"\1[redacted]", msg), ()
        return True


# The token exchange's own client: slack_sdk logs request bodies (the one-time code) at DEBUG; not here.
_client_log = logging.getLogger(__name__ + ".client")
_client_log.setLevel(logging.INFO)
_flow_log = logging.getLogger(__name__ + ".flow")
_flow_log.addFilter(_NoCodes())
INSTALL_PATH = "/channels/slack/install"
REDIRECT_PATH = "/channels/slack/oauth_redirect"
STATE_TTL_S = 600  # an install link works for 10 minutes, once
STATE_KEY = "sb:slack:oauth-state:"

FAILURES = {
    "invalid_browser": "this browser did not start the install (its state cookie is missing or does not match)",
    "invalid_state": "the install link expired or was already used",
    "missing_code": "Slack sent no code",
    "invalid_code": "Slack did not accept the code",
    "storage_error": "the workspace's token could not be stored",
    "access_denied": "the install was cancelled in Slack",
    "team_not_allowed": "this workspace is not one the shop connects (see SHOPBOT_SLACK_INSTALL_TEAMS)",
    "exchange_failed": "the token exchange with Slack failed",
}


class TeamNotAllowed(BoltError):
    """An install for a workspace outside the allowed ones (``Settings.slack_allowed_teams``)."""

    def __init__(self, team: str):
        super().__init__(f"workspace {team} is not one this shop connects")
        self.team = team


TICKET_KEY = "sb:slack:install-ticket:"


async def issue_ticket(redis: Any, actor: str, ttl_s: int = STATE_TTL_S) -> str:
    """A one-time install ticket for an admin (``POST /admin/api/slack/install-link``): ``/install`` starts an
    install only with one, so nobody starts one without an admin having asked for it."""
    ticket = secrets.token_urlsafe(24)
    await redis.set(TICKET_KEY + ticket, actor[:200], ex=ttl_s)
    return ticket


async def consume_ticket(redis: Any, ticket: str) -> str | None:
    """The admin who asked for ``ticket``, once (None: unknown, expired or already used)."""
    if not ticket or len(ticket) > 100:
        return None
    actor = await redis.getdel(TICKET_KEY + ticket)
    return actor.decode() if isinstance(actor, bytes) else actor


class RedisStateStore(AsyncOAuthStateStore):
    """One-time OAuth states in Redis (the gateway's asyncio client), expiring after ``ttl_s``."""

    def __init__(self, redis: Callable[[], Any], ttl_s: int = STATE_TTL_S):
        self._redis, self.ttl_s = redis, ttl_s

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args, **kwargs) -> str:
        state = secrets.token_urlsafe(24)
        await self._redis().set(STATE_KEY + state, "1", ex=self.ttl_s)
        return state

    async def async_consume(self, state: str) -> bool:
        if not state or len(state) > 100:
            return False
        return await self._redis().getdel(STATE_KEY + state) is not None


def _installation(inst: SlackInstallation) -> Installation:
    s = inst.secrets
    return Installation(
        app_id=inst.app_id or None, enterprise_id=inst.enterprise_id or None, team_id=inst.team_id or None,
        team_name=inst.team_name or None, bot_token=inst.bot_token or None, bot_id=inst.bot_id or None,
        bot_user_id=inst.bot_user_id or None, bot_scopes=inst.bot_scopes, bot_refresh_token=s.get("bot_refresh_token"),
        user_id=inst.installer_user_id or "", user_token=s.get("user_token"),
        user_refresh_token=s.get("user_refresh_token"), is_enterprise_install=inst.is_enterprise_install,
        installed_at=inst.installed_at,
    )  # fmt: skip


class SqlInstallationStore(AsyncInstallationStore):
    """bolt's installation store over the product's SQL table (``admin.slack_installs``), tokens sealed."""

    def __init__(self, web_app: web.Application, client_id: str, allowed_teams: frozenset[str] | None = None):
        self.web_app, self.client_id, self.allowed_teams = web_app, client_id, allowed_teams

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation):
        if self.allowed_teams is not None and (installation.team_id or "") not in self.allowed_teams:
            # A workspace the shop did not name (SHOPBOT_SLACK_TEAM_ID, SHOPBOT_SLACK_INSTALL_TEAMS): not kept.
            raise TeamNotAllowed(installation.team_id or installation.enterprise_id or "?")
        values = {k: getattr(installation, k, None) for k in vars(installation)}
        values["client_id"] = self.client_id
        try:
            await asyncio.to_thread(self.web_app[credentials_key].save_installation, values)
        except Exception as exc:  # noqa: BLE001 - bolt answers a storage error as such
            log.error("could not store a Slack installation: %s", type(exc).__name__)
            raise BoltError("the installation could not be stored") from None

    async def async_save_bot(self, bot: Bot):
        raise BoltError("bots are saved with their installation")

    async def _find(self, enterprise_id: str | None, team_id: str | None) -> SlackInstallation | None:
        chans = await current_channels(self.web_app)
        return chans.installation(team_id, enterprise_id)

    async def async_find_bot(self, *, enterprise_id, team_id, is_enterprise_install=False) -> Bot | None:
        inst = await self._find(enterprise_id, None if is_enterprise_install else team_id)
        return _installation(inst).to_bot() if inst else None

    async def async_find_installation(
        self, *, enterprise_id, team_id, user_id=None, is_enterprise_install=False
    ) -> Installation | None:
        inst = await self._find(enterprise_id, None if is_enterprise_install else team_id)
        return _installation(inst) if inst else None

    async def async_delete_bot(self, *, enterprise_id, team_id) -> None:
        await asyncio.to_thread(
            self.web_app[credentials_key].delete_installation, enterprise_id, team_id, self.client_id
        )  # fmt: skip

    async def async_delete_installation(self, *, enterprise_id, team_id, user_id=None) -> None:
        await asyncio.to_thread(
            self.web_app[credentials_key].delete_installation, enterprise_id, team_id, self.client_id
        )  # fmt: skip


def _page(status: int, title: str, text: str) -> BoltResponse:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return BoltResponse(status=status, body=body, headers={"Content-Type": "text/html; charset=utf-8"})


async def exchange_failed(web_app: web.Application, exc: BaseException) -> BoltResponse:
    """The callback failed past bolt's own checks (Slack disconnected or timed out, its answer lacked a
    field): audited, and the "not completed" page with a 502 (the state was used: start again)."""
    log.error("Slack install failed: %s", type(exc).__name__)
    await asyncio.to_thread(
        web_app[audit_key].record, "slack:?", None, "slack.install", None,
        f"failed: {type(exc).__name__}"[:40], "slack",
    )  # fmt: skip
    return _page(
        502,
        "Slack install not completed",
        f"Not installed: {FAILURES['exchange_failed']}. Start again from Add to Slack.",
    )


def _callbacks(web_app: web.Application) -> AsyncCallbackOptions:
    async def success(args: AsyncSuccessArgs) -> BoltResponse:
        inst = args.installation
        await asyncio.to_thread(
            web_app[audit_key].record, f"slack:{inst.user_id or '?'}", None, "slack.install",
            inst.team_id or inst.enterprise_id, "ok", "slack",
        )  # fmt: skip
        log.info("Slack workspace connected", extra={"team_id": inst.team_id})
        return _page(
            200,
            "Connected to Slack",
            f"shopbot is installed in the Slack workspace {inst.team_name or inst.team_id}. You can close this page.",
        )

    async def failure(args: AsyncFailureArgs) -> BoltResponse:
        # The reason is bolt's, or the `error` Slack put in the redirect (any text: not echoed as it is).
        reason = args.reason if args.reason in FAILURES else "slack_error"
        if isinstance(args.error, TeamNotAllowed):
            reason = "team_not_allowed"
        why = FAILURES.get(reason, "Slack reported an error")
        status = args.suggested_status_code if 400 <= args.suggested_status_code < 600 else 400
        if reason == "team_not_allowed":
            status = 403
        if reason in ("invalid_state", "invalid_browser", "missing_code", "invalid_code"):
            status = 400  # the request itself is not acceptable: a client error, never a 401 challenge
        await asyncio.to_thread(
            web_app[audit_key].record, "slack:?", None, "slack.install", None, f"refused: {reason}"[:40], "slack"
        )
        log.warning("Slack install refused: %s", reason)
        return _page(status, "Slack install not completed", f"Not installed: {why}. Start again from Add to Slack.")

    return AsyncCallbackOptions(success=success, failure=failure)


def flow(web_app: web.Application, settings: Settings) -> AsyncOAuthFlow | None:
    """bolt's OAuth flow for "Add to Slack", or None when no client id and secret are set."""
    if not (settings.slack_client_id and settings.slack_client_secret):
        return None
    redirect = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/") + REDIRECT_PATH
    base = settings.slack_api_base_url.rstrip("/") + "/"
    return AsyncOAuthFlow(
        # oauth.v2.access and auth.test go to the configured Web API (the tests' local Slack)
        client=AsyncWebClient(base_url=base, timeout=10, logger=_client_log),
        logger=_flow_log,
        settings=AsyncOAuthSettings(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),
            scopes=[s.strip() for s in settings.slack_scopes.split(",") if s.strip()],
            redirect_uri=redirect,
            install_path=INSTALL_PATH,
            install_page_rendering_enabled=False,  # the link goes straight to Slack's page
            redirect_uri_path=REDIRECT_PATH,
            authorization_url=settings.slack_authorize_url,
            callback_options=_callbacks(web_app),
            installation_store=SqlInstallationStore(web_app, settings.slack_client_id, settings.slack_allowed_teams),
            installation_store_bot_only=True,
            state_store=RedisStateStore(lambda: web_app[aredis_key]),
            state_expiration_seconds=STATE_TTL_S,
            logger=_flow_log,
        ),
    )
