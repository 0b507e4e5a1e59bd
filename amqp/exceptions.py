"""Exceptions raised by amqp, with the names and hierarchy of py-amqp 5.x.

Errors sent by the broker (connection.close / channel.close) are built only
through :func:`error_for_code`, which maps a reply code to its class.
"""
from __future__ import annotations

import socket

from typing import Dict, Iterable, Optional, Sequence, Tuple, Type, Union

from . import spec

__all__ = (
    'AMQPError',
    'ConnectionError', 'ChannelError',
    'RecoverableConnectionError', 'IrrecoverableConnectionError',
    'RecoverableChannelError', 'IrrecoverableChannelError',
    'ConsumerCancelled', 'ContentTooLarge', 'NoRoute', 'NoConsumers',
    'ConnectionForced', 'InvalidPath', 'AccessRefused', 'NotFound',
    'ResourceLocked', 'PreconditionFailed', 'FrameError', 'FrameSyntaxError',
    'InvalidCommand', 'ChannelNotOpen', 'UnexpectedFrame', 'ResourceError',
    'NotAllowed', 'AMQPNotImplementedError', 'InternalError',
    'MessageNacked', 'Blocked', 'PublishConfirmError', 'ReplyTimeout',
    'ReadTimeout', 'RecoveryFailed',
    'AMQPDeprecationWarning', 'error_for_code', 'ERROR_MAP',
    'METHOD_NAME_MAP',
)

#: (class_id, method_id) -> 'Basic.publish'-style name, as py-amqp has it.
METHOD_NAME_MAP: Dict[Tuple[int, ...], str] = {
    sig: '%s.%s' % (m.name.split('.')[0].capitalize(),
                    m.name.split('.')[1].replace('-', '_'))
    for sig, m in spec.METHODS.items()
}


class AMQPDeprecationWarning(UserWarning):
    """Warning for deprecated things."""


class MessageNacked(Exception):
    """The broker nacked a published message (publisher confirms)."""


class AMQPError(Exception):
    """Base class for all AMQP exceptions.

    Arguments follow py-amqp: ``AMQPError(reply_text, method_sig,
    method_name, reply_code)``.
    """

    code = 0

    def __init__(self, reply_text: Optional[str] = None,
                 method_sig: Optional[Sequence[int]] = None,
                 method_name: Optional[str] = None,
                 reply_code: Optional[int] = None) -> None:
        self.message = reply_text
        self.reply_code: int = reply_code or self.code
        self.reply_text = reply_text
        self.method_sig = method_sig
        self.method_name: str = method_name or ''
        if method_sig and not self.method_name:
            try:
                self.method_name = METHOD_NAME_MAP.get(tuple(method_sig), '')
            except TypeError:
                self.method_name = ''
        Exception.__init__(self, reply_code, reply_text, method_sig,
                           self.method_name)

    def __str__(self) -> str:
        if self.method:
            return '{0.method}: ({0.reply_code}) {0.reply_text}'.format(self)
        return self.reply_text or '<{}: unknown error>'.format(
            type(self).__name__)

    @property
    def method(self) -> Union[str, Sequence[int], None]:
        return self.method_name or self.method_sig

    def __reduce__(self) -> Tuple[
            Type[AMQPError],
            Tuple[Optional[str], Optional[Sequence[int]], str, int]]:
        return type(self), (self.reply_text, self.method_sig,
                            self.method_name, self.reply_code)


class ConnectionError(AMQPError):  # noqa: A001 - py-amqp's public name
    """AMQP connection error."""


class ChannelError(AMQPError):
    """AMQP channel error."""


class RecoverableChannelError(ChannelError):
    """Channel error after which a new channel may succeed."""


class IrrecoverableChannelError(ChannelError):
    """Channel error that retrying will not fix."""


class RecoverableConnectionError(ConnectionError):
    """Connection error after which reconnecting may succeed."""


class IrrecoverableConnectionError(ConnectionError):
    """Connection error that reconnecting will not fix."""


class Blocked(RecoverableConnectionError):
    """The broker has blocked the connection (connection.blocked)."""


class ReplyTimeout(AMQPError, socket.timeout):
    """A synchronous method got no reply in time (``reply_timeout`` or the
    call's own timeout).

    Also a ``socket.timeout``.  The channel that waited has been closed
    (its id stays reserved until the broker's close-ok, so a late reply
    can never reach a newer call); a wait on the connection itself closes
    the connection.
    """

    def __str__(self) -> str:
        return self.reply_text or 'no reply in time'


class ReadTimeout(AMQPError, socket.timeout):
    """Nothing arrived from the broker for the connection's read bound:
    ``read_timeout``, or a timeout the application set on the open socket
    (``transport.sock.settimeout``), whichever is shorter.

    Also a ``socket.timeout``, which is what py-amqp raises when its socket
    timeout runs out.  Raised by ``drain_events`` and ``blocking_read``;
    a synchronous call raises :class:`ReplyTimeout` instead (after the
    same clean-up as for its own timeout), and a wait for publisher
    confirms ``ConfirmTimeout``.  The connection stays open.
    """

    def __str__(self) -> str:
        return self.reply_text or 'the broker sent nothing in time'


