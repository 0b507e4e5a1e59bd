"""AMQP channels: exchanges, queues, basic, tx and confirm methods.

Public API as py-amqp 5.x's ``amqp.channel.Channel`` (kombu and celery
subclass it), plus ``basic_nack`` and pipelined publisher confirms.

Arguments are checked by the encoder of each method (one place, in
:mod:`amqp.serialization`): a bad name, flag or number raises
TypeError/ValueError naming the argument before anything is sent.

Spec: AMQP 0-9-1 sections 1.5 (channel) to 1.9 (tx); RabbitMQ extensions
(confirm.select, basic.nack, exchange.bind, consumer cancel notification).
"""
from __future__ import annotations

import logging
import socket
from collections import defaultdict
from queue import Queue
from typing import (TYPE_CHECKING, Callable, DefaultDict, Dict, List,
                    Literal, Optional, Sequence, Set, Tuple,
                    TypeVar, Union, cast, overload)

from vine import Thenable, ensure_promise, promise

from . import spec
from ._confirms import Confirms
from .abstract_channel import MethodArg
from .basic_message import Message
from .exceptions import (AMQPError, ChannelError, ChannelNotOpen,
                         ConsumerCancelled, ContentTooLarge,
                         ReadTimeout, RecoverableConnectionError,
                         ReplyTimeout, error_for_code)
from .method_framing import OversizedContent
from .protocol import queue_declare_ok_t
from .publishing import ChannelConnection, PublishBody, Publishing
from .serialization import (EncodableTable, EncodableValue, dumps_method,
                            method_encoder)

if TYPE_CHECKING:
    from typing_extensions import ParamSpec
    _P = ParamSpec('_P')

__all__ = ('Channel', 'ChannelConnection', 'ConsumerCallback',
           'CancelCallback', 'PublishBody')

logger = AMQP_LOGGER = logging.getLogger('amqp')

_Basic = spec.Basic

REJECTED_MESSAGE_WITHOUT_CALLBACK = (
    'Rejecting message with delivery tag %r for reason of having no '
    'callbacks (consumer_tag=%r exchange=%r routing_key=%r)')


# The argument format of each method comes from the spec table (the
# ``argsig`` defaults below are kept for py-amqp's signatures).
_args = spec.args_of
_PUBLISH_ARGS = _args(_Basic.Publish)
_ACK_OR_NACK = [_Basic.Ack, _Basic.Nack]
_ACK_ARGS = _args(_Basic.Ack)
_encode_ack = method_encoder(_Basic.Ack)
_GET_ARGS = _args(_Basic.Get)
_encode_get = method_encoder(_Basic.Get)
_GET_REPLIES = [_Basic.GetOk, _Basic.GetEmpty]

#: What ``basic_consume(callback=...)`` is called with for each delivery.
ConsumerCallback = Callable[[Message], object]
#: ``on_cancel(consumer_tag)`` of :meth:`Channel.basic_consume`.
CancelCallback = Callable[[str], object]
#: A consumer not yet registered: (callback, on_cancel, no_ack).
_Consumer = Tuple[Optional[ConsumerCallback], Optional[CancelCallback], bool]
#: The arguments of basic.get-ok, then the message.
_GetOk = Tuple[int, bool, str, str, int, Union[Message, OversizedContent]]
#: What send_method returns (a promise when not waiting, else the reply).
_Sent = Union[promise, MethodArg, Tuple[MethodArg, ...]]

_R = TypeVar('_R')


