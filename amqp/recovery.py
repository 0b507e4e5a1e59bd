"""Automatic recovery, opt-in: ``Connection(..., recover=True)``.

When the connection is lost (socket error, EOF, missed heartbeats, TLS
error) or the broker closes it with CONNECTION_FORCED (320: an operator,
a node shutdown), a recovering connection reconnects (across
``recover_hosts``, with backoff), reopens its channels (the same objects
and ids) with their qos, confirm and tx modes, redeclares the exchanges,
queues and bindings it declared, and re-registers its consumers with
their tags, arguments and callbacks.  Never after the application's own
``close()``, nor after a refused login or virtual host.

It sits above the connection: :class:`RecoveringConnection` and
:class:`RecoveringChannel` record what the application declares and
replay it; the layers below know nothing of it.  ``Connection(...,
recover=True)`` builds a :class:`RecoveringConnection` (this module sets
``Connection.recovering_base`` when imported, and ``import amqp`` imports
it).  docs/guide_recovery.rst states the guarantees.

Who recovers: there is no thread of its own.  The thread that next needs
the connection (the consumer in ``drain_events``, a publisher, a call on
a channel) runs the recovery; other threads wait for it, each within its
own bound.  A call that was in flight when the connection went down
raises the error as before; the next call on the same channel waits for
the recovery and goes on.
"""
from __future__ import annotations

import logging
import random
import socket
import threading
from time import monotonic
from typing import (TYPE_CHECKING, Any, Callable, Dict, List, Optional,
                    Sequence, Tuple, Union)

from . import spec
from .channel import Channel
from .connection import Connection
from .handshake import url_options
from .exceptions import (AccessRefused, AMQPError, ChannelError,
                         ConnectionForced, InternalError, NotAllowed,
                         RecoverableConnectionError, RecoveryFailed,
                         ResourceLocked)

if TYPE_CHECKING:
    from .basic_message import Message
    from .serialization import EncodableTable

__all__ = ('RecoveringConnection', 'RecoveringChannel', 'Topology',
           'RECOVERED_ERRORS')

#: the plain channel (inside RecoveringConnection, ``Channel`` names the
#: class attribute)
_Plain = Channel

logger = logging.getLogger('amqp.recovery')

_get_ident = threading.get_ident

#: What ends a connection that recovery brings back: a lost socket (EOF,
#: reset, TLS error: OSError), the broker's CONNECTION_FORCED and missed
#: heartbeats (ConnectionForced), and INTERNAL_ERROR, which RabbitMQ
#: sends instead of CONNECTION_FORCED to some connections of a node that
#: is shutting down (InternalError).
RECOVERED_ERRORS = (OSError, ConnectionForced, InternalError)
#: What recovery never retries: the broker refused the login or the vhost.
_FINAL_ERRORS = (AccessRefused, NotAllowed)

#: ``recover_filter(kind, record)``: kind is 'exchange', 'queue',
#: 'binding' or 'consumer'; False leaves the record out of recovery.
RecoveryFilter = Callable[[str, Dict[str, Any]], bool]


def _recovered_from(exc: Optional[BaseException]) -> bool:
    return isinstance(exc, RECOVERED_ERRORS) and \
        not isinstance(exc, _FINAL_ERRORS)


