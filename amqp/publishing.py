"""Publishing on a channel: basic.publish, publisher confirms (RabbitMQ
confirm.select, basic.ack/nack from the broker), returns, and kombu's
publish batches.

:class:`Publishing` is a part of :class:`~amqp.channel.Channel` (its base
class), kept in a module of its own; the confirm bookkeeping itself is
:class:`~amqp._confirms.Confirms`.
"""
from __future__ import annotations

import inspect
from typing import (TYPE_CHECKING, Any, Callable, DefaultDict, Dict, List,
                    Optional, Protocol, Sequence, Set, Tuple, TypeVar, Union)


from . import spec
from ._confirms import ConfirmCallback, Confirms, PublishBatch
from .abstract_channel import AbstractChannel, ConnectionLike
from .basic_message import Message
from .exceptions import (ChannelError, PublishConfirmError,
                         RecoverableConnectionError, error_for_code)
from .serialization import EncodableValue, dumps_method, speedups

if TYPE_CHECKING:
    from typing_extensions import ParamSpec
    _P = ParamSpec('_P')

__all__ = ('Publishing', 'ChannelConnection', 'PublishBody')

_Basic = spec.Basic
_args = spec.args_of
_PUBLISH_ARGS = _args(_Basic.Publish)
_ACK_OR_NACK = [_Basic.Ack, _Basic.Nack]


def _not_in(key: int, container: Dict[int, Any]) -> Callable[[], bool]:
    """``lambda: key not in container``: with the compiled module, a
    callable that costs no Python frame each time a wait asks it."""
    if speedups is not None:
        not_in: Callable[[], bool] = speedups.NotIn(key, container)
        return not_in
    return lambda: key not in container

#: The body of a message that can be published.
PublishBody = Union[bytes, bytearray, memoryview, str]

_R = TypeVar('_R')


class ChannelConnection(ConnectionLike, Protocol):
    """What a :class:`Channel` needs of its connection: the interface every
    channel uses (:class:`~amqp.abstract_channel.ConnectionLike`) and the
    settings of :class:`~amqp.connection.Connection` it reads."""

    @property
    def confirm_publish(self) -> object:
        """Whether every basic_publish waits for its confirm (truth
        value)."""

    @property
    def blocked(self) -> Optional[str]:
        """Why the broker blocks publishing (connection.blocked), or
        None."""

    @property
    def blocked_timeout(self) -> Optional[float]:
        """Longest a publish waits while the connection is blocked."""

    @property
    def close_timeout(self) -> float:
        """Longest a close waits for close-ok."""

    def wait_unblocked(self, timeout: float) -> None:
        """Wait until the broker unblocks the connection, at most
        ``timeout`` seconds."""


def _forwards_to(target: Callable[_P, object]
                 ) -> Callable[[Callable[..., _R]], Callable[_P, _R]]:
    """Give a method that forwards ``*args, **kwargs`` unchanged to
    ``target`` the parameters of ``target``: for type checkers (through the
    ParamSpec) and for help() and inspect (``__signature__``).

    The method itself is returned as it is, so calls cost what they did.
    """
    def forwarding(method: Callable[..., _R]) -> Callable[_P, _R]:
        signature = inspect.signature(target).replace(
            return_annotation=inspect.signature(method).return_annotation)
        setattr(method, '__signature__', signature)
        return method
    return forwarding


def _encode_publish(exchange: str, routing_key: str, mandatory: bool,
                    immediate: bool) -> bytes:
    """basic.publish's arguments, encoded as Publishing._basic_publish
    encodes them (the compiled Publish keeps the last destination's)."""
    return dumps_method(_Basic.Publish, _PUBLISH_ARGS,
                        (0, exchange, routing_key, mandatory, immediate))


