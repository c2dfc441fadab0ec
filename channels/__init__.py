"""Channel adapters: each turns its platform's payload into an InboundMessage and sends replies back."""

from .base import ChannelError, InboundMessage

__all__ = ["ChannelError", "InboundMessage"]