class Topology:
    """What the application declared, as it declared it, in order.

    Records are plain dicts (the keyword arguments of the call that made
    them), so a :data:`RecoveryFilter` can read them.  A lock guards them:
    threads declare on their own channels at the same time.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: exchange name -> exchange_declare arguments
        self.exchanges: Dict[str, Dict[str, Any]] = {}
        #: queue name (as it is now) -> queue_declare arguments; a
        #: server-named queue is declared again with ``queue=''``
        self.queues: Dict[str, Dict[str, Any]] = {}
        #: bindings, in order: {'kind': 'queue' or 'exchange',
        #: 'destination', 'source', 'routing_key', 'arguments'}
        self.bindings: List[Dict[str, Any]] = []
        #: consumer tag -> {'channel', 'queue', 'no_local', 'no_ack',
        #: 'exclusive', 'arguments', 'callback', 'on_cancel'}
        self.consumers: Dict[str, Dict[str, Any]] = {}

    # -- recording ------------------------------------------------------------
    def exchange(self, name: str, record: Dict[str, Any]) -> None:
        if name:   # the default exchange is never declared
            with self.lock:
                self.exchanges[name] = record

    def forget_exchange(self, name: str) -> None:
        with self.lock:
            self.exchanges.pop(name, None)
            self.bindings = [b for b in self.bindings
                             if b['source'] != name and not (
                                 b['kind'] == 'exchange' and
                                 b['destination'] == name)]

    def queue(self, name: str, record: Dict[str, Any]) -> None:
        with self.lock:
            self.queues[name] = record

    def forget_queue(self, name: str) -> None:
        with self.lock:
            self.queues.pop(name, None)
            self.bindings = [b for b in self.bindings
                             if not (b['kind'] == 'queue' and
                                     b['destination'] == name)]
            for tag in [t for t, c in self.consumers.items()
                        if c['queue'] == name]:
                del self.consumers[tag]

    def bind(self, record: Dict[str, Any]) -> None:
        with self.lock:
            if record not in self.bindings:
                self.bindings.append(record)

    def unbind(self, record: Dict[str, Any]) -> None:
        with self.lock:
            if record in self.bindings:
                self.bindings.remove(record)

    def consumer(self, tag: str, record: Dict[str, Any]) -> None:
        with self.lock:
            self.consumers[tag] = record

    def forget_consumer(self, tag: str) -> None:
        """A consumer was cancelled.  An auto-delete queue whose last
        consumer it was is gone on the broker: it leaves the record too."""
        with self.lock:
            record = self.consumers.pop(tag, None)
            if record is None:
                return
            name = record['queue']
            queue = self.queues.get(name)
            if queue is not None and queue.get('auto_delete') and \
                    not any(c['queue'] == name
                            for c in self.consumers.values()):
                self.queues.pop(name, None)
                self.bindings = [b for b in self.bindings
                                 if not (b['kind'] == 'queue' and
                                         b['destination'] == name)]

    def rename_queue(self, old: str, new: str) -> None:
        """A server-named queue came back with a new name: its bindings
        and consumers follow it."""
        with self.lock:
            record = self.queues.pop(old, None)
            if record is not None:
                self.queues[new] = record
            for b in self.bindings:
                if b['kind'] == 'queue' and b['destination'] == old:
                    b['destination'] = new
            for c in self.consumers.values():
                if c['queue'] == old:
                    c['queue'] = new

    def consumers_of(self, channel: RecoveringChannel
                     ) -> List[Tuple[str, Dict[str, Any]]]:
        with self.lock:
            return [(tag, c) for tag, c in self.consumers.items()
                    if c['channel'] is channel]

    def forget_channel(self, channel: RecoveringChannel) -> None:
        with self.lock:
            for tag in [t for t, c in self.consumers.items()
                        if c['channel'] is channel]:
                del self.consumers[tag]


class RecoveringChannel(Channel):
    """A channel of a :class:`RecoveringConnection`: records what it
    declares, and keeps the delivery tags it hands out increasing across
    recoveries.

    A recovery starts a new channel on the broker, whose delivery tags
    start again at 1.  The tags this channel shows the application are the
    broker's plus an offset, so they never repeat; an ack, nack or reject
    of a tag from before the recovery is not sent (the broker requeued
    that message already, and an unknown tag would close the channel with
    406) and is counted in :attr:`stale_acks`.  Publisher-confirm tags go
    on the same way.
    """

    connection: Optional[RecoveringConnection]

    def __init__(self, connection: RecoveringConnection,
                 channel_id: Optional[int] = None, auto_decode: bool = True,
                 on_open: Optional[Callable[..., object]] = None) -> None:
        super().__init__(connection, channel_id, auto_decode, on_open)
        #: acks, nacks and rejects of deliveries from before a recovery,
        #: not sent
        self.stale_acks = 0
        self._tag_offset = 0      # added to the broker's delivery tags
        self._last_tag = 0        # highest delivery tag handed out
        self._stale_up_to = 0     # tags up to this one are from before
        self._confirm_offset = 0  # added to the broker's confirm tags
        self._qos: Optional[Tuple[int, int, bool]] = None
        self._tx = False

    def _topology(self) -> Optional[Topology]:
        connection = self.connection
        return None if connection is None else connection.topology

    # -- while the connection is down -----------------------------------------
    def _ensure_open(self) -> None:
        connection = self.connection
        if connection is not None and connection.recovering():
            connection.await_recovery()
            if self.is_open:
                return
        super()._ensure_open()

    def _connection_lost(self) -> None:
        """(The connection) the broker's channel is gone."""
        self.is_open = False
        self._stale_up_to = self._last_tag
        self._pending.clear()
        self._consumers_pending = []
        self.lane.inbox.clear()

    # -- delivery tags --------------------------------------------------------
    def _on_basic_deliver(self, consumer_tag: str, delivery_tag: int,
                          redelivered: bool, exchange: str, routing_key: str,
                          msg: Any) -> None:
        tag = delivery_tag + self._tag_offset
        if tag > self._last_tag:
            self._last_tag = tag
        super()._on_basic_deliver(consumer_tag, tag, redelivered, exchange,
                                  routing_key, msg)

    def basic_get(self, queue: str = '', no_ack: bool = False,
                  argsig: str = spec.args_of(spec.Basic.Get)
                  ) -> Optional[Message]:
        message = super().basic_get(queue, no_ack, argsig)
        info = None if message is None else message.delivery_info
        if info is not None and self._tag_offset:
            info['delivery_tag'] = info['delivery_tag'] + self._tag_offset
        if message is not None:
            self._last_tag = max(self._last_tag, message.delivery_tag or 0)
        return message

    def _broker_tag(self, delivery_tag: Optional[int]) -> Optional[int]:
        """The broker's tag for an application's, or None when it is from
        before a recovery (or the connection is down): not to be sent."""
        if delivery_tag is None:
            return None
        if delivery_tag <= self._stale_up_to:
            self.stale_acks += 1
            logger.debug('channel %s: not sending an ack/nack/reject of '
                         'delivery tag %s, from before the connection was '
                         'recovered (the broker requeued it)',
                         self.channel_id, delivery_tag)
            return None
        return delivery_tag - self._tag_offset

    def basic_ack(self, delivery_tag: Optional[int], multiple: bool = False,
                  argsig: str = spec.args_of(spec.Basic.Ack)) -> object:
        if delivery_tag is not None and self._stale_up_to:
            tag = self._broker_tag(delivery_tag)
            if tag is None:
                return None
            delivery_tag = tag
        return super().basic_ack(delivery_tag, multiple, argsig)

    def basic_nack(self, delivery_tag: Optional[int], multiple: bool = False,
                   requeue: bool = True,
                   argsig: str = spec.args_of(spec.Basic.Nack)) -> object:
        tag = self._broker_tag(delivery_tag)
        if tag is None and delivery_tag is not None:
            return None
        return super().basic_nack(tag, multiple, requeue, argsig)

    def basic_reject(self, delivery_tag: Optional[int], requeue: bool,
                     argsig: str = spec.args_of(spec.Basic.Reject)
                     ) -> object:
        tag = self._broker_tag(delivery_tag)
        if tag is None and delivery_tag is not None:
            return None
        return super().basic_reject(tag, requeue, argsig)

    def _on_basic_ack(self, delivery_tag: int, multiple: bool) -> None:
        super()._on_basic_ack(delivery_tag + self._confirm_offset, multiple)

    def _on_basic_nack(self, delivery_tag: int, multiple: bool,
                       requeue: bool = False) -> None:
        super()._on_basic_nack(delivery_tag + self._confirm_offset, multiple,
                               requeue)

    # -- publishing across an outage ------------------------------------------
    def _basic_publish(self, msg: Message[Any], exchange: str = '',
                       routing_key: str = '', mandatory: bool = False,
                       immediate: bool = False,
                       timeout: Optional[float] = None,
                       confirm_timeout: Optional[float] = None,
                       argsig: str = spec.args_of(spec.Basic.Publish),
                       on_confirm: Optional[Callable[[int, str], object]]
                       = None) -> Optional[int]:
        """Publish; a publish whose write fails because the connection
        went down is sent again once it is recovered.  (A write that
        failed left at most part of a frame, which the broker discards:
        sending it again makes no duplicate.)"""
        for attempt in (1, 2):
            seq = self._confirms.seq
            try:
                return super()._basic_publish(
                    msg, exchange, routing_key, mandatory, immediate,
                    timeout, confirm_timeout, argsig, on_confirm)
            except RECOVERED_ERRORS as exc:
                connection = self.connection
                transport = None if connection is None else \
                    connection.transport
                if isinstance(exc, socket.timeout) and transport is not \
                        None and transport.broken is None:
                    raise   # a write that timed out with nothing sent
                if attempt == 2 or connection is None or \
                        not connection.lost_to(exc):
                    raise
                if self._confirms.seq > seq:
                    self._confirms.withdraw(self._confirms.seq)
                connection.await_recovery()
        raise AssertionError('unreachable')  # pragma: no cover

    # -- recording ------------------------------------------------------------
    def exchange_declare(self, exchange: str, type: str,
                         passive: bool = False, durable: bool = False,
                         auto_delete: bool = True, nowait: bool = False,
                         arguments: Optional[EncodableTable] = None,
                         argsig: str = spec.args_of(spec.Exchange.Declare)
                         ) -> None:
        super().exchange_declare(exchange, type, passive, durable,
                                 auto_delete, nowait, arguments, argsig)
        topology = self._topology()
        if topology is not None and not passive:
            topology.exchange(exchange, {
                'exchange': exchange, 'type': type, 'durable': durable,
                'auto_delete': auto_delete, 'arguments': arguments})

    def exchange_delete(self, exchange: str, if_unused: bool = False,
                        nowait: bool = False,
                        argsig: str = spec.args_of(spec.Exchange.Delete)
                        ) -> object:
        result = super().exchange_delete(exchange, if_unused, nowait, argsig)
        topology = self._topology()
        if topology is not None:
            topology.forget_exchange(exchange)
        return result

    def queue_declare(self, queue: str = '', passive: bool = False,
                      durable: bool = False, exclusive: bool = False,
                      auto_delete: bool = True, nowait: bool = False,
                      arguments: Optional[EncodableTable] = None,
                      argsig: str = spec.args_of(spec.Queue.Declare)
                      ) -> Any:
        ok = super().queue_declare(queue, passive, durable, exclusive,
                                   auto_delete, nowait, arguments, argsig)
        topology = self._topology()
        if topology is not None and not passive:
            name = ok.queue if ok is not None else queue
            if name:
                topology.queue(name, {
                    'queue': name, 'server_named': not queue,
                    'durable': durable, 'exclusive': exclusive,
                    'auto_delete': auto_delete, 'arguments': arguments})
        return ok

    def queue_delete(self, queue: str = '', if_unused: bool = False,
                     if_empty: bool = False, nowait: bool = False,
                     argsig: str = spec.args_of(spec.Queue.Delete)
                     ) -> Any:
        result = super().queue_delete(queue, if_unused, if_empty, nowait,
                                      argsig)
        topology = self._topology()
        if topology is not None:
            topology.forget_queue(queue)
        return result

    def _binding(self, method: spec.MethodSig, reply: spec.MethodSig,
                 argsig: str, destination: str, source: str,
                 routing_key: str, nowait: bool,
                 arguments: Optional[EncodableTable]) -> object:
        result = super()._binding(method, reply, argsig, destination, source,
                                  routing_key, nowait, arguments)
        topology = self._topology()
        if topology is not None:
            record = {'kind': 'queue' if method == spec.Queue.Bind
                      else 'exchange', 'destination': destination,
                      'source': source, 'routing_key': routing_key,
                      'arguments': arguments}
            if method == spec.Exchange.Unbind:
                topology.unbind(record)
            else:
                topology.bind(record)
        return result

    def queue_unbind(self, queue: str, exchange: str, routing_key: str = '',
                     nowait: bool = False,
                     arguments: Optional[EncodableTable] = None,
                     argsig: str = spec.args_of(spec.Queue.Unbind)) -> object:
        result = super().queue_unbind(queue, exchange, routing_key, nowait,
                                      arguments, argsig)
        topology = self._topology()
        if topology is not None:
            topology.unbind({'kind': 'queue', 'destination': queue,
                             'source': exchange, 'routing_key': routing_key,
                             'arguments': arguments})
        return result

    def basic_qos(self, prefetch_size: int, prefetch_count: int,
                  a_global: bool,
                  argsig: str = spec.args_of(spec.Basic.Qos)) -> object:
        result = super().basic_qos(prefetch_size, prefetch_count, a_global,
                                   argsig)
        self._qos = (prefetch_size, prefetch_count, a_global)
        return result

    def tx_select(self) -> object:
        result = super().tx_select()
        self._tx = True
        return result

    def basic_consume(self, queue: str = '', consumer_tag: str = '',
                      no_local: bool = False, no_ack: bool = False,
                      exclusive: bool = False, nowait: bool = False,
                      callback: Optional[Callable[[Message], object]] = None,
                      arguments: Optional[EncodableTable] = None,
                      on_cancel: Optional[Callable[[str], object]] = None,
                      argsig: str = spec.args_of(spec.Basic.Consume)
                      ) -> Any:
        tag = super().basic_consume(queue, consumer_tag, no_local, no_ack,
                                    exclusive, nowait, callback, arguments,
                                    on_cancel, argsig)
        topology = self._topology()
        if topology is not None:
            topology.consumer(consumer_tag if nowait else str(tag), {
                'channel': self, 'queue': queue, 'no_local': no_local,
                'no_ack': no_ack, 'exclusive': exclusive,
                'arguments': arguments, 'callback': callback,
                'on_cancel': on_cancel})
        return tag

    def basic_cancel(self, consumer_tag: str, nowait: bool = False,
                     argsig: str = spec.args_of(spec.Basic.Cancel)) -> object:
        topology = self._topology()
        if topology is not None:
            topology.forget_consumer(consumer_tag)
        return super().basic_cancel(consumer_tag, nowait, argsig)

    def _on_basic_cancel(self, consumer_tag: str,
                         nowait: bool = False) -> None:
        # the broker cancelled it (queue deleted, node down): gone for good
        topology = self._topology()
        if topology is not None:
            topology.forget_consumer(consumer_tag)
        super()._on_basic_cancel(consumer_tag, nowait)

    def _collect(self, awaiting_close_ok: bool) -> None:
        topology = self._topology()
        if topology is not None:
            topology.forget_channel(self)
        super()._collect(awaiting_close_ok)

    # -- recovery -------------------------------------------------------------
    def _recover(self) -> None:
        """Open the channel on the new connection, with its qos, confirm
        and tx modes (consumers come after the topology)."""
        confirms = self._confirms
        if confirms.selected:
            confirms.lose()   # never to be settled: reported, see Confirms
        self._tag_offset = self._last_tag
        self._stale_up_to = self._last_tag
        self._confirm_offset = confirms.seq
        self._close_exc = None
        self.is_open = False
        self.open()
        if self._qos is not None:
            Channel.basic_qos(self, *self._qos)
        if confirms.selected:
            self._send(spec.Confirm.Select, spec.args_of(spec.Confirm.Select),
                       (False,), wait=spec.Confirm.SelectOk)
        if self._tx:
            Channel.tx_select(self)


