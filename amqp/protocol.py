"""Named tuples returned by channel methods (py-amqp's ``amqp.protocol``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .basic_message import Message

__all__ = ('queue_declare_ok_t', 'basic_return_t')


class queue_declare_ok_t(NamedTuple):
    """What ``Channel.queue_declare`` returns."""

    queue: str
    message_count: int
    consumer_count: int


class basic_return_t(NamedTuple):
    """A basic.return with its message (py-amqp compatibility)."""

    reply_code: int
    reply_text: str
    exchange: str
    routing_key: str
    message: Message
