"""AMQP channels: exchanges, queues, basic, tx and confirm methods.

Public API as py-amqp 5.x's ``amqp.channel.Channel`` (kombu and celery
subclass it), plus ``basic_nack`` and pipelined publisher confirms.

Spec: AMQP 0-9-1 sections 1.5 (channel) to 1.9 (tx); RabbitMQ extensions
(confirm.select, basic.nack, exchange.bind, consumer cancel notification).
"""
import logging
import socket
from collections import defaultdict
from queue import Queue
from time import monotonic

from vine import ensure_promise

from . import spec
from .abstract_channel import AbstractChannel
from .basic_message import Message, outgoing
from .exceptions import (ChannelError, ChannelNotOpen, ConsumerCancelled,
                         MessageNacked, PublishConfirmError,
                         RecoverableConnectionError,
                         error_for_code)
from ._confirms import PublishBatch
from .protocol import queue_declare_ok_t
from .serialization import dumps

__all__ = ('Channel',)

logger = AMQP_LOGGER = logging.getLogger('amqp')

_Basic = spec.Basic

REJECTED_MESSAGE_WITHOUT_CALLBACK = (
    'Rejecting message with delivery tag %r for reason of having no '
    'callbacks (consumer_tag=%r exchange=%r routing_key=%r)')


def _check_name(value, field):
    """Exchange/queue/routing-key names: str or bytes, at most 255 bytes."""
    if type(value) is str:
        if len(value) > 85 and len(value.encode('utf-8', 'surrogateescape')) \
                > 255:
            raise ValueError('%s is %d bytes long; AMQP allows at most 255'
                             % (field, len(value.encode('utf-8'))))
        return value
    if value is None:
        return ''
    if isinstance(value, (bytes, str)):
        if len(value) > 255:
            raise ValueError('%s is %d bytes long; AMQP allows at most 255'
                             % (field, len(value)))
        return value
    raise TypeError('%s must be a str, not %s' % (field,
                                                   type(value).__name__))


def _check_flag(value, field):
    if value is True or value is False:
        return value
    if isinstance(value, int) or value is None:
        return bool(value)
    raise TypeError('%s must be a bool, not %s' % (field,
                                                    type(value).__name__))


def _check_tag(delivery_tag, field='delivery_tag'):
    if type(delivery_tag) is not int or not \
            0 <= delivery_tag <= 0xFFFFFFFFFFFFFFFF:
        if isinstance(delivery_tag, bool) or not isinstance(delivery_tag,
                                                            int):
            raise TypeError('%s must be an int, not %s' % (
                field, type(delivery_tag).__name__))
        raise ValueError('%s=%d is outside 0..2**64-1' % (field,
                                                          delivery_tag))
    return delivery_tag


