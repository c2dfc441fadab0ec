"""The JSON request bodies of the gateway's routes, declared once.

Each model is what its route validates (``parse_body``) and what ``/openapi.json`` describes
(``gateway.openapi``), so the fuzz test checks the very schema the routes enforce. A refusal is
``{"error": "<field>: <what is wrong>"}`` with status 400, or the status a check asks for (a web
message's text over 4000 characters is 413). Rules the stores own (a platform's credential formats, a
token name, the policies' intents) stay there; the models declare the shapes and types in front of them.
The platforms' webhook bodies (Telegram, Slack) are not here: the adapters parse those.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from admin.access import NAME_RE, ROLES
from channels import web as web_channel
from dialogue.importer import FaqRow
from shopbot.corrections import SENTIMENTS
from shopbot.errors import Refused

from .context import read_json

Body = TypeVar("Body", bound=BaseModel)


class BodyRefused(web.HTTPClientError):
    """A body its model refuses, answered as ``{"error": reason}`` with the check's status."""

    def __init__(self, status: int, reason: str):
        self.status_code = status
        super().__init__(text=json.dumps({"error": reason}), content_type="application/json")


def _reason(exc: ValidationError) -> tuple[int, str]:
    """The status and reason of a model's first error, naming the field."""
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, (web_channel.ChannelError, Refused)):  # a check that words its own reason
        return cause.status, cause.reason
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return 400, f"{where}: {msg}"


async def parse_body(request: web.Request, model: type[Body], *, optional: bool = False) -> Body:
    """The request's JSON body as ``model``; refused with a reason naming the field.

    ``optional``: a request without a body is ``{}`` (the routes whose fields may all be left out).
    """
    body: object = {}
    if request.can_read_body or not optional:
        body = await read_json(request)  # 415 for another content type, 400 for what is not JSON
    if not isinstance(body, dict):
        raise BodyRefused(400, "body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BodyRefused(*_reason(exc)) from None


# -- the web chat -------------------------------------------------------------------------------------


class _Widget(BaseModel):
    # The widget's checks (channels.web, shared with the WebSocket) word the reasons; the Field
    # constraints say the same for the description, with Python's re as the checks use.
    model_config = ConfigDict(regex_engine="python-re")

    locale: str | None = Field(None, pattern=web_channel.LOCALE_RE.pattern, examples=["en", "zh-CN"])

    @field_validator("locale", mode="before")
    @classmethod
    def _locale(cls, v: Any) -> Any:
        return web_channel.check_locale({"locale": v})


class NewWebSession(_Widget):
    """``POST /web/sessions``: all optional, the body too."""


class WebMessage(_Widget):
    """``POST /web/messages``: a shopper's message from the widget."""

    session_id: str = Field(pattern=web_channel.SESSION_RE.pattern)
    text: str = Field(min_length=1, max_length=web_channel.MAX_TEXT, pattern=r"\S")
    client_message_id: str | None = Field(None, pattern=web_channel.CLIENT_ID_RE.pattern)

    @field_validator("session_id", mode="before")
    @classmethod
    def _session(cls, v: Any) -> Any:
        return web_channel.check_session_id(v)

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return web_channel.check_text(v)  # stripped; 413 past MAX_TEXT

    @field_validator("client_message_id", mode="before")
    @classmethod
    def _client_id(cls, v: Any) -> Any:
        return web_channel.check_client_message_id({"client_message_id": v})


# -- the agents' API ----------------------------------------------------------------------------------

REPLY_MAX = 4000


class AgentAction(BaseModel):
    """``claim`` and ``resolve``: the agent is the token's own name; ``agent`` may repeat it (else 403)."""

    agent: str | None = None


class AgentReply(AgentAction):
    text: str = Field(min_length=1, max_length=REPLY_MAX, pattern=r"\S")

    @field_validator("text", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        if not isinstance(v, str) or not v.strip():
            raise Refused("text is required (a non-empty string)")
        if len(v.strip()) > REPLY_MAX:
            raise Refused(f"text is over {REPLY_MAX} characters", 413)
        return v.strip()


class Correction(AgentAction):
    """An agent's reading of a shopper message: an intent, a sentiment, or both (the store checks
    that one is there, and that the intent is one of the policies')."""

    intent: str | None = None
    sentiment: Literal[SENTIMENTS] | None = None  # type: ignore[valid-type]

    @field_validator("intent", mode="before")
    @classmethod
    def _intent(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str):
            raise Refused(f"unknown intent {type(v).__name__!r}: an intent is a string")
        return v

    @field_validator("sentiment", mode="before")
    @classmethod
    def _sentiment(cls, v: Any) -> Any:
        if v is not None and v not in SENTIMENTS:
            shown = v if isinstance(v, str) else type(v).__name__
            raise Refused(f"unknown sentiment {str(shown)[:80]!r}; one of: {', '.join(SENTIMENTS)}")
        return v


# -- the admin API ------------------------------------------------------------------------------------


class ChannelFields(BaseModel):
    """``PUT /admin/api/channels/{platform}/{name}``: the fields of any platform; which ones a platform
    takes, and their formats, are the credential store's (``admin.credentials.SPECS``). Fields left
    out keep their value; a setting sent empty is removed."""

    # Unknown fields go on to the store, which names the ones the platform takes.
    model_config = ConfigDict(extra="allow")

    bot_token: str | None = None
    webhook_secret: str | None = None
    signing_secret: str | None = None
    agent_channel: str | None = None
    api_base_url: str | None = None
    allowed_origins: list[str] | str | None = Field(None, description="a list, or one comma-separated string")
    desk_agents: list[str] | str | None = Field(None, description="a list, or one comma-separated string")
    team_id: str | None = None


class NewToken(BaseModel):
    model_config = ConfigDict(regex_engine="python-re")

    name: str = Field(pattern=NAME_RE.pattern)
    role: Literal[ROLES]  # type: ignore[valid-type]

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> Any:
        if not isinstance(v, str) or not NAME_RE.match(v):
            raise Refused("name must be 1-120 letters, digits, spaces or . _ @ : + -")
        return v


class ForgetShopper(BaseModel):
    """Either ``conversation_id``, or ``channel`` and ``user`` (a web shopper's user is their session id)."""

    channel: str | None = None
    user: str | None = None
    conversation_id: str | None = None


class NewFaqEntry(FaqRow):
    """An FAQ row (``dialogue.importer.FaqRow``) whose id may be left out, and phrasings may be a list."""

    id: str = Field(default_factory=lambda: f"added-{secrets.token_hex(4)}", min_length=1, max_length=40)
    also_asked_en: list[str] | str | None = None  # type: ignore[assignment]
    also_asked_zh: list[str] | str | None = None  # type: ignore[assignment]


# Which route takes which body: gateway.openapi describes these, tests/test_schemas.py holds them to it.
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("post", "/web/sessions"): NewWebSession,
    ("post", "/web/messages"): WebMessage,
    ("post", "/handoff/api/conversations/{cid}/claim"): AgentAction,
    ("post", "/handoff/api/conversations/{cid}/reply"): AgentReply,
    ("post", "/handoff/api/conversations/{cid}/resolve"): AgentAction,
    ("post", "/handoff/api/conversations/{cid}/messages/{mid}/correction"): Correction,
    ("put", "/admin/api/channels/{platform}/{name}"): ChannelFields,
    ("post", "/admin/api/tokens"): NewToken,
    ("post", "/admin/api/shoppers/forget"): ForgetShopper,
    ("post", "/admin/api/faq"): NewFaqEntry,
}