#: ``hook(connection, exception)``, ``hook(connection)``
StartedHook = Callable[['RecoveringConnection', BaseException], object]
SucceededHook = Callable[['RecoveringConnection'], object]
QueueRenamedHook = Callable[[str, str], object]


class RecoveringConnection(Connection):
    """A connection that recovers by itself (``recover=True``); see the
    module doc and docs/guide_recovery.rst for the options.

    Options (keyword arguments, also as URL query parameters):

    ``recover_hosts``
        More hosts (``host:port``) to try after ``host``, in order (or
        shuffled with ``recover_shuffle=True``).
    ``recover_interval``, ``recover_max_interval``
        The first pause between attempts (0.25 s), doubling up to the
        second (1.5 s: a broker that comes back is in use again within
        two seconds), with jitter (each pause is 50 to 100% of that).
    ``recover_timeout``
        Give up (:class:`~amqp.exceptions.RecoveryFailed`) after this many
        seconds (None: never).
    ``recover_wait``
        How long a call (a publish, a method on a channel, ``channel()``)
        waits for a recovery in progress before it raises (30 s).
    ``recover_topology``
        Redeclare exchanges, queues and bindings (True).
    ``recover_filter``
        ``recover_filter(kind, record)``: False leaves a record out.
    hooks
        ``on_recovery_started(connection, exc)``,
        ``on_recovery_succeeded(connection)``,
        ``on_recovery_failed(connection, exc)`` and
        ``on_queue_renamed(old, new)``; they run in the thread that
        recovers.
    """

    Channel = RecoveringChannel

    def __init__(self, host: str = 'localhost:5672', *args: Any,
                 recover: bool = True,
                 recover_hosts: Union[str, Sequence[str]] = (),
                 recover_shuffle: bool = False,
                 recover_interval: float = 0.25,
                 recover_max_interval: float = 1.5,
                 recover_timeout: Optional[float] = None,
                 recover_wait: Optional[float] = 30.0,
                 recover_topology: bool = True,
                 recover_filter: Optional[RecoveryFilter] = None,
                 on_recovery_started: Optional[StartedHook] = None,
                 on_recovery_succeeded: Optional[SucceededHook] = None,
                 on_recovery_failed: Optional[StartedHook] = None,
                 on_queue_renamed: Optional[QueueRenamedHook] = None,
                 **kwargs: Any) -> None:
        super().__init__(host, *args, **kwargs)
        if isinstance(recover_hosts, str):
            recover_hosts = [h for h in recover_hosts.split(',') if h]
        for name, value in (('recover_interval', recover_interval),
                            ('recover_max_interval', recover_max_interval)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError('%s must be a number of seconds >= 0, got '
                                 '%r' % (name, value))
        #: recovery is on (False: this connection behaves as any other)
        self.recover = bool(recover)
        hosts = [self._recovery_host(h) for h in recover_hosts]
        self.recover_hosts = [host] + [h for h in hosts if h != host]
        self.recover_shuffle = recover_shuffle
        self.recover_interval = recover_interval
        self.recover_max_interval = recover_max_interval
        self.recover_timeout = recover_timeout
        self.recover_wait = recover_wait
        self.recover_topology = recover_topology
        self.recover_filter = recover_filter
        self.on_recovery_started = on_recovery_started
        self.on_recovery_succeeded = on_recovery_succeeded
        self.on_recovery_failed = on_recovery_failed
        self.on_queue_renamed = on_queue_renamed
        #: what the application declared (see :class:`Topology`)
        self.topology = Topology()
        #: recoveries that succeeded
        self.recoveries = 0
        #: topology steps that failed in recoveries (logged each)
        self.recovery_errors = 0
        self._recovery = threading.Condition(threading.Lock())
        self._outage: Optional[BaseException] = None
        self._outage_since = 0.0
        self._attempts = 0
        self._recoverer: Optional[int] = None
        self._gave_up: Optional[BaseException] = None
        self._closed_by_app = False
        self._stop = threading.Event()
        #: the channels to reopen, while the connection is down
        self._lost_channels: List[RecoveringChannel] = []

    def _recovery_host(self, entry: str) -> str:
        """``host:port`` of a ``recover_hosts`` entry, which may be a URL
        (``amqp://user@node2:5672/vhost``) naming this connection's user
        and virtual host."""
        entry = entry.strip()
        if '://' not in entry:
            return entry
        opts = url_options(entry)
        host: str = opts['host']
        shown = entry.split('://', 1)[0] + '://' + host   # no credentials
        for key, what in (('userid', 'user'),
                          ('virtual_host', 'virtual host')):
            if opts[key] != getattr(self, key):
                raise ValueError(
                    'recover_hosts: %s names %s %r, the connection %r '
                    '(hosts to recover on are tried with the '
                    "connection's own credentials and virtual host)" % (
                        shown, what, opts[key], getattr(self, key)))
        if bool(opts.get('ssl')) != bool(self.ssl):
            raise ValueError(
                'recover_hosts: %s does not match the connection, which '
                'uses %s' % (shown, 'TLS' if self.ssl else 'no TLS'))
        return host

    # -- state ----------------------------------------------------------------
    def recovering(self) -> bool:
        """True from a lost connection until it is recovered."""
        return self._outage is not None

    def lost_to(self, exc: BaseException) -> bool:
        """True when ``exc`` ended the connection and a recovery follows."""
        if self._outage is not None:
            return True
        if not self._will_recover(exc):
            return False
        transport = self._transport
        if transport is not None and transport.connected and \
                transport.broken is None:
            # the connection is fine: ``exc`` came from elsewhere (a
            # consumer callback writing to a closed pipe, say)
            return False
        self._transport_lost(exc)
        return self._outage is not None

    def _will_recover(self, exc: Optional[BaseException]) -> bool:
        return self.recover and not self._closed_by_app and \
            self._has_connected and _recovered_from(exc)

    # -- losing the connection ------------------------------------------------
    def _transport_lost(self, exc: Optional[BaseException] = None) -> None:
        if not self._will_recover(exc):
            super()._transport_lost(exc)
            return
        assert exc is not None
        with self._recovery:
            first = self._outage is None
            if first:
                self._outage = exc
                self._outage_since = monotonic()
                self._attempts = 0
                self._lost_channels = [
                    c for c in self.channels.values()
                    if isinstance(c, RecoveringChannel)]
        # threads waiting on the connection wake with the reason
        self._reader.fail(exc)
        self._drop_transport()
        if not first:
            return
        for channel in self._lost_channels:
            channel._connection_lost()
        logger.warning('connection to %s lost (%s): recovering', self.host,
                       exc)
        self._hook(self.on_recovery_started, self, exc)

    def close(self, reply_code: int = 0, reply_text: str = '',
              method_sig: spec.MethodSig = (0, 0),
              argsig: str = spec.args_of(spec.Connection.Close)) -> None:
        """Close for good: no recovery from now on (one in progress in
        another thread stops at its next step)."""
        self._closed_by_app = True
        self._stop.set()
        with self._recovery:
            self._recovery.notify_all()
        if self._outage is not None:
            self._end(None)
            return None
        return super().close(reply_code, reply_text, method_sig, argsig)

    def _end(self, exc: Optional[BaseException]) -> None:
        """Closed for good during an outage: the channels waiting to be
        reopened go too."""
        super()._transport_lost(exc)
        for channel in self._lost_channels:
            channel.collect()
        self._lost_channels = []

    # -- waiting for it -------------------------------------------------------
    def await_recovery(self, timeout: Optional[float] = None) -> None:
        """Return once the connection is open again, recovering it in this
        thread when no other thread is; raise RecoverableConnectionError
        when ``timeout`` (default ``recover_wait``) passes first, and
        :class:`~amqp.exceptions.RecoveryFailed` when recovery gave up."""
        if timeout is None:
            timeout = self.recover_wait
        deadline = None if timeout is None else monotonic() + timeout
        try:
            self._await_recovery(deadline)
        except socket.timeout:
            raise RecoverableConnectionError(
                'connection to %s lost (%s) and not recovered within %ss' % (
                    self.host, self._outage, timeout)) from None

    def _await_recovery(self, deadline: Optional[float]) -> None:
        me = _get_ident()
        cond = self._recovery
        with cond:
            while True:
                if self._gave_up is not None:
                    raise RecoveryFailed(
                        'recovery of the connection to %s gave up: %s' % (
                            self.host, self._gave_up)) from self._gave_up
                if self._outage is None:
                    return
                if self._closed_by_app:
                    raise RecoverableConnectionError(
                        'connection to %s was closed' % (self.host,))
                if self._recoverer is None:
                    self._recoverer = me
                    break
                if self._recoverer == me:
                    return    # (the recovery's own calls)
                remaining = None if deadline is None else \
                    deadline - monotonic()
                if remaining is not None and remaining <= 0:
                    raise socket.timeout('connection not recovered yet')
                cond.wait(remaining)
        try:
            self._recover(deadline)
        finally:
            with cond:
                self._recoverer = None
                cond.notify_all()

    def _recover(self, deadline: Optional[float]) -> None:
        """Attempt after attempt (with backoff) until the connection is
        back, recovery gives up, or ``deadline`` (this caller's) passes."""
        last: Optional[BaseException] = self._outage
        while True:
            if self._closed_by_app:
                raise RecoverableConnectionError(
                    'connection to %s was closed' % (self.host,))
            hosts = list(self.recover_hosts)
            if self.recover_shuffle:
                random.shuffle(hosts)
            for host in hosts:
                if self._closed_by_app:
                    raise RecoverableConnectionError(
                        'connection to %s was closed' % (self.host,))
                self._attempts += 1
                try:
                    self._reconnect(host)
                except _FINAL_ERRORS as exc:
                    self._give_up(exc)
                    raise RecoveryFailed(
                        'recovery of the connection to %s gave up: %s' % (
                            host, exc)) from exc
                except (OSError, AMQPError) as exc:
                    last = exc
                    logger.info('recovery attempt %d (%s) failed: %s',
                                self._attempts, host, exc)
                    self._drop_transport()
                    continue
                return
            elapsed = monotonic() - self._outage_since
            if self.recover_timeout is not None and \
                    elapsed >= self.recover_timeout:
                assert last is not None
                self._give_up(last)
                raise RecoveryFailed(
                    'connection to %s not recovered within recover_timeout='
                    '%ss: %s' % (self.host, self.recover_timeout, last)
                ) from last
            pause = min(self.recover_max_interval, self.recover_interval *
                        2 ** min(self._attempts // len(hosts) - 1, 16))
            pause *= random.uniform(0.5, 1.0)
            if self.recover_timeout is not None:
                pause = min(pause, max(self.recover_timeout - elapsed, 0))
            if deadline is not None and monotonic() + pause > deadline:
                raise socket.timeout('connection not recovered yet')
            self._stop.wait(pause)

    def _give_up(self, exc: BaseException) -> None:
        logger.error('recovery of the connection to %s gave up: %s',
                     self.host, exc)
        with self._recovery:
            self._gave_up = exc
            self._recovery.notify_all()
        self._end(exc)
        self._hook(self.on_recovery_failed, self, exc)

    def _reconnect(self, host: str) -> None:
        """One attempt: connect to ``host``, reopen the channels, redeclare
        the topology, re-register the consumers."""
        # (the application may have closed some while the connection was
        # down: those stay closed)
        channels = [c for c in self._lost_channels
                    if c.connection is not None]
        self.host = host
        Connection.connect(self)
        for channel in channels:
            self.channels[channel.channel_id] = channel
            self.channel_ids.claim(channel.channel_id)
            channel.lane.inbox.clear()
        # the outage is over for the channels' own calls from here on,
        # for this (the recovering) thread only: others still wait
        for channel in channels:
            channel._recover()
        if self.recover_topology:
            self._recover_topology()
        for channel in channels:
            self._recover_consumers(channel)
        with self._recovery:
            closed = self._closed_by_app
            if not closed:
                self._outage = None
                self._lost_channels = []
                self.recoveries += 1
                self._recovery.notify_all()
        if closed:
            # the application closed the connection while this attempt
            # was under way: it stays closed, nothing of it left open
            Connection._transport_lost(self, None)
            for channel in channels:
                channel.collect()
            raise RecoverableConnectionError(
                'connection to %s was closed' % (self.host,))
        logger.warning('connection to %s recovered (%d channels, %d '
                       'consumers) after %.2fs', host, len(channels),
                       len(self.topology.consumers),
                       monotonic() - self._outage_since)
        self._hook(self.on_recovery_succeeded, self)

    # -- topology -------------------------------------------------------------
    def _wanted(self, kind: str, record: Dict[str, Any]) -> bool:
        f = self.recover_filter
        return f is None or bool(f(kind, record))

    def _recover_topology(self) -> None:
        topology = self.topology
        with topology.lock:
            exchanges = list(topology.exchanges.values())
            queues = list(topology.queues.values())
            if not (exchanges or queues or topology.bindings):
                return      # nothing declared: no channel to open
        step = _Plain(self)
        try:
            step.open()
            for record in exchanges:
                if self._wanted('exchange', record):
                    self._step(step, 'exchange %s' % record['exchange'],
                               _Plain.exchange_declare, record['exchange'],
                               record['type'], False, record['durable'],
                               record['auto_delete'], False,
                               record['arguments'])
            left_out = set()
            for record in queues:
                if self._wanted('queue', record):
                    self._recover_queue(step, record)
                else:
                    left_out.add(record['queue'])
            with topology.lock:
                bindings = [dict(b) for b in topology.bindings]
            for record in bindings:
                # (a queue left out takes its bindings along)
                if record['kind'] == 'queue' and \
                        record['destination'] in left_out or \
                        not self._wanted('binding', record):
                    continue
                method = _Plain.queue_bind if record['kind'] == 'queue' \
                    else _Plain.exchange_bind
                self._step(step, 'binding %s -> %s' % (
                    record['source'], record['destination']), method,
                    record['destination'], record['source'],
                    record['routing_key'], False, record['arguments'])
        finally:
            if step.is_open:
                try:
                    step.close()
                except (OSError, AMQPError):
                    pass

    def _recover_queue(self, step: _Plain, record: Dict[str, Any]) -> None:
        old = record['queue']
        ok = self._step(step, 'queue %s' % old, _Plain.queue_declare,
                        '' if record['server_named'] else old, False,
                        record['durable'], record['exclusive'],
                        record['auto_delete'], False, record['arguments'])
        if ok is not None and ok.queue != old:
            self.topology.rename_queue(old, ok.queue)
            logger.info('server-named queue %s is now %s', old, ok.queue)
            self._hook(self.on_queue_renamed, old, ok.queue)

    def _step(self, step: _Plain, what: str, method: Callable[..., Any],
              *args: Any) -> Any:
        """One topology step; a refusal is logged and counted, and the
        steps after it go on (a queue still locked by the old connection's
        exclusive owner is retried for a few seconds)."""
        for attempt in range(20):
            try:
                return method(step, *args)
            except ResourceLocked as exc:
                if attempt == 19:
                    return self._step_failed(what, exc)
                self._stop.wait(0.25)
            except ChannelError as exc:
                return self._step_failed(what, exc)
        return None  # pragma: no cover

    def _step_failed(self, what: str, exc: BaseException) -> None:
        self.recovery_errors += 1
        logger.error('recovery of %s failed: %s', what, exc)

    def _recover_consumers(self, channel: RecoveringChannel) -> None:
        for tag, record in self.topology.consumers_of(channel):
            if not self._wanted('consumer', dict(record, consumer_tag=tag)):
                continue
            try:
                _Plain.basic_consume(
                    channel, record['queue'], tag, record['no_local'],
                    record['no_ack'], record['exclusive'], False,
                    record['callback'], record['arguments'],
                    record['on_cancel'])
            except ChannelError as exc:
                self._step_failed('consumer %s' % tag, exc)

    # -- the calls that wait for a recovery -----------------------------------
    def drain_events(self, timeout: Optional[float] = None) -> None:
        """As :meth:`Connection.drain_events`, across outages: a lost
        connection is recovered (by this thread or another) and draining
        goes on, within ``timeout``."""
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if self._outage is not None:
                self._await_recovery(deadline)
            remaining = None if deadline is None else \
                max(deadline - monotonic(), 0)
            try:
                super().drain_events(remaining)
                return
            except RECOVERED_ERRORS as exc:
                if isinstance(exc, socket.timeout) or not self.lost_to(exc):
                    raise

    def channel(self, channel_id: Optional[int] = None,
                callback: Optional[Callable[..., object]] = None) -> Any:
        if self._outage is not None:
            self.await_recovery()
        return super().channel(channel_id, callback)

    @staticmethod
    def _hook(hook: Optional[Callable[..., object]], *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:  # a hook must not stop the recovery
            logger.exception('recovery hook %r failed', hook)


Connection.recovering_base = RecoveringConnection