class RecoveryFailed(RecoverableConnectionError):
    """Automatic recovery (``Connection(recover=True)``) gave up: its
    ``recover_timeout`` ran out, or the broker refused the login or the
    virtual host.  The connection is closed; the last error is the
    ``__cause__``."""


class ConsumerCancelled(RecoverableConnectionError):
    """The broker cancelled a consumer (basic.cancel from the server)."""


class PublishConfirmError(RecoverableChannelError):
    """A confirmed publish was returned, nacked or not confirmed in time.

    ``nacked`` and ``returned`` hold the delivery tags concerned.
    """

    def __init__(self, reply_text: Optional[str] = None,
                 nacked: Iterable[int] = (), returned: Iterable[int] = (),
                 unconfirmed: Iterable[int] = ()) -> None:
        super().__init__(reply_text)
        self.nacked = tuple(nacked)
        self.returned = tuple(returned)
        self.unconfirmed = tuple(unconfirmed)


class ContentTooLarge(RecoverableChannelError):
    """AMQP Content Too Large Error."""

    code = spec.CONTENT_TOO_LARGE


class NoRoute(ChannelError):
    """A mandatory message could not be routed (basic.return 312).

    A plain :class:`ChannelError`, as py-amqp raises for 312: publishing
    the same message again cannot route it, so kombu's ``ensure()`` must
    give up at once instead of retrying (it retries only the
    ``recoverable_channel_errors``).
    """

    code = spec.NO_ROUTE


class NoConsumers(RecoverableChannelError):
    """AMQP No Consumers Error."""

    code = spec.NO_CONSUMERS


class ConnectionForced(RecoverableConnectionError):
    """AMQP Connection Forced Error."""

    code = spec.CONNECTION_FORCED


class InvalidPath(IrrecoverableConnectionError):
    """AMQP Invalid Path Error."""

    code = spec.INVALID_PATH


class AccessRefused(IrrecoverableChannelError):
    """AMQP Access Refused Error."""

    code = spec.ACCESS_REFUSED


class NotFound(IrrecoverableChannelError):
    """AMQP Not Found Error."""

    code = spec.NOT_FOUND


class ResourceLocked(RecoverableChannelError):
    """AMQP Resource Locked Error."""

    code = spec.RESOURCE_LOCKED


class PreconditionFailed(IrrecoverableChannelError):
    """AMQP Precondition Failed Error."""

    code = spec.PRECONDITION_FAILED


class FrameError(IrrecoverableConnectionError):
    """AMQP Frame Error."""

    code = spec.FRAME_ERROR


class FrameSyntaxError(IrrecoverableConnectionError):
    """AMQP Frame Syntax Error."""

    code = spec.SYNTAX_ERROR


class InvalidCommand(IrrecoverableConnectionError):
    """AMQP Invalid Command Error."""

    code = spec.COMMAND_INVALID


class ChannelNotOpen(IrrecoverableConnectionError):
    """AMQP Channel Not Open Error."""

    code = spec.CHANNEL_ERROR


class UnexpectedFrame(IrrecoverableConnectionError):
    """AMQP Unexpected Frame."""

    code = spec.UNEXPECTED_FRAME


class ResourceError(RecoverableConnectionError):
    """AMQP Resource Error."""

    code = spec.RESOURCE_ERROR


class NotAllowed(IrrecoverableConnectionError):
    """AMQP Not Allowed Error."""

    code = spec.NOT_ALLOWED


class AMQPNotImplementedError(IrrecoverableConnectionError):
    """AMQP Not Implemented Error."""

    code = spec.NOT_IMPLEMENTED


class InternalError(IrrecoverableConnectionError):
    """AMQP Internal Error."""

    code = spec.INTERNAL_ERROR


ERROR_MAP: Dict[int, Type[AMQPError]] = {
    cls.code: cls for cls in (
        ContentTooLarge, NoRoute, NoConsumers, ConnectionForced, InvalidPath,
        AccessRefused, NotFound, ResourceLocked, PreconditionFailed,
        FrameError, FrameSyntaxError, InvalidCommand, ChannelNotOpen,
        UnexpectedFrame, ResourceError, NotAllowed, AMQPNotImplementedError,
        InternalError,
    )
}


def error_for_code(code: int, text: Optional[str],
                   method: Optional[Sequence[int]],
                   default: Type[AMQPError]) -> AMQPError:
    """Build the exception for a broker reply code.

    ``default`` is the class used when the code is unknown (py-amqp passes
    ``ConnectionError`` or ``ChannelError``).
    """
    try:
        return ERROR_MAP[code](text, method, reply_code=code)
    except KeyError:
        return default(text, method, reply_code=code)
