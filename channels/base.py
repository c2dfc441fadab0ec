"""The contracts between channels and the rest of the product (see DESIGN.md, Contracts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ChannelError(ValueError):
    """A payload a channel cannot accept; ``reason`` is safe to show to the sender."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class SendFailed(RuntimeError):
    """The platform refused a message for good (blocked bot, unknown chat, bad token): retrying cannot help."""


class RateLimited(RuntimeError):
    """The platform still asks us to slow down after the one retry a send makes; try again later."""

    def __init__(self, retry_after: float):
        super().__init__(f"rate limited; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class InboundMessage:
    id: str  # the platform's own message id (or the client's), so retries collapse
    channel: str
    account: str
    sender_id: str
    chat_id: str
    text: str
    locale: str | None = None
    sent_at: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    via: str | None = None  # the name of the bot or app (credentials entry) it came through

    @property
    def conversation_id(self) -> str:
        return f"{self.channel}:{self.account}:{self.chat_id}"

    def meta(self) -> dict[str, str]:
        m = {"channel": self.channel, "account": self.account, "chat": self.chat_id, "sender": self.sender_id}
        if self.locale:
            m["locale"] = self.locale
        if self.via:
            m["via"] = self.via
        return m


def plain_error(exc: Exception, secret: str = "") -> str:
    """An error as an admin reads it (type and message), with ``secret`` (a bot token) never in it."""
    text = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    return text.replace(secret, "[token]") if secret else text