class Channel(Publishing):
    """An AMQP channel on a :class:`~amqp.connection.Connection`.

    ``Channel(connection, channel_id=None, auto_decode=True, on_open=None)``
    registers itself with the connection; :meth:`open` (called by
    ``Connection.channel()``) opens it on the broker.
    """

    #: After the broker closes the channel over an error, reopen it on its
    #: next use, as py-amqp does (kombu's ``default_channel`` relies on
    #: it).  False: every later call raises ChannelNotOpen instead.
    auto_revive = True

    #: None once the channel is closed
    connection: Optional[ChannelConnection]

    def __init__(self, connection: ChannelConnection,
                 channel_id: Optional[int] = None, auto_decode: bool = True,
                 on_open: Optional[Callable[..., object]] = None) -> None:
        ids = connection.channel_ids
        channel_id = ids.claim(channel_id) if channel_id else ids.allocate()
        super().__init__(connection, channel_id)
        logger.debug('using channel_id: %s', channel_id)
        self.is_open = False
        self.active = True  # flow control
        # py-amqp has it and never fills it (returns go to
        # events['basic_return']); nameko calls get_nowait() on it
        self.returned_messages: Queue[Message] = Queue()
        self.callbacks: Dict[str, Optional[ConsumerCallback]] = {}
        self.cancel_callbacks: Dict[str, CancelCallback] = {}
        self.auto_decode = auto_decode
        #: 'basic_return', 'basic_ack', 'basic_nack' -> handlers
        self.events: DefaultDict[str, Set[Callable[..., object]]] = \
            defaultdict(set)
        self.no_ack_consumers: Set[str] = set()
        self.on_open = ensure_promise(on_open)
        self._close_exc: Optional[AMQPError] = None
        # (mandatory, immediate, exchange, routing_key) of the last publish
        # and its encoded basic.publish arguments
        self._publish_key: Optional[Tuple[bool, bool, str, str]] = None
        self._publish_args: Optional[bytes] = None
        self._consumers_pending: List[_Consumer] = []
        self._confirm_publish = bool(connection.confirm_publish)
        self._confirms = Confirms()
        #: _basic_publish, or its compiled twin (see _publish_method)
        self._publish = self._publish_method()
        if type(self).basic_publish is Publishing.basic_publish:
            # what basic_publish forwards to, bound once (py-amqp binds
            # basic_publish_confirm so too): a publish costs no forwarding
            # call.  A subclass's own basic_publish is left alone.
            self.basic_publish = (  # type: ignore[method-assign]
                self.basic_publish_confirm if self._confirm_publish
                else self._publish)

    def __repr__(self) -> str:
        # State at a glance for the REPL.
        if self.is_open:
            state = 'open' if self.active else 'open, flow paused'
        elif self._close_exc is not None and (
                self.connection is not None or not self.auto_revive):
            state = 'closed by the broker (%s)%s' % (
                self._close_exc.reply_code,
                ', reopens on next use' if self.connection else '')
        else:
            state = 'closed'
        parts = ['<AMQP Channel %s %s' % (self.channel_id, state)]
        if self.callbacks:
            parts.append(', consumers=%r' % (list(self.callbacks),))
        if self._confirms.selected:
            parts.append(', confirm mode (%d unconfirmed)' % (
                len(self._confirms.unsettled),))
        parts.append(' at %#x>' % id(self))
        return ''.join(parts)

    def then(self, on_success: Callable[..., object],
             on_error: Optional[Callable[..., object]] = None) -> Thenable:
        """Call ``on_success(channel)`` once the channel is open."""
        return self.on_open.then(on_success, on_error)

    def _setup_listeners(self) -> None:
        self._callbacks = {
            spec.Channel.Close: self._on_close,
            spec.Channel.CloseOk: self._on_close_ok,
            spec.Channel.Flow: self._on_flow,
            spec.Channel.OpenOk: self._on_open_ok,
            _Basic.Cancel: self._on_basic_cancel,
            _Basic.CancelOk: self._on_basic_cancel_ok,
            _Basic.ConsumeOk: self._on_basic_consume_ok,
            _Basic.Deliver: self._on_basic_deliver,
            _Basic.Return: self._on_basic_return,
            _Basic.Ack: self._on_basic_ack,
            _Basic.Nack: self._on_basic_nack,
        }

    _ALLOWED_METHODS_WHEN_CLOSING = (spec.Channel.Close,
                                     spec.Channel.CloseOk)

    # -- lifecycle ------------------------------------------------------
    def _ensure_open(self) -> None:
        """Raise unless methods can be sent on this channel.

        A channel the broker closed is reopened here, over the network,
        when :attr:`auto_revive` is on (after first raising an error that
        arrived for it while another channel was waiting).
        """
        if self._close_exc is not None:
            connection = self.connection
            if self.auto_revive and connection is not None and \
                    connection.connected:
                connection.raise_deferred(self)
                self._revive()
                return
            raise ChannelNotOpen(
                'channel %d was closed by the broker: %s' % (
                    self.channel_id, self._close_exc),
                reply_code=self._close_exc.reply_code)
        if self.connection is None:
            raise RecoverableConnectionError(
                'channel %r is closed' % (self.channel_id,))
        # Constructed but never opened: send anyway, as py-amqp does; the
        # broker answers with a channel or connection error (kombu's own
        # tests drive channels that were never opened).

    @overload
    def _send(self, sig: spec.MethodSig, fmt: Optional[str],
              args: Optional[Sequence[EncodableValue]], content: None = None,
              wait: None = None, returns_tuple: bool = False) -> promise: ...

    @overload
    def _send(self, sig: spec.MethodSig, fmt: Optional[str],
              args: Optional[Sequence[EncodableValue]],
              content: None = None, *,
              wait: Union[spec.MethodSig, List[spec.MethodSig]],
              returns_tuple: Literal[True]) -> Tuple[MethodArg, ...]: ...

    @overload
    def _send(self, sig: spec.MethodSig, fmt: Optional[str],
              args: Optional[Sequence[EncodableValue]], content: None = None,
              wait: Union[spec.MethodSig, List[spec.MethodSig], None] = None,
              returns_tuple: bool = False) -> _Sent: ...

    def _send(self, sig: spec.MethodSig, fmt: Optional[str],
              args: Optional[Sequence[EncodableValue]], content: None = None,
              wait: Union[spec.MethodSig, List[spec.MethodSig], None] = None,
              returns_tuple: bool = False) -> _Sent:
        if not self.is_open or self.connection is None:
            self._ensure_open()
        return self.send_method(sig, fmt, args, content, wait=wait,
                                returns_tuple=returns_tuple)

    def collect(self) -> None:
        """Tear down this channel's state without network I/O."""
        self._collect(awaiting_close_ok=False)

    def _collect(self, awaiting_close_ok: bool) -> None:
        logger.debug('Closed channel #%s', self.channel_id)
        self.is_open = False
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.forget_channel(self, awaiting_close_ok)
        self.callbacks.clear()
        self.cancel_callbacks.clear()
        self.events.clear()
        self.no_ack_consumers.clear()
        self._pending.clear()

    def open(self) -> object:
        """Open the channel on the broker (channel.open / open-ok)."""
        if self.is_open:
            return None
        return self.send_method(spec.Channel.Open, _args(spec.Channel.Open),
                                ('',), wait=spec.Channel.OpenOk)

    def _on_open_ok(self, *args: object) -> None:
        self.is_open = True
        self.on_open(self)
        logger.debug('Channel open')

    def close(self, reply_code: int = 0, reply_text: str = '',
              method_sig: spec.MethodSig = (0, 0),
              argsig: str = _args(spec.Channel.Close)) -> None:
        """Close the channel; harmless when already closed.

        Waits for close-ok as long as :meth:`Connection.close` does (10 s,
        or ``connect_timeout`` when that is shorter).  Without close-ok in
        time the channel is closed all the same, and its id stays taken
        until the broker's close-ok arrives, so a new channel never
        receives it.
        """
        confirmed = False
        try:
            connection = self.connection
            if connection is None or not self.is_open:
                return None
            if connection.transport is None:
                return None
            self.is_closing = True
            args = (reply_code, reply_text, method_sig[0], method_sig[1])
            replies = [spec.Channel.CloseOk, spec.Channel.Close]
            try:
                if self._wait_replaced():
                    self.send_method(spec.Channel.Close, argsig, args)
                    self.wait(replies, timeout=connection.close_timeout)
                else:
                    self._call(spec.Channel.Close,
                               dumps_method(spec.Channel.Close, argsig,
                                            args),
                               None, replies, False,
                               connection.close_timeout, abandon=False)
                confirmed = True
            except ReadTimeout as exc:
                logger.warning('channel %s: no close-ok: %s',
                               self.channel_id, exc)
            except socket.timeout:
                logger.warning('channel %s: no close-ok within %ss',
                               self.channel_id, connection.close_timeout)
            return None
        finally:
            self.is_closing = False
            self._collect(awaiting_close_ok=not confirmed and
                          self.connection is not None)

    def _abandon_wait(self, exc: ReplyTimeout) -> None:
        """A reply did not come in time: close the channel without
        waiting; its id stays taken until close-ok (see :meth:`close`)."""
        logger.warning('channel %s: %s; closing the channel',
                       self.channel_id, exc)
        try:
            self.is_closing = True
            self.send_method(spec.Channel.Close, _args(spec.Channel.Close),
                             (0, 'client gave up waiting', 0, 0))
        except (OSError, RecoverableConnectionError):
            pass  # the connection is going anyway
        finally:
            self.is_closing = False
            self._collect(awaiting_close_ok=True)

    def _on_close(self, reply_code: int, reply_text: str, class_id: int,
                  method_id: int) -> None:
        """The broker closed the channel: close-ok, remember, raise.

        With :attr:`auto_revive` the channel keeps its id and reopens on
        its next use; its consumers and confirm state are gone either way.
        """
        self.send_method(spec.Channel.CloseOk)
        exc = error_for_code(reply_code, reply_text, (class_id, method_id),
                             ChannelError)
        if self.is_closing:  # both sides closed at once: no error to raise
            return
        self._close_exc = exc
        connection = self.connection
        if self.auto_revive:
            self.is_open = False
            self._reset_state()
        else:
            self.collect()
        # Raise from the wait that caused it, or from drain_events when no
        # other channel is in the middle of a synchronous call.
        if connection is not None and \
                connection.waiting_channel not in (None, self):
            logger.warning('channel %s closed by broker: %s',
                           self.channel_id, exc)
            if self.auto_revive:
                connection.defer_error(self, exc)
            return
        raise exc

    def _reset_state(self) -> None:
        """Forget consumers and confirms: the broker dropped them."""
        self.callbacks.clear()
        self.cancel_callbacks.clear()
        self.no_ack_consumers.clear()
        self._consumers_pending = []
        self._confirms.reset()

    def _revive(self) -> None:
        """Reopen a channel the broker closed (same id)."""
        logger.debug('reopening channel %s after %s', self.channel_id,
                     self._close_exc)
        self._close_exc = None
        self.open()

    def _on_close_ok(self) -> None:
        self.collect()

    def flow(self, active: bool) -> object:
        """Ask the broker to pause or resume deliveries (channel.flow).

        RabbitMQ does not support flow(active=False) and closes the
        channel with 540 NOT_IMPLEMENTED.
        """
        return self._send(spec.Channel.Flow, _args(spec.Channel.Flow),
                          (active,), wait=spec.Channel.FlowOk)

    def _on_flow(self, active: bool) -> None:
        self.active = active
        self.send_method(spec.Channel.FlowOk, _args(spec.Channel.FlowOk),
                         (active,))

    # -- exchanges ------------------------------------------------------
    def exchange_declare(self, exchange: str, type: str,
                         passive: bool = False, durable: bool = False,
                         auto_delete: bool = True, nowait: bool = False,
                         arguments: Optional[EncodableTable] = None,
                         argsig: str = _args(spec.Exchange.Declare)
                         ) -> None:
        """Declare an exchange (exchange.declare)."""
        self._send(spec.Exchange.Declare, argsig, (
            0, exchange, type, passive, durable, auto_delete, False, nowait,
            arguments), wait=None if nowait else spec.Exchange.DeclareOk)

    def exchange_delete(self, exchange: str, if_unused: bool = False,
                        nowait: bool = False,
                        argsig: str = _args(spec.Exchange.Delete)
                        ) -> object:
        """Delete an exchange (exchange.delete)."""
        return self._send(spec.Exchange.Delete, argsig, (
            0, exchange, if_unused, nowait),
            wait=None if nowait else spec.Exchange.DeleteOk)

    def exchange_bind(self, destination: str, source: str = '',
                      routing_key: str = '', nowait: bool = False,
                      arguments: Optional[EncodableTable] = None,
                      argsig: str = _args(spec.Exchange.Bind)) -> object:
        """Bind an exchange to an exchange (RabbitMQ exchange.bind)."""
        return self._binding(spec.Exchange.Bind, spec.Exchange.BindOk,
                             argsig, destination, source, routing_key,
                             nowait, arguments)

    def exchange_unbind(self, destination: str, source: str = '',
                        routing_key: str = '', nowait: bool = False,
                        arguments: Optional[EncodableTable] = None,
                        argsig: str = _args(spec.Exchange.Unbind)
                        ) -> object:
        """Remove an exchange-to-exchange binding (exchange.unbind)."""
        return self._binding(spec.Exchange.Unbind, spec.Exchange.UnbindOk,
                             argsig, destination, source, routing_key,
                             nowait, arguments)

    # -- queues ---------------------------------------------------------
    def queue_bind(self, queue: str, exchange: str = '',
                   routing_key: str = '', nowait: bool = False,
                   arguments: Optional[EncodableTable] = None,
                   argsig: str = _args(spec.Queue.Bind)) -> object:
        """Bind a queue to an exchange (queue.bind)."""
        return self._binding(spec.Queue.Bind, spec.Queue.BindOk, argsig,
                             queue, exchange, routing_key, nowait, arguments)

    def _binding(self, method: spec.MethodSig, reply: spec.MethodSig,
                 argsig: str, destination: str, source: str,
                 routing_key: str, nowait: bool,
                 arguments: Optional[EncodableTable]) -> object:
        """exchange.bind/unbind and queue.bind: the same arguments."""
        return self._send(method, argsig, (
            0, destination, source, routing_key, nowait, arguments),
            wait=None if nowait else reply)

    def queue_unbind(self, queue: str, exchange: str, routing_key: str = '',
                     nowait: bool = False,
                     arguments: Optional[EncodableTable] = None,
                     argsig: str = _args(spec.Queue.Unbind)) -> object:
        """Unbind a queue from an exchange (queue.unbind; never nowait)."""
        return self._send(spec.Queue.Unbind, argsig, (
            0, queue, exchange, routing_key, arguments),
            wait=spec.Queue.UnbindOk)

    @overload
    def queue_declare(self, queue: str = '', passive: bool = False,
                      durable: bool = False, exclusive: bool = False,
                      auto_delete: bool = True,
                      nowait: Literal[False] = False,
                      arguments: Optional[EncodableTable] = None,
                      argsig: str = _args(spec.Queue.Declare)
                      ) -> queue_declare_ok_t: ...

    @overload
    def queue_declare(self, queue: str = '', passive: bool = False,
                      durable: bool = False, exclusive: bool = False,
                      auto_delete: bool = True, nowait: bool = False,
                      arguments: Optional[EncodableTable] = None,
                      argsig: str = _args(spec.Queue.Declare)
                      ) -> Optional[queue_declare_ok_t]: ...

    def queue_declare(self, queue: str = '', passive: bool = False,
                      durable: bool = False, exclusive: bool = False,
                      auto_delete: bool = True, nowait: bool = False,
                      arguments: Optional[EncodableTable] = None,
                      argsig: str = _args(spec.Queue.Declare)
                      ) -> Optional[queue_declare_ok_t]:
        """Declare a queue; returns ``queue_declare_ok_t(queue,
        message_count, consumer_count)`` (None with ``nowait``)."""
        reply = self._send(spec.Queue.Declare, argsig, (
            0, queue, passive, durable, exclusive, auto_delete, nowait,
            arguments), wait=None if nowait else spec.Queue.DeclareOk,
            returns_tuple=True)
        if not nowait:
            return queue_declare_ok_t(*cast(Tuple[str, int, int], reply))
        return None

    @overload
    def queue_delete(self, queue: str = '', if_unused: bool = False,
                     if_empty: bool = False, nowait: Literal[False] = False,
                     argsig: str = _args(spec.Queue.Delete)) -> int: ...

    @overload
    def queue_delete(self, queue: str = '', if_unused: bool = False,
                     if_empty: bool = False, nowait: bool = False,
                     argsig: str = _args(spec.Queue.Delete)
                     ) -> Union[int, promise]: ...

    def queue_delete(self, queue: str = '', if_unused: bool = False,
                     if_empty: bool = False, nowait: bool = False,
                     argsig: str = _args(spec.Queue.Delete)
                     ) -> Union[int, promise]:
        """Delete a queue; returns the number of messages it held (a
        promise with ``nowait``)."""
        # delete-ok carries the message count
        return cast(Union[int, promise], self._send(
            spec.Queue.Delete, argsig, (0, queue, if_unused, if_empty,
                                        nowait),
            wait=None if nowait else spec.Queue.DeleteOk))

    @overload
    def queue_purge(self, queue: str = '', nowait: Literal[False] = False,
                    argsig: str = _args(spec.Queue.Purge)) -> int: ...

    @overload
    def queue_purge(self, queue: str = '', nowait: bool = False,
                    argsig: str = _args(spec.Queue.Purge)
                    ) -> Union[int, promise]: ...

    def queue_purge(self, queue: str = '', nowait: bool = False,
                    argsig: str = _args(spec.Queue.Purge)
                    ) -> Union[int, promise]:
        """Purge a queue; returns the number of messages removed (a
        promise with ``nowait``)."""
        # purge-ok carries the message count
        return cast(Union[int, promise], self._send(
            spec.Queue.Purge, argsig, (0, queue, nowait),
            wait=None if nowait else spec.Queue.PurgeOk))

    # -- basic ----------------------------------------------------------
    def basic_ack(self, delivery_tag: Optional[int], multiple: bool = False,
                  argsig: str = _args(_Basic.Ack)) -> object:
        """Acknowledge one message (or all up to it with ``multiple``)."""
        connection = self.connection
        if self.is_open and connection is not None and \
                argsig == _ACK_ARGS and delivery_tag is not None:
            # the common case, in as few calls as can be: once per message
            connection.frame_writer(  # type: ignore[misc]  # open: set
                spec.FRAME_METHOD, self.channel_id, _Basic.Ack,
                _encode_ack((delivery_tag, multiple)))
            return None
        return self._send(_Basic.Ack, argsig, (
            _check_tag(delivery_tag), multiple))

    def basic_nack(self, delivery_tag: Optional[int], multiple: bool = False,
                   requeue: bool = True,
                   argsig: str = _args(_Basic.Nack)) -> object:
        """Reject one or several messages (RabbitMQ basic.nack)."""
        return self._send(_Basic.Nack, argsig, (
            _check_tag(delivery_tag), multiple, requeue))

    def basic_reject(self, delivery_tag: Optional[int], requeue: bool,
                     argsig: str = _args(_Basic.Reject)) -> object:
        """Reject a message (basic.reject)."""
        return self._send(_Basic.Reject, argsig, (
            _check_tag(delivery_tag), requeue))

    def basic_recover(self, requeue: bool = False) -> object:
        """Redeliver unacknowledged messages (basic.recover)."""
        return self._send(_Basic.Recover, _args(_Basic.Recover), (requeue,),
                          wait=_Basic.RecoverOk)

    def basic_recover_async(self, requeue: bool = False) -> object:
        """Deprecated asynchronous recover (basic.recover-async)."""
        return self._send(_Basic.RecoverAsync, _args(_Basic.RecoverAsync),
                          (requeue,))

    def basic_qos(self, prefetch_size: int, prefetch_count: int,
                  a_global: bool, argsig: str = _args(_Basic.Qos)
                  ) -> object:
        """Limit unacknowledged deliveries (basic.qos)."""
        return self._send(_Basic.Qos, argsig, (
            prefetch_size, prefetch_count, a_global), wait=_Basic.QosOk)

    @overload
    def basic_consume(self, queue: str = '', consumer_tag: str = '',
                      no_local: bool = False, no_ack: bool = False,
                      exclusive: bool = False,
                      nowait: Literal[False] = False,
                      callback: Optional[ConsumerCallback] = None,
                      arguments: Optional[EncodableTable] = None,
                      on_cancel: Optional[CancelCallback] = None,
                      argsig: str = _args(_Basic.Consume)) -> str: ...

    @overload
    def basic_consume(self, queue: str = '', consumer_tag: str = '',
                      no_local: bool = False, no_ack: bool = False,
                      exclusive: bool = False, nowait: bool = False,
                      callback: Optional[ConsumerCallback] = None,
                      arguments: Optional[EncodableTable] = None,
                      on_cancel: Optional[CancelCallback] = None,
                      argsig: str = _args(_Basic.Consume)
                      ) -> Union[str, promise]: ...

    def basic_consume(self, queue: str = '', consumer_tag: str = '',
                      no_local: bool = False, no_ack: bool = False,
                      exclusive: bool = False, nowait: bool = False,
                      callback: Optional[ConsumerCallback] = None,
                      arguments: Optional[EncodableTable] = None,
                      on_cancel: Optional[CancelCallback] = None,
                      argsig: str = _args(_Basic.Consume)
                      ) -> Union[str, promise]:
        """Start a consumer; returns its consumer tag (with ``nowait``, the
        promise of the send; the tag is the one given).

        ``callback(message)`` is called for each delivery; ``on_cancel(tag)``
        when the broker cancels the consumer (otherwise ConsumerCancelled is
        raised from the wait that receives the cancel).
        """
        if callback is not None and not callable(callback):
            raise TypeError('callback must be callable, not %s'
                            % type(callback).__name__)
        if on_cancel is not None and not callable(on_cancel):
            raise TypeError('on_cancel must be callable, not %s'
                            % type(on_cancel).__name__)
        if nowait and not consumer_tag:
            raise ValueError('basic_consume with nowait=True needs an '
                             'explicit consumer_tag')
        args = (0, queue, consumer_tag, no_local, no_ack, exclusive, nowait,
                arguments)
        consumer: _Consumer = (callback, on_cancel, no_ack)
        if nowait:
            self._register_consumer(consumer_tag, consumer)
            return self._send(_Basic.Consume, argsig, args)
        # Deliveries can follow consume-ok in the same read: register the
        # consumer when consume-ok is dispatched, not after the wait.
        pending = self._consumers_pending
        pending.append(consumer)
        try:
            reply = self._send(_Basic.Consume, argsig, args,
                               wait=_Basic.ConsumeOk, returns_tuple=True)
        finally:
            unregistered = consumer in pending
            if unregistered:
                pending.remove(consumer)
        consumer_tag = cast(str, reply[0])  # consume-ok's only argument
        if unregistered:  # consume-ok was not dispatched (a wait() override)
            self._register_consumer(consumer_tag, consumer)
        return consumer_tag

    def _register_consumer(self, consumer_tag: str,
                           consumer: _Consumer) -> None:
        callback, on_cancel, no_ack = consumer
        self.callbacks[consumer_tag] = callback
        connection = self.connection
        if connection is not None:
            connection.note_consumer(self)
        if on_cancel:
            self.cancel_callbacks[consumer_tag] = on_cancel
        if no_ack:
            self.no_ack_consumers.add(consumer_tag)

    def _on_basic_consume_ok(self, consumer_tag: str) -> None:
        if self._consumers_pending:
            self._register_consumer(consumer_tag,
                                    self._consumers_pending.pop(0))

    def basic_cancel(self, consumer_tag: str, nowait: bool = False,
                     argsig: str = _args(_Basic.Cancel)) -> object:
        """Cancel a consumer; harmless on a closed channel."""
        if self.connection is not None and self._close_exc is None:
            self.no_ack_consumers.discard(consumer_tag)
            return self._send(_Basic.Cancel, argsig, (consumer_tag, nowait),
                              wait=None if nowait else _Basic.CancelOk)
        return None

    def _remove_tag(self, consumer_tag: str) -> Optional[CancelCallback]:
        self.no_ack_consumers.discard(consumer_tag)
        self.callbacks.pop(consumer_tag, None)
        return self.cancel_callbacks.pop(consumer_tag, None)

    def _on_basic_cancel(self, consumer_tag: str,
                         nowait: bool = False) -> None:
        # Server-sent (queue deleted, node down): only this consumer goes.
        callback = self._remove_tag(consumer_tag)
        if callback:
            callback(consumer_tag)
        else:
            self._raise_or_defer(
                ConsumerCancelled(consumer_tag, _Basic.Cancel))

    def _raise_or_defer(self, exc: BaseException) -> None:
        """Raise ``exc`` now unless a synchronous call is mid-wait.

        Raising inside a wait would abort it and lose its reply; the error
        is kept and raised once that wait has its reply (when it is this
        channel's), else from this channel's next wait or dispatch, or
        from drain_events.
        """
        connection = self.connection
        if connection is not None and connection.waiting_channel is not None:
            logger.debug('channel %s: deferring %r', self.channel_id, exc)
            connection.defer_error(self, exc)
            return
        raise exc

    def _on_basic_cancel_ok(self, consumer_tag: str) -> None:
        self._remove_tag(consumer_tag)

    def _decode_body(self, msg: Message) -> None:
        encoding = msg.properties.get('content_encoding')
        if encoding and self.auto_decode:
            try:
                # A received body is bytes until decoded here (a str one
                # raises AttributeError, caught); a received
                # content_encoding is a str.
                msg.body = msg.body.decode(  # type: ignore[union-attr]
                    encoding)  # type: ignore[arg-type]
            # ValueError: a codec name with a NUL, or with bytes that are
            # not UTF-8 (UnicodeEncodeError), as a broken peer may send
            except (LookupError, ValueError, AttributeError):
                pass

    def _on_basic_deliver(self, consumer_tag: str, delivery_tag: int,
                          redelivered: bool, exchange: str, routing_key: str,
                          msg: Union[Message, OversizedContent]) -> None:
        if type(msg) is OversizedContent:
            self._raise_or_defer(self._refuse_oversized(
                msg, delivery_tag, consumer_tag not in self.no_ack_consumers,
                'delivery to consumer %r' % (consumer_tag,)))
            return
        msg.channel = self
        msg.delivery_info = {
            'consumer_tag': consumer_tag,
            'delivery_tag': delivery_tag,
            'redelivered': redelivered,
            'exchange': exchange,
            'routing_key': routing_key,
        }
        if self.auto_decode and msg.properties.get('content_encoding'):
            self._decode_body(msg)
        fun = self.callbacks.get(consumer_tag)
        if fun is None:
            logger.warning(REJECTED_MESSAGE_WITHOUT_CALLBACK, delivery_tag,
                           consumer_tag, exchange, routing_key)
            self.basic_reject(delivery_tag, requeue=True)
            return
        fun(msg)

    def _refuse_oversized(self, content: OversizedContent, delivery_tag: int,
                          acked: bool, what: str) -> ContentTooLarge:
        """A message over ``max_message_size`` was skipped unread: reject
        it without requeueing when it awaits an ack (the broker then
        dead-letters or drops it, instead of redelivering it forever) and
        return the error to raise."""
        if acked:
            self.basic_reject(delivery_tag, requeue=False)
        return ContentTooLarge(
            '%s on channel %s: a message of %d bytes exceeds '
            'max_message_size=%d; it was discarded%s' % (
                what, self.channel_id, content.body_size, content.limit,
                ' and rejected' if acked else ''),
            _Basic.Deliver)

    def basic_get(self, queue: str = '', no_ack: bool = False,
                  argsig: str = _args(_Basic.Get)) -> Optional[Message]:
        """Fetch one message; returns a Message or None if the queue is
        empty."""
        connection = self.connection
        if not self.is_open or connection is None:
            self._ensure_open()
            connection = self.connection
        if argsig == _GET_ARGS and connection is not None and \
                self._plain_calls():
            # the round trip in as few calls as can be: what send_method
            # would do, without its general cases
            ret: object = self._call(
                _Basic.Get, _encode_get((0, queue, no_ack)), None,
                _GET_REPLIES, True, connection.reply_timeout)
        else:
            ret = self.send_method(_Basic.Get, argsig, (0, queue, no_ack),
                                   wait=[_Basic.GetOk, _Basic.GetEmpty],
                                   returns_tuple=True)
        if TYPE_CHECKING:
            got = cast(_GetOk, ret)
        else:               # no run-time call on the round trip
            got = ret
        if not got or len(got) < 2:
            return None
        delivery_tag, redelivered, exchange, routing_key, message_count, \
            msg = got
        if type(msg) is OversizedContent:
            raise self._refuse_oversized(msg, delivery_tag, not no_ack,
                                         'basic.get from %r' % (queue,))
        msg.channel = self
        msg.delivery_info = {
            'delivery_tag': delivery_tag,
            'redelivered': redelivered,
            'exchange': exchange,
            'routing_key': routing_key,
            'message_count': message_count,
        }
        if self.auto_decode and msg.properties.get('content_encoding'):
            self._decode_body(msg)
        return msg

    # -- transactions ---------------------------------------------------
    def tx_select(self) -> object:
        """Use transactions on this channel (tx.select)."""
        return self._send(spec.Tx.Select, None, None, wait=spec.Tx.SelectOk)

    def tx_commit(self) -> object:
        """Commit the current transaction (tx.commit)."""
        return self._send(spec.Tx.Commit, None, None, wait=spec.Tx.CommitOk)

    def tx_rollback(self) -> object:
        """Abandon the current transaction (tx.rollback)."""
        return self._send(spec.Tx.Rollback, None, None,
                          wait=spec.Tx.RollbackOk)



def _check_tag(delivery_tag: Optional[int]) -> int:
    """Refuse a missing delivery tag (None: the tag of a message that was
    not received, which the type allows so that ``basic_ack(msg.delivery_tag)``
    type-checks; the encoder would send None as 0,
    which with ``multiple`` acknowledges every outstanding message); the
    encoder checks the type and range of any other value."""
    if delivery_tag is None:
        raise TypeError('delivery_tag must be an int, not None')
    return delivery_tag
