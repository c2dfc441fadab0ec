"""The web channel: the chat widget's JSON over HTTP and WebSocket.

Parsing and validation only; the routes live in ``gateway.web_routes``. The web
widget reads replies from the conversation's log, so sending is the log itself.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

from .base import ChannelError, InboundMessage

NAME = "web"
ACCOUNT = "default"
MAX_TEXT = 4000
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}$")


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


def public_id(session_id: str) -> str:
    """The shopper's id everywhere but the widget: a hash of the session id.

    The session id is the widget's secret: whoever has it reads and writes the
    chat. Conversation ids are shown to agents (queue, Slack card), written to
    logs and audit rows, so they carry this one-way hash instead (128 bits of
    SHA-256; a session id from ``new_session_id`` has 144 random bits, so the
    hash cannot be turned back into it).
    """
    return hashlib.sha256(f"shopbot-web-session:{session_id}".encode()).hexdigest()[:32]


def shopper_ids(channel: str, user: str) -> tuple[str, ...]:
    """The ids one shopper may be stored under: a web shopper asking to be forgotten
    gives the session id their browser keeps, stored as its ``public_id``."""
    return (user, public_id(user)) if channel == NAME else (user,)


def conversation_id(session_id: str) -> str:
    return f"{NAME}:{ACCOUNT}:{public_id(session_id)}"


def check_session_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ChannelError("session_id is required: a string of 8-64 letters, digits, '-' or '_'")
    if not SESSION_RE.match(value):
        raise ChannelError("session_id must be 8-64 letters, digits, '-' or '_'")
    return value


def check_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ChannelError("text must be a string")
    text = value.strip()
    if not text:
        raise ChannelError("text is empty")
    if len(text) > MAX_TEXT:
        raise ChannelError(f"text is too long: {len(text)} characters, at most {MAX_TEXT}", status=413)
    return text


def _check_optional(body: dict[str, Any], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise ChannelError(f"{name} must be {what}")
    return value


def check_locale(body: dict[str, Any]) -> str | None:
    """The optional ``locale`` of a widget request."""
    return _check_optional(body, "locale", LOCALE_RE, "a language tag such as en or zh-CN")


def check_client_message_id(body: dict[str, Any]) -> str | None:
    """The optional ``client_message_id`` of a widget message (its retries carry the same one)."""
    return _check_optional(body, "client_message_id", CLIENT_ID_RE, "1-100 letters, digits or . _ : -")


def parse_message(body: Any, session_id: str | None = None) -> InboundMessage:
    """A message from the widget: ``{"session_id", "text", "client_message_id"?, "locale"?}``.

    On the WebSocket the session comes from the socket, so ``session_id`` is given.
    """
    if not isinstance(body, dict):
        raise ChannelError("body must be a JSON object")
    sid = session_id or check_session_id(body.get("session_id"))
    return inbound(sid, check_text(body.get("text")), check_client_message_id(body), check_locale(body), body)


def inbound(session_id: str, text: str, client_message_id: str | None, locale: str | None, raw: Any) -> InboundMessage:
    """The message of checked fields (``parse_message``, or the gateway's ``WebMessage`` body)."""
    shopper = public_id(session_id)
    return InboundMessage(
        id=client_message_id or "",
        channel=NAME,
        account=ACCOUNT,
        sender_id=shopper,
        chat_id=shopper,
        text=text,
        locale=locale,
        sent_at=time.time(),
        raw=raw,
    )


def check_credentials(secret: dict[str, str], conf: dict[str, Any], settings) -> dict[str, Any]:
    """This channel's credentials check (``channels.checks``): the web widget has no platform to ask, so
    its settings are in order when some origin may open it."""
    origins = conf.get("allowed_origins") or []
    return {"ok": bool(origins), "detail": "allowed origins: " + (", ".join(origins) or "none")}