class Channel(AbstractChannel):
    """An AMQP channel on a :class:`~amqp.connection.Connection`.

    ``Channel(connection, channel_id=None, auto_decode=True, on_open=None)``
    registers itself with the connection; :meth:`open` (called by
    ``Connection.channel()``) opens it on the broker.
    """

    #: After the broker closes the channel over an error, reopen it on its
    #: next use, as py-amqp does (kombu's ``default_channel`` relies on
    #: it).  False: every later call raises ChannelNotOpen instead.
    auto_revive = True

    def __init__(self, connection, channel_id=None, auto_decode=True,
                 on_open=None):
        if channel_id:
            connection._claim_channel_id(channel_id)
        else:
            channel_id = connection._get_free_channel_id()
        super().__init__(connection, channel_id)
        logger.debug('using channel_id: %s', channel_id)
        self.is_open = False
        self.active = True  # flow control
        # py-amqp has it and never fills it (returns go to
        # events['basic_return']); nameko calls get_nowait() on it
        self.returned_messages = Queue()
        self.callbacks = {}
        self.cancel_callbacks = {}
        self.auto_decode = auto_decode
        self.events = defaultdict(set)
        self.no_ack_consumers = set()
        self.on_open = ensure_promise(on_open)
        self._close_exc = None
        # (mandatory, immediate, exchange, routing_key) of the last publish
        # and its encoded basic.publish arguments
        self._publish_key = None
        self._publish_args = None
        # errors for this channel that arrived during another channel's wait
        self._deferred = []
        self._consumers_pending = []  # (callback, on_cancel, no_ack)
        # publisher confirms
        self._confirm_selected = False
        self._confirm_publish = bool(connection.confirm_publish)
        if self._confirm_publish:
            # As on py-amqp, basic_publish *is* basic_publish_confirm here:
            # the caller's arguments reach it (and any override or wrapper
            # of it) exactly as given, and plain channels pay nothing.
            self.basic_publish = self.basic_publish_confirm
        self._publish_seq = 0
        self._unconfirmed = {}   # delivery tag -> per-publish callback|None
        self._nacked = []
        self._returned_tags = {}  # delivery tag -> the return's error
        self._pending_returns = []  # returns not yet matched to a confirm
        # unconfirmed mandatory publishes: tag -> (exchange, routing_key)
        self._mandatory = {}

    def __repr__(self):
        return '<AMQP Channel: %s %s at %#x>' % (
            self.channel_id, 'open' if self.is_open else 'closed', id(self))

    def then(self, on_success, on_error=None):
        return self.on_open.then(on_success, on_error)

    def _setup_listeners(self):
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
    def _check_usable(self):
        if self._close_exc is not None:
            connection = self.connection
            if self.auto_revive and connection is not None and \
                    connection.connected:
                # An error that arrived while another channel was waiting
                # is raised first; the call after it reopens the channel.
                self._raise_deferred()
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

    def _send(self, sig, fmt, args, content=None, wait=None,
              returns_tuple=False):
        if not self.is_open or self.connection is None:
            self._check_usable()

        return self.send_method(sig, fmt, args, content, wait=wait,
                                returns_tuple=returns_tuple)

    def collect(self):
        """Tear down this channel's state without network I/O."""
        logger.debug('Closed channel #%s', self.channel_id)
        self.is_open = False
        channel_id, self.channel_id = self.channel_id, None
        connection, self.connection = self.connection, None
        if connection is not None:
            if connection.channels and \
                    connection.channels.get(channel_id) is self:
                del connection.channels[channel_id]
            connection._release_channel_id(channel_id)
        self.channel_id = channel_id  # keep for reprs and error messages
        self.callbacks.clear()
        self.cancel_callbacks.clear()
        self.events.clear()
        self.no_ack_consumers.clear()
        self._pending.clear()

    def open(self):
        """Open the channel on the broker (channel.open / open-ok)."""
        if self.is_open:
            return None
        return self.send_method(spec.Channel.Open, 's', ('',),
                                wait=spec.Channel.OpenOk)

    def _on_open_ok(self, *args):
        self.is_open = True
        self.on_open(self)
        logger.debug('Channel open')

    def close(self, reply_code=0, reply_text='', method_sig=(0, 0),
              argsig='BsBB'):
        """Close the channel; harmless when already closed."""
        try:
            if self.connection is None or not self.is_open:
                return None
            if self.connection._transport is None:
                return None
            self.is_closing = True
            return self.send_method(
                spec.Channel.Close, argsig,
                (reply_code, reply_text, method_sig[0], method_sig[1]),
                wait=[spec.Channel.CloseOk, spec.Channel.Close])
        finally:
            self.is_closing = False
            self.collect()

    def _on_close(self, reply_code, reply_text, class_id, method_id):
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
        if connection is not None and getattr(
                connection, '_waiting_on', None) not in (None, self):
            logger.warning('channel %s closed by broker: %s',
                           self.channel_id, exc)
            if self.auto_revive:
                self._deferred.append(exc)
            return
        raise exc

    def _reset_state(self):
        """Forget consumers and confirms: the broker dropped them."""
        self.callbacks.clear()
        self.cancel_callbacks.clear()
        self.no_ack_consumers.clear()
        self._consumers_pending = []
        self._confirm_selected = False
        self._publish_seq = 0
        self._unconfirmed = {}
        self._nacked = []
        self._returned_tags = {}
        self._pending_returns = []
        self._mandatory = {}

    def _revive(self):
        """Reopen a channel the broker closed (same id)."""
        logger.debug('reopening channel %s after %s', self.channel_id,
                     self._close_exc)
        self._close_exc = None
        self.open()

    def _on_close_ok(self):
        self.collect()

    def flow(self, active):
        """Ask the broker to pause or resume deliveries (channel.flow).

        RabbitMQ does not support flow(active=False) and closes the
        channel with 540 NOT_IMPLEMENTED.
        """
        return self._send(spec.Channel.Flow, 'b',
                          (_check_flag(active, 'active'),),
                          wait=spec.Channel.FlowOk)

    def _on_flow(self, active):
        self.active = active
        self.send_method(spec.Channel.FlowOk, 'b', (active,))

    # -- exchanges ------------------------------------------------------
    def exchange_declare(self, exchange, type, passive=False, durable=False,
                         auto_delete=True, nowait=False, arguments=None,
                         argsig='BssbbbbbF'):
        """Declare an exchange (exchange.declare)."""
        self._send(spec.Exchange.Declare, argsig, (
            0, _check_name(exchange, 'exchange'), _check_name(type, 'type'),
            _check_flag(passive, 'passive'), _check_flag(durable, 'durable'),
            _check_flag(auto_delete, 'auto_delete'), False,
            _check_flag(nowait, 'nowait'), arguments),
            wait=None if nowait else spec.Exchange.DeclareOk)

    def exchange_delete(self, exchange, if_unused=False, nowait=False,
                        argsig='Bsbb'):
        """Delete an exchange (exchange.delete)."""
        return self._send(spec.Exchange.Delete, argsig, (
            0, _check_name(exchange, 'exchange'),
            _check_flag(if_unused, 'if_unused'),
            _check_flag(nowait, 'nowait')),
            wait=None if nowait else spec.Exchange.DeleteOk)

    def exchange_bind(self, destination, source='', routing_key='',
                      nowait=False, arguments=None, argsig='BsssbF'):
        """Bind an exchange to an exchange (RabbitMQ exchange.bind)."""
        return self._exchange_binding(
            spec.Exchange.Bind, spec.Exchange.BindOk, destination, source,
            routing_key, nowait, arguments, argsig)

    def exchange_unbind(self, destination, source='', routing_key='',
                        nowait=False, arguments=None, argsig='BsssbF'):
        """Remove an exchange-to-exchange binding (exchange.unbind)."""
        return self._exchange_binding(
            spec.Exchange.Unbind, spec.Exchange.UnbindOk, destination,
            source, routing_key, nowait, arguments, argsig)

    def _exchange_binding(self, sig, reply, destination, source,
                          routing_key, nowait, arguments, argsig):
        return self._send(sig, argsig, (
            0, _check_name(destination, 'destination'),
            _check_name(source, 'source'),
            _check_name(routing_key, 'routing_key'),
            _check_flag(nowait, 'nowait'), arguments),
            wait=None if nowait else reply)

    # -- queues ---------------------------------------------------------
    def queue_bind(self, queue, exchange='', routing_key='', nowait=False,
                   arguments=None, argsig='BsssbF'):
        """Bind a queue to an exchange (queue.bind)."""
        return self._send(spec.Queue.Bind, argsig, (
            0, _check_name(queue, 'queue'), _check_name(exchange, 'exchange'),
            _check_name(routing_key, 'routing_key'),
            _check_flag(nowait, 'nowait'), arguments),
            wait=None if nowait else spec.Queue.BindOk)

    def queue_unbind(self, queue, exchange, routing_key='', nowait=False,
                     arguments=None, argsig='BsssF'):
        """Unbind a queue from an exchange (queue.unbind; never nowait)."""
        return self._send(spec.Queue.Unbind, argsig, (
            0, _check_name(queue, 'queue'), _check_name(exchange, 'exchange'),
            _check_name(routing_key, 'routing_key'), arguments),
            wait=spec.Queue.UnbindOk)

    def queue_declare(self, queue='', passive=False, durable=False,
                      exclusive=False, auto_delete=True, nowait=False,
                      arguments=None, argsig='BsbbbbbF'):
        """Declare a queue; returns ``queue_declare_ok_t(queue,
        message_count, consumer_count)`` (None with ``nowait``)."""
        self._send(spec.Queue.Declare, argsig, (
            0, _check_name(queue, 'queue'), _check_flag(passive, 'passive'),
            _check_flag(durable, 'durable'),
            _check_flag(exclusive, 'exclusive'),
            _check_flag(auto_delete, 'auto_delete'),
            _check_flag(nowait, 'nowait'), arguments))
        if not nowait:
            return queue_declare_ok_t(*self.wait(
                spec.Queue.DeclareOk, returns_tuple=True))
        return None

    def queue_delete(self, queue='', if_unused=False, if_empty=False,
                     nowait=False, argsig='Bsbbb'):
        """Delete a queue; returns the number of messages it held."""
        return self._send(spec.Queue.Delete, argsig, (
            0, _check_name(queue, 'queue'),
            _check_flag(if_unused, 'if_unused'),
            _check_flag(if_empty, 'if_empty'), _check_flag(nowait, 'nowait')),
            wait=None if nowait else spec.Queue.DeleteOk)

    def queue_purge(self, queue='', nowait=False, argsig='Bsb'):
        """Purge a queue; returns the number of messages removed."""
        return self._send(spec.Queue.Purge, argsig, (
            0, _check_name(queue, 'queue'), _check_flag(nowait, 'nowait')),
            wait=None if nowait else spec.Queue.PurgeOk)

    # -- basic ----------------------------------------------------------
    def basic_ack(self, delivery_tag, multiple=False, argsig='Lb'):
        """Acknowledge one message (or all up to it with ``multiple``)."""
        return self._send(_Basic.Ack, argsig, (
            _check_tag(delivery_tag), _check_flag(multiple, 'multiple')))

    def basic_nack(self, delivery_tag, multiple=False, requeue=True,
                   argsig='Lbb'):
        """Reject one or several messages (RabbitMQ basic.nack)."""
        return self._send(_Basic.Nack, argsig, (
            _check_tag(delivery_tag), _check_flag(multiple, 'multiple'),
            _check_flag(requeue, 'requeue')))

    def basic_reject(self, delivery_tag, requeue, argsig='Lb'):
        """Reject a message (basic.reject)."""
        return self._send(_Basic.Reject, argsig, (
            _check_tag(delivery_tag), _check_flag(requeue, 'requeue')))

    def basic_recover(self, requeue=False):
        """Redeliver unacknowledged messages (basic.recover)."""
        return self._send(_Basic.Recover, 'b',
                          (_check_flag(requeue, 'requeue'),),
                          wait=_Basic.RecoverOk)

    def basic_recover_async(self, requeue=False):
        """Deprecated asynchronous recover (basic.recover-async)."""
        return self._send(_Basic.RecoverAsync, 'b',
                          (_check_flag(requeue, 'requeue'),))

    def basic_qos(self, prefetch_size, prefetch_count, a_global,
                  argsig='lBb'):
        """Limit unacknowledged deliveries (basic.qos)."""
        return self._send(_Basic.Qos, argsig, (
            prefetch_size, prefetch_count, _check_flag(a_global, 'a_global')),
            wait=_Basic.QosOk)

    def basic_consume(self, queue='', consumer_tag='', no_local=False,
                      no_ack=False, exclusive=False, nowait=False,
                      callback=None, arguments=None, on_cancel=None,
                      argsig='BssbbbbF'):
        """Start a consumer; returns its consumer tag.

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
        args = (0, _check_name(queue, 'queue'),
                _check_name(consumer_tag, 'consumer_tag'),
                _check_flag(no_local, 'no_local'),
                _check_flag(no_ack, 'no_ack'),
                _check_flag(exclusive, 'exclusive'),
                _check_flag(nowait, 'nowait'), arguments)
        consumer = (callback, on_cancel, no_ack)
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
        consumer_tag = reply[0]
        if unregistered:  # consume-ok was not dispatched (a wait() override)
            self._register_consumer(consumer_tag, consumer)
        return consumer_tag

    def _register_consumer(self, consumer_tag, consumer):
        callback, on_cancel, no_ack = consumer
        self.callbacks[consumer_tag] = callback
        if on_cancel:
            self.cancel_callbacks[consumer_tag] = on_cancel
        if no_ack:
            self.no_ack_consumers.add(consumer_tag)

    def _on_basic_consume_ok(self, consumer_tag):
        if self._consumers_pending:
            self._register_consumer(consumer_tag,
                                    self._consumers_pending.pop(0))

    def basic_cancel(self, consumer_tag, nowait=False, argsig='sb'):
        """Cancel a consumer; harmless on a closed channel."""
        if self.connection is not None and self._close_exc is None:
            self.no_ack_consumers.discard(consumer_tag)
            return self._send(_Basic.Cancel, argsig, (
                _check_name(consumer_tag, 'consumer_tag'),
                _check_flag(nowait, 'nowait')),
                wait=None if nowait else _Basic.CancelOk)
        return None

    def _remove_tag(self, consumer_tag):
        self.no_ack_consumers.discard(consumer_tag)
        self.callbacks.pop(consumer_tag, None)
        return self.cancel_callbacks.pop(consumer_tag, None)

    def _on_basic_cancel(self, consumer_tag, nowait=False):
        # Server-sent (queue deleted, node down): only this consumer goes.
        callback = self._remove_tag(consumer_tag)
        if callback:
            callback(consumer_tag)
        else:
            self._raise_or_defer(
                ConsumerCancelled(consumer_tag, _Basic.Cancel))

    def _raise_or_defer(self, exc):
        """Raise ``exc`` now unless a synchronous call is mid-wait.

        Raising inside a wait would abort it and lose its reply; the error
        is kept and raised once that wait has its reply (when it is this
        channel's), else from this channel's next wait or dispatch.
        """
        if getattr(self.connection, '_waiting_on', None) is not None:
            logger.debug('channel %s: deferring %r', self.channel_id, exc)
            self._deferred.append(exc)
            return
        raise exc

    def _raise_deferred(self):
        if self._deferred:
            raise self._deferred.pop(0)

    def _on_basic_cancel_ok(self, consumer_tag):
        self._remove_tag(consumer_tag)

    def _decode_body(self, msg):
        encoding = msg.properties.get('content_encoding')
        if encoding and self.auto_decode:
            try:
                msg.body = msg.body.decode(encoding)
            except (LookupError, UnicodeDecodeError, AttributeError):
                pass

    def _on_basic_deliver(self, consumer_tag, delivery_tag, redelivered,
                          exchange, routing_key, msg):
        msg.channel = self
        msg.delivery_info = {
            'consumer_tag': consumer_tag,
            'delivery_tag': delivery_tag,
            'redelivered': redelivered,
            'exchange': exchange,
            'routing_key': routing_key,
        }
        if self.auto_decode:
            self._decode_body(msg)
        fun = self.callbacks.get(consumer_tag)
        if fun is None:
            logger.warning(REJECTED_MESSAGE_WITHOUT_CALLBACK, delivery_tag,
                           consumer_tag, exchange, routing_key)
            self.basic_reject(delivery_tag, requeue=True)
            return
        fun(msg)

    def basic_get(self, queue='', no_ack=False, argsig='Bsb'):
        """Fetch one message; returns a Message or None if the queue is
        empty."""
        ret = self._send(_Basic.Get, argsig, (
            0, _check_name(queue, 'queue'), _check_flag(no_ack, 'no_ack')),
            wait=[_Basic.GetOk, _Basic.GetEmpty], returns_tuple=True)
        if not ret or len(ret) < 2:
            return None
        delivery_tag, redelivered, exchange, routing_key, message_count, \
            msg = ret
        msg.channel = self
        msg.delivery_info = {
            'delivery_tag': delivery_tag,
            'redelivered': redelivered,
            'exchange': exchange,
            'routing_key': routing_key,
            'message_count': message_count,
        }
        if self.auto_decode:
            self._decode_body(msg)
        return msg

    def _basic_publish(self, msg, exchange='', routing_key='',
                       mandatory=False, immediate=False, timeout=None,
                       confirm_timeout=None, argsig='Bssbb', on_confirm=None):
        """Publish ``msg`` (basic.publish); see :meth:`basic_publish`.

        Returns the publish's delivery tag in confirm mode, else None.
        """
        if not self.is_open or self.connection is None:
            self._check_usable()
        if on_confirm is not None and not callable(on_confirm):
            raise TypeError('on_confirm must be callable, not %s'
                            % type(on_confirm).__name__)
        if not hasattr(msg, 'properties') or not hasattr(msg, 'body'):
            raise TypeError('msg must be an amqp.Message, not %s'
                            % type(msg).__name__)
        if not isinstance(msg.body, (bytes, bytearray, memoryview, str)):
            raise TypeError('msg.body must be bytes or str, not %s'
                            % type(msg.body).__name__)
        if type(msg) is not Message:  # a subclass may encode its own
            msg = outgoing(msg)
        # Publishing to the same destination again is the common case: the
        # validated, encoded arguments of the last publish are reused.
        key = self._publish_key
        if key is not None and key[0] is mandatory and key[1] is immediate \
                and key[2] == exchange and key[3] == routing_key \
                and argsig == 'Bssbb':
            payload = self._publish_args
        else:
            payload = dumps(argsig, (
                0, _check_name(exchange, 'exchange'),
                _check_name(routing_key, 'routing_key'),
                _check_flag(mandatory, 'mandatory'),
                _check_flag(immediate, 'immediate')))
            if argsig == 'Bssbb' and type(exchange) is str and \
                    type(routing_key) is str:
                self._publish_key = (mandatory, immediate, exchange,
                                     routing_key)
                self._publish_args = payload
        connection = self.connection
        if connection.blocked is not None and connection.blocked_timeout:
            self._wait_unblocked(connection)
        if on_confirm is not None and not self._confirm_selected:
            self.confirm_select()
        writer = connection._frame_writer
        if writer is None:
            raise RecoverableConnectionError('connection already closed')
        if timeout is not None:
            with connection.transport.having_timeout(timeout):
                writer(1, self.channel_id, _Basic.Publish, payload, msg)
        else:
            writer(1, self.channel_id, _Basic.Publish, payload, msg)
        if self._confirm_selected:
            self._publish_seq += 1
            self._unconfirmed[self._publish_seq] = on_confirm
            if mandatory:
                self._mandatory[self._publish_seq] = (exchange, routing_key)
            return self._publish_seq
        return None

    def _wait_unblocked(self, connection):
        deadline = monotonic() + connection.blocked_timeout
        while connection.blocked is not None:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise RecoverableConnectionError(
                    'connection blocked by the broker (%s) for longer than '
                    'blocked_timeout=%ss' % (connection.blocked,
                                             connection.blocked_timeout))
            try:
                connection.drain_events(timeout=remaining)
            except socket.timeout:
                pass

    def basic_publish(self, msg, exchange='', routing_key='',
                      mandatory=False, immediate=False, timeout=None,
                      confirm_timeout=None, argsig='Bssbb', *,
                      on_confirm=None):
        """Publish a message.

        With ``Connection(confirm_publish=True)`` this waits for the broker's
        ack (:meth:`basic_publish_confirm`).  ``timeout`` bounds the socket
        write.  ``on_confirm(delivery_tag, outcome)`` (keyword only; puts
        the channel in confirm mode) is called once the broker settles this
        publish, with ``outcome`` one of ``'ack'``, ``'nack'``,
        ``'returned'``; the publish does not wait for it unless the
        connection has ``confirm_publish``.  Returns the delivery tag in
        confirm mode (None otherwise).  Invalid arguments raise
        TypeError/ValueError before anything is sent.
        """
        return self._basic_publish(msg, exchange, routing_key, mandatory,
                                   immediate, timeout, confirm_timeout,
                                   argsig, on_confirm)

    def basic_publish_confirm(self, msg, exchange='', routing_key='',
                              mandatory=False, immediate=False, timeout=None,
                              confirm_timeout=None, argsig='Bssbb', *,
                              on_confirm=None):
        """Publish and wait for the broker's confirm.

        Raises MessageNacked on basic.nack, the return's error (NoRoute,
        NoConsumers) when a mandatory publish comes back and no
        ``events['basic_return']`` handler is set, and ``socket.timeout``
        when no confirm arrives within ``confirm_timeout`` (or ``timeout``).
        """
        if not self._confirm_selected:
            self.confirm_select()
        tag = self._basic_publish(msg, exchange, routing_key, mandatory,
                                  immediate, timeout, confirm_timeout, argsig,
                                  on_confirm)
        wait_timeout = confirm_timeout or timeout
        deadline = None if wait_timeout is None else \
            monotonic() + wait_timeout
        while tag in self._unconfirmed:
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise socket.timeout(
                    'no publisher confirm for delivery tag %d within %ss'
                    % (tag, wait_timeout))
            self.wait([_Basic.Ack, _Basic.Nack], timeout=remaining)
        if tag in self._nacked:
            self._nacked.remove(tag)
            raise MessageNacked('message with delivery tag %d was nacked '
                                'by the broker' % tag)
        exc = self._returned_tags.pop(tag, None)
        if exc is not None and not self.events.get('basic_return'):
            raise exc
        return None

    def confirm_select(self, nowait=False):
        """Put the channel in publisher-confirm mode (confirm.select).

        Delivery tags count publishes from 1 after the first call; calling
        it again is harmless.
        """
        self._send(spec.Confirm.Select, 'b', (_check_flag(nowait, 'nowait'),),
                   wait=None if nowait else spec.Confirm.SelectOk)
        if not self._confirm_selected:
            self._confirm_selected = True
            self._publish_seq = 0

    def _match_return(self, exc, exchange, routing_key):
        """Find the delivery tag of a returned publish.

        basic.return names no delivery tag.  Returns of one destination
        come in publish order and before that publish's confirm, so the
        oldest unconfirmed mandatory publish to the same exchange and
        routing key is the one returned.  Failing that (names given as
        bytes, say), the return is matched when the next confirm comes.
        """
        target = (exchange, routing_key)
        for tag, dest in self._mandatory.items():  # in publish order
            if dest == target and tag not in self._returned_tags:
                del self._mandatory[tag]
                self._returned_tags[tag] = exc
                return
        self._pending_returns.append(exc)

    def _settle(self, delivery_tag, multiple, nacked):
        unconfirmed = self._unconfirmed
        if multiple:
            tags = [t for t in unconfirmed if t <= delivery_tag]
        else:
            tags = [delivery_tag] if delivery_tag in unconfirmed else []
        returned = self._returned_tags
        returns = self._pending_returns
        if returns and tags:
            # RabbitMQ confirms an unroutable publish right after its
            # return: unmatched returns belong to the newest tags settled.
            n = min(len(returns), len(tags))
            returned.update(zip(sorted(tags)[-n:], returns[:n]))
            del returns[:n]
        mandatory = self._mandatory
        for tag in tags:
            mandatory.pop(tag, None)
            callback = unconfirmed.pop(tag)
            if nacked:
                self._nacked.append(tag)
            if callback is not None:
                callback(tag, 'nack' if nacked else
                         'returned' if tag in returned else 'ack')

    def _on_basic_ack(self, delivery_tag, multiple):
        self._settle(delivery_tag, multiple, False)
        for callback in self.events['basic_ack']:
            callback(delivery_tag, multiple)

    def _on_basic_nack(self, delivery_tag, multiple, requeue=False):
        self._settle(delivery_tag, multiple, True)
        for callback in self.events['basic_nack']:
            callback(delivery_tag, multiple)

    def wait_for_confirms(self, timeout=None):
        """Wait until every publish so far is confirmed; return True.

        Raises :class:`~amqp.exceptions.PublishConfirmError` whose
        ``nacked``, ``returned`` and ``unconfirmed`` name the delivery tags
        that were nacked, returned (mandatory, unroutable) or still
        unconfirmed when ``timeout`` ran out, since the previous call.
        """
        if not self._confirm_selected:
            raise ChannelError('wait_for_confirms needs confirm_select() '
                               'first')
        deadline = None if timeout is None else monotonic() + timeout
        while self._unconfirmed:
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                unconfirmed = sorted(self._unconfirmed)
                raise PublishConfirmError(
                    '%d publishes unconfirmed after %ss' % (
                        len(unconfirmed), timeout),
                    nacked=self._take_nacked(), returned=self._take_returned(),
                    unconfirmed=unconfirmed)
            try:
                self.wait([_Basic.Ack, _Basic.Nack], timeout=remaining)
            except socket.timeout:
                continue
        nacked, returned = self._take_nacked(), self._take_returned()
        if nacked or returned:
            raise PublishConfirmError(
                'publishes not accepted: nacked=%s returned=%s' % (
                    nacked, returned), nacked=nacked, returned=returned)
        return True

    def _take_nacked(self):
        nacked, self._nacked = sorted(self._nacked), []
        return nacked

    def _take_returned(self):
        returned, self._returned_tags = sorted(self._returned_tags), {}
        return returned

    def create_publish_batch(self, max_size):
        """kombu 5.7 ``Producer.batch()`` hook: see :mod:`amqp._confirms`."""
        return PublishBatch(self, max_size)

    #: kombu 5.7 probes this before using :meth:`create_publish_batch`.
    supports_batch_publish = True

    def _on_basic_return(self, reply_code, reply_text, exchange, routing_key,
                         message):
        exc = error_for_code(reply_code, reply_text, _Basic.Return,
                             ChannelError)
        if self._confirm_selected:
            self._match_return(exc, exchange, routing_key)
        handlers = self.events.get('basic_return')
        if not handlers:
            if self._confirm_selected:
                return  # reported by wait_for_confirms / the confirm wait
            self._raise_or_defer(exc)
            return
        for callback in handlers:
            callback(exc, exchange, routing_key, message)

    # -- transactions ---------------------------------------------------
    def tx_select(self):
        """Use transactions on this channel (tx.select)."""
        return self._send(spec.Tx.Select, None, None, wait=spec.Tx.SelectOk)

    def tx_commit(self):
        """Commit the current transaction (tx.commit)."""
        return self._send(spec.Tx.Commit, None, None, wait=spec.Tx.CommitOk)

    def tx_rollback(self):
        """Abandon the current transaction (tx.rollback)."""
        return self._send(spec.Tx.Rollback, None, None,
                          wait=spec.Tx.RollbackOk)

