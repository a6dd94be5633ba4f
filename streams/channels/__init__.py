"""Outbound channels behind one small interface (:class:`Channel`): ``console`` (the default
for ``make run``) and ``twilio`` (SMS through Twilio's Messages API). See docs/twilio.md."""

from streams.channels.base import (
    Channel,
    ChannelError,
    MemorySentLog,
    OutboundMessage,
    PermanentChannelError,
    SendResult,
    SentLog,
    SqliteSentLog,
    TransientChannelError,
    mask_numbers,
)
from streams.channels.console import ConsoleChannel

__all__ = [
    "Channel",
    "ChannelError",
    "ConsoleChannel",
    "MemorySentLog",
    "OutboundMessage",
    "PermanentChannelError",
    "SendResult",
    "SentLog",
    "SqliteSentLog",
    "TransientChannelError",
    "mask_numbers",
]