class Publishing(AbstractChannel):
    """basic_publish and publisher confirms, for
    :class:`~amqp.channel.Channel`."""

    # Set by Channel (declared for type checkers).
    connection: Optional[ChannelConnection]
    is_open: bool
    events: DefaultDict[str, Set[Callable[..., object]]]
    _confirms: Confirms
    _confirm_publish: bool
    _publish_key: Optional[Tuple[bool, bool, str, str]]
    _publish_args: Optional[bytes]
    _publish: Callable[..., Optional[int]]

    if TYPE_CHECKING:
        def _ensure_open(self) -> None: ...

        def _raise_or_defer(self, exc: BaseException) -> None: ...

        def _send(self, sig: spec.MethodSig, fmt: Optional[str],
                  args: Optional[Sequence[EncodableValue]],
                  content: None = None,
                  wait: Union[spec.MethodSig, List[spec.MethodSig],
                              None] = None,
                  returns_tuple: bool = False) -> object: ...

    def _basic_publish(self, msg: Message[PublishBody], exchange: str = '',
                       routing_key: str = '', mandatory: bool = False,
                       immediate: bool = False,
                       timeout: Optional[float] = None,
                       confirm_timeout: Optional[float] = None,
                       argsig: str = _PUBLISH_ARGS,
                       on_confirm: Optional[ConfirmCallback] = None
                       ) -> Optional[int]:
        """Publish ``msg`` (basic.publish); see :meth:`basic_publish`.

        ``timeout`` bounds the socket write.  In confirm mode returns the
        publish's delivery tag, and with ``confirm_timeout`` also waits up
        to that long for its confirm (raising as
        :meth:`basic_publish_confirm` does); otherwise returns None and
        ``confirm_timeout`` has nothing to wait for.
        """
        if not self.is_open or self.connection is None:
            self._ensure_open()
        if on_confirm is not None and not callable(on_confirm):
            raise TypeError('on_confirm must be callable, not %s'
                            % type(on_confirm).__name__)
        if type(msg) is not Message or type(msg.body) is not bytes:
            # (the common case, a Message with a bytes body, skips this)
            if not hasattr(msg, 'properties') or not hasattr(msg, 'body'):
                raise TypeError('msg must be an amqp.Message, not %s'
                                % type(msg).__name__)
            if not isinstance(msg.body,
                              (bytes, bytearray, memoryview, str)):
                raise TypeError('msg.body must be bytes or str, not %s'
                                % type(msg.body).__name__)
        # Publishing to the same destination again is the common case: the
        # encoded arguments of the last publish are reused.
        key = self._publish_key
        if key is not None and key[0] is mandatory and key[1] is immediate \
                and key[2] == exchange and key[3] == routing_key \
                and argsig == _PUBLISH_ARGS:
            payload = self._publish_args
        else:
            payload = dumps_method(_Basic.Publish, argsig, (
                0, exchange, routing_key, mandatory, immediate))
            if argsig == _PUBLISH_ARGS and type(exchange) is str and \
                    type(routing_key) is str:
                self._publish_key = (mandatory, immediate, exchange,
                                     routing_key)
                self._publish_args = payload
        # _ensure_open() above raised unless there is a connection
        connection: ChannelConnection = \
            self.connection  # type: ignore[assignment]
        if connection.blocked is not None and connection.blocked_timeout:
            connection.wait_unblocked(connection.blocked_timeout)
        confirms = self._confirms
        if on_confirm is not None and not confirms.selected:
            self.confirm_select()
        writer = connection.frame_writer
        if writer is None:
            raise RecoverableConnectionError('connection already closed')
        if not confirms.selected:
            if timeout is not None:
                # a transport is open while the frame writer is set
                with connection.transport.having_timeout(  # type: ignore[union-attr]
                        timeout):
                    writer(spec.FRAME_METHOD, self.channel_id,
                           _Basic.Publish, payload, msg)
            else:
                writer(spec.FRAME_METHOD, self.channel_id, _Basic.Publish,
                       payload, msg)
            return None
        # The tag is recorded before the write: its ack may be read by
        # another thread the moment the publish is out.
        tag = confirms.published(on_confirm, mandatory, exchange,
                                 routing_key)
        try:
            if timeout is None:
                writer(spec.FRAME_METHOD, self.channel_id, _Basic.Publish,
                       payload, msg)
            else:
                with connection.transport.having_timeout(  # type: ignore[union-attr]
                        timeout):
                    writer(spec.FRAME_METHOD, self.channel_id,
                           _Basic.Publish, payload, msg)
        except BaseException:
            self._publish_failed(tag)
            raise
        if confirm_timeout is not None:
            self._await_confirm(tag, confirm_timeout)
        return tag

    def _publish_failed(self, tag: int) -> None:
        """The write of the confirm-mode publish ``tag`` raised: withdraw
        the tag when nothing was sent (a cut-off write breaks the
        transport, and the broker may have counted it)."""
        connection = self.connection
        transport = None if connection is None else connection.transport
        if transport is not None and transport.broken is None and \
                transport.connected:
            self._confirms.withdraw(tag)

    def _publish_method(self) -> Callable[..., Optional[int]]:
        """What ``basic_publish`` is bound to (without ``confirm_publish``)
        and :meth:`basic_publish_confirm` publishes with: the bound
        :meth:`_basic_publish`, or with the compiled module its twin
        ``_speedups.Publish``, which writes the common case (an open
        channel, an unblocked connection, a Message with a bytes body, str
        names, bool flags, no other argument; in confirm mode recording
        the publish first and returning its tag) itself and calls
        :meth:`_basic_publish` for everything else.  A subclass that
        overrides :meth:`_basic_publish` (recovery does) gets its own
        method."""
        pure = self._basic_publish
        if speedups is None or \
                type(self)._basic_publish is not Publishing._basic_publish:
            return pure
        twin: Callable[..., Optional[int]] = speedups.Publish(
            pure, self, self.channel_id, self._confirms, _encode_publish,
            Message, speedups.FrameWriter, _Basic.Publish)
        return twin

    # basic_publish and basic_publish_confirm forward the caller's
    # arguments to _basic_publish unchanged.  _forwards_to gives them its
    # parameters for type checkers (a ParamSpec) and for help() (the
    # __signature__), and returns the method itself: no wrapper, no
    # duplicated signature to keep in step, a call costs what it did.
    # (The Any below is that of the forwarded arguments, which callers see
    # typed as _basic_publish's.)
    @_forwards_to(_basic_publish)
    def basic_publish(self, *args: Any, **kwargs: Any) -> Optional[int]:
        """Publish a message: ``basic_publish(msg, exchange='',
        routing_key='', mandatory=False, immediate=False, timeout=None,
        confirm_timeout=None, argsig='Bssbb', *, on_confirm=None)``.

        With ``Connection(confirm_publish=True)`` the arguments go, as
        given, to :meth:`basic_publish_confirm`, which waits for the
        broker's ack.  ``timeout`` bounds the socket write.
        ``on_confirm(delivery_tag, outcome)`` (keyword only; puts the
        channel in confirm mode) is called once the broker settles this
        publish, with ``outcome`` one of ``'ack'``, ``'nack'``,
        ``'returned'``.  Returns the delivery tag in confirm mode (None
        otherwise).  Invalid arguments raise TypeError/ValueError before
        anything is sent.
        """
        if self._confirm_publish:
            return self.basic_publish_confirm(*args, **kwargs)
        return self._basic_publish(*args, **kwargs)

    @_forwards_to(_basic_publish)
    def basic_publish_confirm(self, *args: Any, **kwargs: Any) -> None:
        """Publish and wait for the broker's confirm; arguments as
        :meth:`basic_publish`.

        Raises MessageNacked on basic.nack, the return's error (NoRoute,
        NoConsumers) when a mandatory publish comes back and no
        ``events['basic_return']`` handler is set, and
        :class:`~amqp._confirms.ConfirmTimeout` (a ``socket.timeout``)
        when no confirm arrives within ``confirm_timeout`` (or
        ``timeout``).
        """
        confirm_timeout = kwargs.pop('confirm_timeout', None)
        if not self._confirms.selected:
            self.confirm_select()
        tag = self._publish(*args, **kwargs)
        timeout = confirm_timeout or kwargs.get('timeout')
        # in confirm mode (selected above) every publish has a tag
        self._await_confirm(tag, timeout)  # type: ignore[arg-type]
        return None

    def _confirm_drain(self) -> Optional[
            Callable[[Callable[[], bool], Optional[float]], None]]:
        """How to wait for many acks at once: one wait_until on the
        connection (acks reach _on_basic_ack as they are dispatched),
        instead of one wait() per ack.  None when wait() was replaced on
        this channel (kombu's tests do that): then it is called per ack."""
        if self._wait_replaced() or self.connection is None:
            return None
        return self._drain_acks

    def _drain_acks(self, done: Callable[[], bool],
                    deadline: Optional[float]) -> None:
        connection = self.connection
        if connection is None:   # closed by another thread meanwhile
            raise RecoverableConnectionError(
                'channel %r closed while waiting for publisher confirms'
                % (self.channel_id,))
        connection.wait_until(self, done, deadline, _ACK_OR_NACK)
        if connection.deferred_errors:
            connection.raise_deferred(self)

    def _await_confirm(self, tag: int, timeout: Optional[float]) -> None:
        confirms = self._confirms
        unsettled = confirms.unsettled
        confirms.wait(self.wait, _not_in(tag, unsettled), timeout, tag,
                      self._confirm_drain())
        exc = confirms.outcome(tag)
        if exc is not None and not self.events.get('basic_return'):
            raise exc

    def confirm_select(self, nowait: bool = False) -> None:
        """Put the channel in publisher-confirm mode (confirm.select).

        Delivery tags count publishes from 1 after the first call; calling
        it again is harmless.
        """
        self._send(spec.Confirm.Select, _args(spec.Confirm.Select),
                   (nowait,), wait=None if nowait else spec.Confirm.SelectOk)
        self._confirms.select()

    def settles_quietly(self) -> bool:
        """Whether a basic.ack or basic.nack arriving now would run no
        application code (no ``on_confirm`` callback unsettled, no
        ``events['basic_ack']``/``['basic_nack']`` handler): the reader
        may then dispatch it while it holds the read role."""
        events = self.events
        # (Confirms.quiet(), inline: asked for every ack a wait reads)
        return not self._confirms.callbacks and \
            not events.get('basic_ack') and not events.get('basic_nack')

    def _on_basic_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._confirms.settle(delivery_tag, multiple, False)
        for callback in self.events['basic_ack']:
            callback(delivery_tag, multiple)

    def _on_basic_nack(self, delivery_tag: int, multiple: bool,
                       requeue: bool = False) -> None:
        self._confirms.settle(delivery_tag, multiple, True)
        for callback in self.events['basic_nack']:
            callback(delivery_tag, multiple)

    def wait_for_confirms(self, timeout: Optional[float] = None) -> bool:
        """Wait until every publish so far is confirmed; return True.

        Raises :class:`~amqp.exceptions.PublishConfirmError` whose
        ``nacked``, ``returned`` and ``unconfirmed`` name the delivery tags
        that were nacked, returned (mandatory, unroutable) or still
        unconfirmed when ``timeout`` ran out, since the previous call.
        """
        confirms = self._confirms
        if not confirms.selected:
            raise ChannelError('wait_for_confirms needs confirm_select() '
                               'first')
        unsettled = confirms.unsettled
        try:
            confirms.wait(self.wait, lambda: not unsettled, timeout,
                          '%d publishes' % len(unsettled),
                          self._confirm_drain())
        except PublishConfirmError as exc:
            nacked, returned = confirms.take_failures()
            exc.nacked, exc.returned = tuple(nacked), tuple(returned)
            exc.unconfirmed = tuple(sorted(set(exc.unconfirmed) |
                                           set(confirms.take_lost())))
            raise
        nacked, returned = confirms.take_failures()
        lost = confirms.take_lost()
        if nacked or returned or lost:
            raise PublishConfirmError(
                'publishes not accepted: nacked=%s returned=%s%s' % (
                    nacked, returned,
                    ' unconfirmed (connection lost)=%s' % lost if lost
                    else ''),
                nacked=nacked, returned=returned, unconfirmed=lost)
        return True

    def create_publish_batch(self, max_size: int) -> PublishBatch:
        """kombu 5.7 ``Producer.batch()`` hook: a
        :class:`~amqp._confirms.PublishBatch` on this channel."""
        return PublishBatch(
            self, max_size, self._basic_publish, self._select_confirms_once,
            lambda: self._confirm_publish or self._confirms.selected)

    def _select_confirms_once(self) -> None:
        if not self._confirms.selected:
            self.confirm_select()

    #: kombu 5.7 probes this before using :meth:`create_publish_batch`.
    supports_batch_publish = True

    def _on_basic_return(self, reply_code: int, reply_text: str,
                         exchange: str, routing_key: str,
                         message: Message) -> None:
        exc = error_for_code(reply_code, reply_text, _Basic.Return,
                             ChannelError)
        confirming = self._confirms.selected
        if confirming:
            self._confirms.returned(exc, exchange, routing_key)
        handlers = self.events.get('basic_return')
        if not handlers:
            if confirming:
                return  # reported by wait_for_confirms / the confirm wait
            self._raise_or_defer(exc)
            return
        for callback in handlers:
            callback(exc, exchange, routing_key, message)
