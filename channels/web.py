"""The web channel: the chat widget's JSON over HTTP and WebSocket.

Parsing and validation only; the routes live in ``gateway.web_routes``. The web
widget reads replies from the conversation's log, so sending is the log itself.
"""

from __future__ import annotations

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


def conversation_id(session_id: str) -> str:
    return f"{NAME}:{ACCOUNT}:{session_id}"


def check_session_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ChannelError("session_id is required: a string of 8-64 letters, digits, '-' or '_'")
    if not SESSION_RE.match(value):
        raise ChannelError("session_id must be 8-64 letters, digits, '-' or '_'")
    return value


def _check_text(value: Any) -> str:
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


def parse_message(body: Any, session_id: str | None = None) -> InboundMessage:
    """A message from the widget: ``{"session_id", "text", "client_message_id"?, "locale"?}``.

    On the WebSocket the session comes from the socket, so ``session_id`` is given.
    """
    if not isinstance(body, dict):
        raise ChannelError("body must be a JSON object")
    sid = session_id or check_session_id(body.get("session_id"))
    text = _check_text(body.get("text"))
    cmid = _check_optional(body, "client_message_id", CLIENT_ID_RE, "1-100 letters, digits or . _ : -")
    locale = check_locale(body)
    return InboundMessage(
        id=cmid or "",
        channel=NAME,
        account=ACCOUNT,
        sender_id=sid,
        chat_id=sid,
        text=text,
        locale=locale,
        sent_at=time.time(),
        raw=body,
    )
