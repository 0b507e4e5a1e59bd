"""The AMQP connection: channels, event loop, close (the handshake and
heartbeats in :mod:`amqp.handshake` and :mod:`amqp.heartbeats`, the reading
in :mod:`amqp.reader`).

Public API as py-amqp 5.x's ``amqp.connection.Connection``; see
docs/connection.rst for where we deliberately differ (bounded waits, TLS
verified by default, a total deadline for ``drain_events``).

Spec: AMQP 0-9-1 section 1.4 (class connection), 2.2.4 (negotiation).
"""
from __future__ import annotations

import logging
import socket
import threading
import uuid
import warnings
import weakref
from time import monotonic
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, List,
                    Mapping, Optional, Sequence, Set, Tuple, Type, TypeVar,
                    Union, cast)

from vine import ensure_promise

from . import sasl, spec, wire
from ._version import __version__
from .abstract_channel import AbstractChannel
from .channel import Channel
from .exceptions import (AMQPDeprecationWarning, AMQPError,  # noqa: F401
                         AMQPNotImplementedError, ChannelError,
                         ConnectionError, ConnectionForced, FrameError,
                         FrameSyntaxError, InvalidCommand, MessageNacked,
                         RecoverableChannelError, RecoverableConnectionError,
                         ResourceError, UnexpectedFrame, error_for_code)
from .handshake import Handshake
from .heartbeats import AMQP_HEARTBEAT_LOGGER, Heartbeats  # noqa: F401
from .method_framing import frame_handler, frame_writer
from .reader import PEER_PROTOCOL_ERRORS, Lane, Reader
from .serialization import dumps, dumps_method
from .transport import AbstractTransport, Transport

try:  # kombu imports amqp.connection.SSLError; Python may lack ssl
    from ssl import SSLError  # noqa: F401
except ImportError:  # pragma: no cover
    class SSLError(Exception):  # type: ignore[no-redef]  # never both
        """Stand-in when Python is built without ssl (py-amqp has it)."""

if TYPE_CHECKING:
    import ssl as _ssl

    from vine import Thenable

    # ``Channel`` names the class attribute inside Connection's body, so
    # annotations there use this name for the class.
    from .channel import Channel as _Channel
    from .basic_message import Message
    from .method_framing import (ByteSink, FrameBuffer, FrameHandler,
                                 FrameWriter, InboundConnection,
                                 MethodCallback, OutboundConnection,
                                 OversizedContent)
    from .serialization import EncodableTable, EncodableValue, FieldTable

    #: ``frame_handler(connection, callback)``, as the constructor takes it
    FrameHandlerFactory = Callable[[InboundConnection, MethodCallback],
                                   FrameHandler]
    #: ``frame_writer(connection, transport)``, as the constructor takes it
    FrameWriterFactory = Callable[[OutboundConnection, ByteSink],
                                  FrameWriter]

__all__ = ('Connection',)

_C = TypeVar('_C', bound='Connection')

logger = AMQP_LOGGER = logging.getLogger('amqp')

#: Default :attr:`Connection.library_properties` (py-amqp's module-level
#: name): sent in connection.start-ok as the client properties.
LIBRARY_PROPERTIES: Dict[str, EncodableValue] = {
    'product': 'amqp',
    'product_version': __version__,
    'platform': 'Python',
    'information': 'synchronous AMQP 0-9-1 client (py-amqp compatible)',
}

#: Default :attr:`Connection.negotiate_capabilities` (py-amqp's
#: module-level name): capabilities asked for when the server offers them.
NEGOTIATE_CAPABILITIES: Dict[str, bool] = {
    'consumer_cancel_notify': True,
    'connection.blocked': True,
    'authentication_failure_close': True,
    'publisher_confirms': True,
    'basic.nack': True,
    'exchange_exchange_bindings': True,
    'per_consumer_qos': True,
}

#: Longest close() and Channel.close() wait for close-ok.
CLOSE_OK_TIMEOUT = 10.0
#: Default bound on connecting: TCP, TLS and the AMQP handshake together.
CONNECT_TIMEOUT = 30.0
#: Default bound on waiting for the reply to a synchronous method.
REPLY_TIMEOUT = 60.0
#: Largest message body accepted by default: RabbitMQ's own default
#: ``max_message_size`` (128 MiB).
MAX_MESSAGE_SIZE = 128 * 1024 * 1024

#: How every server's first frame starts: a method frame on channel 0.
_START_OF_METHOD_ON_CHANNEL_0 = bytes((spec.FRAME_METHOD, 0, 0))

_PEER_PROTOCOL_ERRORS = PEER_PROTOCOL_ERRORS

class ChannelIds:
    """The channel ids of one connection: which are taken, which free.

    An id is taken from :meth:`allocate` (or :meth:`claim`) until
    :meth:`release`; ids run from 1 to ``limit`` (the negotiated
    channel_max).  Threads may open channels at the same time: a lock
    makes each take atomic.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used: Set[int] = set()
        self._lock = threading.Lock()

    def allocate(self) -> int:
        """Take the lowest free id; ResourceError when none is left."""
        used = self.used
        with self._lock:
            for channel_id in range(1, self.limit + 1):
                if channel_id not in used:
                    used.add(channel_id)
                    return channel_id
        raise ResourceError(
            'No free channel ids, current={}, channel_max={}'.format(
                len(used), self.limit), spec.Channel.Open)

    def claim(self, channel_id: int) -> int:
        """Take ``channel_id``; ConnectionError when it is taken."""
        with self._lock:
            if channel_id in self.used:
                raise ConnectionError('Channel %r already open'
                                      % (channel_id,))
            if not 0 < channel_id <= self.limit:
                raise ResourceError('channel id %r outside 1..%d' % (
                    channel_id, self.limit), spec.Channel.Open)
            self.used.add(channel_id)
        return channel_id

    def release(self, channel_id: int) -> None:
        self.used.discard(channel_id)


class Connection(Handshake, Heartbeats):
    """An AMQP connection to a broker (a blocking socket transport).

    Created unconnected; :meth:`connect` (or ``with``) opens the socket and
    runs the handshake.  Unknown keyword arguments are accepted and ignored
    (kombu passes its own).
    """

    Channel: Type[_Channel] = Channel

    #: Sent in connection.start-ok; ``capabilities`` are filled in from
    #: :attr:`negotiate_capabilities` and what the server offers.
    library_properties: Dict[str, EncodableValue] = LIBRARY_PROPERTIES

    #: Capabilities we ask for when the server offers them.
    negotiate_capabilities: Dict[str, bool] = NEGOTIATE_CAPABILITIES

    #: Exceptions that mean the connection is broken (kombu reads these).
    connection_errors = (
        ConnectionError, socket.error, IOError, OSError,
    )
    channel_errors = (ChannelError,)
    recoverable_connection_errors = (
        RecoverableConnectionError, MessageNacked, socket.error, IOError,
        OSError,
    )
    recoverable_channel_errors = (RecoverableChannelError,)

    last_heartbeat_sent: float = 0
    last_heartbeat_received: float = 0
    # The frame counters (py-amqp's names) and frame_max are slots: the
    # compiled frame writer and handler read them for every frame, and a
    # slot is read and written without a dictionary lookup.
    __slots__ = ('bytes_sent', 'bytes_recv', 'frame_max')
    bytes_sent: int
    bytes_recv: int
    frame_max: int
    prev_sent: Optional[int] = None
    prev_recv: Optional[int] = None
    server_heartbeat: Optional[int] = None
    heartbeat = 0
    _transport: Optional[AbstractTransport] = None
    _frame_writer: Optional[FrameWriter] = None
    _on_inbound_frame: Optional[FrameHandler] = None
    _heartbeat_thread: Optional[Tuple[threading.Thread,
                                      threading.Event]] = None
    _finalizer: Optional[weakref.finalize[[AbstractTransport],
                                          Connection]] = None
    _has_connected = False     # a handshake completed (no lazy connect)
    _tracing = False           # the amqp.wire logger was on at connect

    #: The class that adds automatic recovery to a connection asked for it
    #: (``Connection(..., recover=True)``).  :mod:`amqp.recovery` sets it
    #: when imported (``import amqp`` does), so that this module never
    #: imports the layer above it.
    recovering_base: Optional[type] = None

    def __new__(cls: Type[_C], *args: Any, **kwargs: Any) -> _C:
        base = Connection.recovering_base
        if kwargs.get('recover') and base is not None and \
                not issubclass(cls, base):
            cls = _with_recovery(cls, base)
        return super().__new__(cls)

    def __init__(self, host: str = 'localhost:5672',
                 userid: Optional[str] = 'guest',
                 password: Optional[str] = 'guest',
                 login_method: Optional[str] = None,
                 login_response: Union[str, bytes, None] = None,
                 authentication: Union[sasl.SASL,
                                       Iterable[sasl.SASL]] = (),
                 virtual_host: str = '/', locale: str = 'en_US',
                 client_properties: Optional[EncodableTable] = None,
                 ssl: Union[bool, Dict[str, Any], _ssl.SSLContext] = False,
                 connect_timeout: Optional[float] = CONNECT_TIMEOUT,
                 channel_max: Optional[int] = None,
                 frame_max: Optional[int] = None,
                 heartbeat: Optional[float] = 0,
                 on_open: Optional[Callable[[Connection], object]] = None,
                 on_blocked: Optional[Callable[[str], object]] = None,
                 on_unblocked: Optional[Callable[[], object]] = None,
                 confirm_publish: bool = False,
                 on_tune_ok: Optional[Callable[[], object]] = None,
                 read_timeout: Optional[float] = None,
                 write_timeout: Optional[float] = None,
                 socket_settings: Optional[Mapping[int, int]] = None,
                 frame_handler: FrameHandlerFactory = frame_handler,
                 frame_writer: FrameWriterFactory = frame_writer,
                 on_close: Optional[Callable[[Optional[BaseException]],
                                             object]] = None,
                 blocked_timeout: Optional[float] = None,
                 heartbeat_thread: bool = False,
                 reply_timeout: Optional[float] = REPLY_TIMEOUT,
                 max_message_size: Optional[int] = MAX_MESSAGE_SIZE,
                 **kwargs: Any) -> None:
        self._connection_id = uuid.uuid4().hex
        self.bytes_sent = self.bytes_recv = 0
        if channel_max is not None and not 0 <= channel_max <= 65535:
            raise ValueError('channel_max must be 0..65535, got %r'
                             % (channel_max,))
        if frame_max is not None and frame_max and \
                not spec.FRAME_MIN_SIZE <= frame_max <= 0xFFFFFFFF:
            raise ValueError('frame_max must be at least %d, got %r'
                             % (spec.FRAME_MIN_SIZE, frame_max))
        if heartbeat is not None and (not isinstance(heartbeat, (int, float))
                                      or not 0 <= heartbeat <= 65535):
            raise ValueError('heartbeat must be 0..65535 seconds, got %r'
                             % (heartbeat,))
        self.authentication = self._select_auth(
            authentication, login_method, login_response, userid, password)
        self.userid = userid
        self._password = password
        self.client_properties = dict(self.library_properties,
                                      **(client_properties or {}))
        self.locale = locale
        self.host = host
        self.virtual_host = virtual_host
        self.on_tune_ok = ensure_promise(on_tune_ok)
        self.frame_handler_cls = frame_handler
        self.frame_writer_cls = frame_writer
        self._handshake_complete = False
        self.max_message_size = max_message_size
        self.channels: Dict[int, AbstractChannel] = {}
        #: who reads the socket and hands each method to its thread
        #: (replaced at each connect)
        self._reader = self._new_reader()
        #: errors for channels that arrived during another channel's wait,
        #: as (channel, exception), oldest first; raised by raise_deferred
        #: (the reader's list, which it guards)
        self.deferred_errors: List[Tuple[AbstractChannel, BaseException]] = \
            self._reader.deferred  # type: ignore[assignment]
        #: the buffer of frames read but not yet handled, offered to the
        #: frame handler (None while the wire trace is on)
        self.inbound_frames: Optional[FrameBuffer] = None
        super().__init__(self, 0)
        self.channel_max = channel_max or 65535
        self.frame_max = frame_max or spec.FRAME_MAX_DEFAULT
        self.client_heartbeat = heartbeat or 0
        self.confirm_publish = confirm_publish
        self.ssl = ssl
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.socket_settings = socket_settings
        self.connect_timeout = connect_timeout
        self.blocked_timeout = blocked_timeout
        self.reply_timeout = reply_timeout
        self.heartbeat_thread = heartbeat_thread
        self.on_blocked = on_blocked
        self.on_unblocked = on_unblocked
        self.on_close = on_close
        self.on_open = ensure_promise(on_open)
        #: the reason while the broker blocks us
        self.blocked: Optional[str] = None
        self.version_major = 0
        self.version_minor = 0
        self.server_properties: FieldTable = {}
        self.mechanisms: List[bytes] = []
        self.locales: List[str] = []
        #: the channel ids in use (see :class:`ChannelIds`)
        self.channel_ids = ChannelIds(self.channel_max)
        # ids of channels closed without close-ok yet: taken until it comes
        self._closing_ids: Set[int] = set()

    def __repr__(self) -> str:
        # State at a glance for the REPL; never the password.
        transport = self._transport
        if transport is None:
            state = 'closed' if self.server_properties else 'not connected'
        elif not self._handshake_complete:
            state = 'connecting'
        elif self.is_closing:
            state = 'closing'
        else:
            state = 'open'
        parts = ['<AMQP Connection %s%s vhost=%r %s' % (
            '%s@' % self.userid if self.userid else '', self.host,
            self.virtual_host, state)]
        if transport is not None and self._handshake_complete:
            n = len([c for c in (self.channels or {}) if c])
            parts.append(', %d channel%s' % (n, '' if n == 1 else 's'))
        if self.server_properties:  # negotiated, not just asked for
            parts.append(', channel_max=%s frame_max=%s heartbeat=%s' % (
                self.channel_max, self.frame_max, self.heartbeat))
        if self.blocked is not None:
            parts.append(', blocked: %s' % (self.blocked,))
        parts.append(' at %#x>' % id(self))
        return ''.join(parts)

    def __enter__(self: _C) -> _C:
        self.connect()
        return self

    def __exit__(self, *eargs: object) -> None:
        self.close()

    def then(self, on_success: Callable[..., object],
             on_error: Optional[Callable[..., object]] = None) -> Thenable:
        """Call ``on_success(connection)`` once the connection is open."""
        return self.on_open.then(on_success, on_error)

    def _setup_listeners(self) -> None:
        self._callbacks = {
            spec.Connection.Start: self._on_start,
            spec.Connection.Secure: self._on_secure,
            spec.Connection.Tune: self._on_tune,
            spec.Connection.OpenOk: self._on_open_ok,
            spec.Connection.Close: self._on_close,
            spec.Connection.CloseOk: self._on_close_ok,
            spec.Connection.Blocked: self._on_blocked,
            spec.Connection.Unblocked: self._on_unblocked,
        }

    # -- connecting -----------------------------------------------------
    def Transport(self, host: str, connect_timeout: Optional[float],
                  ssl: Union[bool, Dict[str, Any], _ssl.SSLContext] = False,
                  read_timeout: Optional[float] = None,
                  write_timeout: Optional[float] = None,
                  socket_settings: Optional[Mapping[int, int]] = None,
                  **kwargs: Any) -> AbstractTransport:
        """Build the transport (TCP or TLS socket); override to replace
        it."""
        return Transport(host, connect_timeout=connect_timeout, ssl=ssl,
                         read_timeout=read_timeout,
                         write_timeout=write_timeout,
                         socket_settings=socket_settings, **kwargs)

    @property
    def connected(self) -> bool:
        """True once the handshake finished and until the connection
        closes."""
        return bool(self._transport and self._transport.connected and
                    self._handshake_complete)

    def connect(self, callback: Optional[Callable[[], object]] = None
                ) -> None:
        """Open the socket and run the handshake (Start .. Open-Ok).

        ``connect_timeout`` bounds the TCP/TLS connect and the whole
        handshake; afterwards ``read_timeout``/``write_timeout`` apply.
        """
        if self.connected:
            if callback:
                callback()
            return None
        self._handshake_complete = False
        self.channels = {0: self}
        self.channel_ids = ChannelIds(self.channel_max)
        self._closing_ids = set()
        self.bytes_sent = self.bytes_recv = 0
        self.prev_sent = self.prev_recv = None
        self._reader = reader = self._new_reader()
        self.deferred_errors = reader.deferred  # type: ignore[assignment]
        self.lane = Lane()
        self.transport = self.Transport(
            self.host, self.connect_timeout, self.ssl, self.read_timeout,
            self.write_timeout, socket_settings=self.socket_settings)
        # one deadline for TCP connect, TLS handshake and AMQP handshake
        deadline = None if self.connect_timeout is None else \
            monotonic() + self.connect_timeout
        phase = 'connecting to'
        try:
            self.transport.connect(deadline)
            phase = 'AMQP handshake with'
            self._tracing = wire.enabled()
            # the handler may take whole contents from the buffer, except
            # when every frame must pass the wire trace
            self.inbound_frames = None if self._tracing else reader.frames
            # the frame handler's callback; without an override of
            # on_inbound_method, the reader's own (one call less per
            # method)
            on_method: MethodCallback = reader.arrived if \
                type(self).on_inbound_method is \
                Connection.on_inbound_method else self.on_inbound_method
            if self._tracing:
                self.on_inbound_frame = wire.traced_frames(
                    self.host, self.frame_handler_cls(
                        self, wire.traced_handler(self.host, on_method)))
                self.frame_writer = wire.traced_writer(
                    self.host, self.frame_writer_cls(self, self.transport))
            else:
                self.on_inbound_frame = self.frame_handler_cls(
                    self, on_method)
                self.frame_writer = self.frame_writer_cls(self,
                                                          self.transport)
            self.transport.write(spec.PROTOCOL_HEADER)
            if self._tracing:
                wire.logger.debug('%s > protocol header %r', self.host,
                                  spec.PROTOCOL_HEADER)
            try:
                # (stopping at open-ok: what follows is for drain_events)
                reader.wait_until(self, lambda: self._handshake_complete,
                                  deadline, [spec.Connection.OpenOk],
                                  handshake=True)
            except _PEER_PROTOCOL_ERRORS as exc:
                if self.bytes_recv or reader.frames.unread()[:3] == \
                        _START_OF_METHOD_ON_CHANNEL_0:
                    raise  # an AMQP peer, breaking the protocol
                raise self._not_amqp() from exc
            self.transport.handshake_done()
            self._has_connected = True
        except socket.timeout as exc:
            self.collect()
            raise socket.timeout(
                '%s %s did not finish within connect_timeout=%ss (%s)' % (
                    phase, self.host, self.connect_timeout, exc)) from None
        except BaseException:
            self.collect()
            raise
        self._finalizer = weakref.finalize(self, _close_dropped,
                                           self.transport)
        if self.heartbeat and self.heartbeat_thread:
            self._start_heartbeat_thread()
        if callback:
            callback()
        return None

    def _connect_on_first_use(self, what: str) -> None:
        """py-amqp connects a connection used before connect() (with a
        deprecation warning); so do we, but only one that never completed
        a handshake: a closed connection stays closed."""
        if self._transport is None and not self._has_connected:
            warnings.warn(AMQPDeprecationWarning(
                'Connection.%s was used before connect(): connecting now. '
                'Call connect() (or use the connection as a context '
                'manager) first.' % what), stacklevel=3)
            self.connect()

    @property
    def transport(self) -> Optional[AbstractTransport]:
        """The transport in use (connects a never-connected connection,
        as py-amqp does; None once closed)."""
        if self._transport is None:
            self._connect_on_first_use('transport')
        return self._transport

    @transport.setter
    def transport(self, transport: Optional[AbstractTransport]) -> None:
        self._transport = self._reader.transport = transport

    @property
    def on_inbound_frame(self) -> Optional[FrameHandler]:
        """The frame handler fed with every frame read (py-amqp API)."""
        if self._on_inbound_frame is None:
            self._connect_on_first_use('on_inbound_frame')
        return self._on_inbound_frame

    @on_inbound_frame.setter
    def on_inbound_frame(self, on_inbound_frame: Optional[FrameHandler]
                         ) -> None:
        self._on_inbound_frame = self._reader.handler = on_inbound_frame

    @property
    def frame_writer(self) -> Optional[FrameWriter]:
        """The callable that writes a method and its content as frames."""
        if self._frame_writer is None:
            self._connect_on_first_use('frame_writer')
        return self._frame_writer

    @frame_writer.setter
    def frame_writer(self, frame_writer: Optional[FrameWriter]) -> None:
        self._frame_writer = frame_writer

    @property
    def sock(self) -> Optional[socket.socket]:
        """The socket of the transport (connects a never-connected
        connection, as py-amqp does; None once closed)."""
        transport = self.transport
        return transport.sock if transport is not None else None

    # -- channels -------------------------------------------------------
    def _get_free_channel_id(self) -> int:
        """py-amqp's name for ``channel_ids.allocate()``."""
        return self.channel_ids.allocate()

    def _claim_channel_id(self, channel_id: int) -> int:
        """py-amqp's name for ``channel_ids.claim(channel_id)``."""
        return self.channel_ids.claim(channel_id)

    def forget_channel(self, channel: AbstractChannel,
                       awaiting_close_ok: bool = False) -> None:
        """Unregister a channel that is gone (closed or collected) and drop
        errors kept for it.  Its id is free again, unless the channel was
        closed without the broker's close-ok yet (``awaiting_close_ok``):
        then the id stays taken until close-ok (or channel.close) arrives
        for it, so that a late close-ok never reaches a newer channel."""
        channel_id = channel.channel_id
        if self.channels.get(channel_id) is channel:
            del self.channels[channel_id]
            if awaiting_close_ok:
                self._closing_ids.add(channel_id)
            else:
                self.channel_ids.release(channel_id)
        self._reader.forget(channel)

    def note_consumer(self, channel: AbstractChannel) -> None:
        """``channel`` registered a consumer: from now on a reply wait
        reads exactly up to its reply, leaving the deliveries that may
        follow it in the socket for the event loop (see
        :mod:`amqp.reader`)."""
        self._reader.note_consumer(channel)

    def channel(self, channel_id: Optional[int] = None,
                callback: Optional[Callable[..., object]] = None
                ) -> _Channel:
        """Return the open Channel ``channel_id``, or open a new one."""
        self._check_open()
        # None is never a key (a new channel is opened); channel 0 is the
        # connection itself, as in py-amqp.
        found = None if channel_id is None else \
            self.channels.get(channel_id)
        if found is not None:
            return found  # type: ignore[return-value]
        channel = self.Channel(self, channel_id, on_open=callback)
        channel.open()
        return channel

    def _check_open(self, what: str = 'channel()') -> None:
        self._connect_on_first_use(what)
        if not self.connected:
            raise RecoverableConnectionError(
                'connection to %s is not open' % (self.host,))

    def is_alive(self) -> bool:
        """True while the connection is open (py-amqp compatibility)."""
        return self.connected

    # -- event loop -----------------------------------------------------
    def drain_events(self, timeout: Optional[float] = None) -> None:
        """Wait for and dispatch incoming methods.

        Methods already read are served before the socket is read.
        Dispatches at least one method, then every further complete method
        already buffered.  ``timeout`` bounds the whole call (heartbeats in
        between do not extend it) and raises ``socket.timeout``;
        ``timeout=0`` never blocks.  ``read_timeout`` (or a timeout set on
        the open socket) bounds each silence of the broker.

        The calling thread becomes the connection's consumer thread: the
        deliveries other threads read while waiting for their replies are
        run by its next call (see docs/guide_threads.rst).
        """
        deadline = None if timeout is None else monotonic() + timeout
        self._connect_on_first_use('drain_events()')
        self.raise_deferred()
        self._reader.drain(deadline)
        self.raise_deferred()

    def frames_pending(self) -> bool:
        """True when a complete frame has been read but not dispatched,
        or methods read by another thread wait for :meth:`drain_events`.

        The socket does not show such frames as readable (over TLS a
        reply wait may decrypt deliveries that follow its reply); an event
        loop that polls the socket calls :meth:`drain_events` while this
        is true.
        """
        return self._reader.has_pending()

    # -- synchronous waits (the interface channels use) ------------------
    def wait_until(self, channel: AbstractChannel, done: Callable[[], object],
                   deadline: Optional[float],
                   methods: Sequence[spec.MethodSig] = ()) -> None:
        """Handle what arrives for ``channel``'s synchronous call until
        ``done()``; ``deadline`` (``time.monotonic()``) bounds it, and
        ``read_timeout`` (or a timeout set on the open socket) each
        silence of the broker (:class:`~amqp.exceptions.ReadTimeout`, a
        ``socket.timeout``).

        While it runs, :attr:`waiting_channel` is ``channel`` in this
        thread: errors for other channels are deferred instead of aborting
        this wait.  Other threads may wait at the same time; whichever
        reads hands each method to the thread it belongs to.
        """
        self._reader.wait_until(channel, done, deadline, methods)

    @property
    def waiting_channel(self) -> Optional[AbstractChannel]:
        """The channel (or this connection) the calling thread is in a
        synchronous wait on, or None."""
        return cast('Optional[AbstractChannel]',
                    self._reader.waiting_channel)

    def defer_error(self, channel: AbstractChannel,
                    exc: BaseException) -> None:
        """Keep ``exc`` (for ``channel``) until it can be raised without
        aborting another channel's wait."""
        self._reader.defer(channel, exc)

    def raise_deferred(self, channel: Optional[AbstractChannel] = None
                       ) -> None:
        """Raise the oldest deferred error of ``channel`` (of any channel
        still open when None); do nothing when there is none."""
        if self._reader.deferred:
            exc = self._reader.take_deferred(channel)
            if exc is not None:
                raise exc

    def blocking_read(self, timeout: Optional[float] = None) -> bool:
        """Read and handle one frame (py-amqp's primitive)."""
        self._connect_on_first_use('blocking_read()')
        deadline = None if timeout is None else monotonic() + timeout
        return self._reader.read_one(deadline)

    def _new_reader(self) -> Reader:
        return Reader(self, self._transport_lost, self._abort,
                      self._on_gone_channel_method, self.max_message_size)

    def _abort(self, exc: BaseException) -> None:
        """The peer broke the protocol: send connection.close with the
        error's reply code (best effort, no waiting) and drop the socket."""
        transport = self._transport
        if transport is None:
            return
        logger.debug('closing connection to %s after protocol error: %s',
                     self.host, exc)
        writer = self._frame_writer
        if writer is not None and transport.connected and self.bytes_recv:
            try:
                with transport.having_timeout(1.0):
                    writer(1, 0, spec.Connection.Close, dumps(
                        spec.args_of(spec.Connection.Close),
                        (getattr(exc, 'reply_code', 0) or 0,
                         str(exc)[:255], 0, 0)),
                        None)
            except Exception:  # the socket may be past saving
                pass
        self._transport_lost(exc)

    def on_inbound_method(self, channel_id: int, method_sig: spec.MethodSig,
                          payload: bytes,
                          content: Union[Message, OversizedContent, None]
                          ) -> None:
        """Take a complete method (the frame handler's callback): during
        a read, it goes to the thread it belongs to (see
        :mod:`amqp.reader`); called directly, it is dispatched at once."""
        self._reader.arrived(channel_id, method_sig, payload, content)

    def _on_gone_channel_method(self, channel_id: int,
                                method_sig: spec.MethodSig) -> None:
        """A method for a channel that is not registered.  For one we
        closed without close-ok yet, close-ok (or the broker's own
        channel.close) frees the id; anything else is dropped, as spec
        2.2.3 says a closing channel does."""
        if channel_id not in self._closing_ids:
            logger.debug('method %s for unknown channel %s dropped',
                          method_sig, channel_id)
            return
        if method_sig == spec.Channel.Close:
            writer = self._frame_writer
            if writer is not None:
                writer(spec.FRAME_METHOD, channel_id, spec.Channel.CloseOk,
                       b'', None)
        elif method_sig != spec.Channel.CloseOk:
            return
        self._closing_ids.discard(channel_id)
        self.channel_ids.release(channel_id)

    def _abandon_wait(self, exc: BaseException) -> None:
        """A connection-level reply did not come in time: close."""
        self._transport_lost(exc)

    @property
    def close_timeout(self) -> float:
        """How long close() and Channel.close() wait for close-ok."""
        if self.connect_timeout:
            return min(self.connect_timeout, CLOSE_OK_TIMEOUT)
        return CLOSE_OK_TIMEOUT

    # -- blocked --------------------------------------------------------
    def wait_unblocked(self, timeout: float) -> None:
        """Wait until the broker unblocks the connection (a publish with
        ``blocked_timeout`` set does); RecoverableConnectionError when it
        still blocks after ``timeout`` seconds.

        Waits on the connection's own methods (connection.unblocked), so
        a publishing thread does not become the consumer thread.
        """
        deadline = monotonic() + timeout
        try:
            self.wait_until(self, lambda: self.blocked is None, deadline,
                            [spec.Connection.Unblocked])
        except socket.timeout:
            raise RecoverableConnectionError(
                'connection blocked by the broker (%s) for longer than '
                'blocked_timeout=%ss' % (self.blocked, timeout)) from None

    def _on_blocked(self, reason: str = '') -> None:
        self.blocked = reason or 'connection blocked'
        if self.on_blocked:
            self.on_blocked(reason)

    def _on_unblocked(self) -> None:
        self.blocked = None
        if self.on_unblocked:
            self.on_unblocked()

    # -- closing --------------------------------------------------------
    def close(self, reply_code: int = 0, reply_text: str = '',
              method_sig: spec.MethodSig = (0, 0),
              argsig: str = spec.args_of(spec.Connection.Close)) -> None:
        """Close the connection and wait (bounded) for close-ok.

        Harmless when already closed.
        """
        if self._transport is None or not self._transport.connected:
            self._transport_lost(None)
            return None
        try:
            for channel in list(self.channels.values()):
                if channel is not self:
                    channel.collect()
            args = (reply_code, reply_text, method_sig[0], method_sig[1])
            self.is_closing = True
            try:
                if self._wait_replaced():
                    self.send_method(spec.Connection.Close, argsig, args)
                    self.wait(spec.Connection.CloseOk,
                              timeout=self.close_timeout)
                else:
                    self._call(spec.Connection.Close,
                               dumps_method(spec.Connection.Close, argsig,
                                            args),
                               None, [spec.Connection.CloseOk], False,
                               self.close_timeout, abandon=False)
            except (OSError, AMQPError) as exc:
                # closing anyway: a late or missing close-ok changes nothing
                logger.debug('no close-ok from %s: %r', self.host, exc)
        finally:
            self._transport_lost(None)
        return None

    _ALLOWED_METHODS_WHEN_CLOSING = (spec.Connection.Close,
                                     spec.Connection.CloseOk)

    def _on_close(self, reply_code: int, reply_text: str, class_id: int,
                  method_id: int) -> None:
        """The broker closes the connection: answer close-ok and raise."""
        try:
            self.send_method(spec.Connection.CloseOk)
        except OSError:
            pass
        exc = error_for_code(reply_code, reply_text, (class_id, method_id),
                             ConnectionError)
        self._transport_lost(exc)
        raise exc

    def _on_close_ok(self) -> None:
        """close() drops the socket once its wait returns."""

    def _notify_close(self, exc: Optional[BaseException]) -> None:
        if self.on_close:
            try:
                self.on_close(exc)
            except Exception:  # never hide the close behind a callback bug
                logger.exception('on_close callback failed')

    def _transport_lost(self, exc: Optional[BaseException] = None) -> None:
        """Drop the connection; tell ``on_close`` once, with the reason
        (None for a clean close)."""
        was_open = self._transport is not None
        # threads waiting on the connection wake with the reason
        self._reader.fail(exc)
        self.collect()
        if was_open:
            self._notify_close(exc)

    def collect(self) -> None:
        """Drop the transport and every channel without network I/O."""
        self._drop_transport()
        for channel in list(self.channels.values()):
            if channel is not self:
                channel.collect()
        self.channels = {}
        self.channel_ids = ChannelIds(self.channel_max)

    def _drop_transport(self) -> None:
        """Close the socket and forget the session on it (reader, frame
        writer, heartbeat thread) without network I/O; channels are left
        alone (automatic recovery reopens them)."""
        if self._heartbeat_thread is not None:
            self._heartbeat_thread[1].set()
            self._heartbeat_thread = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        transport, self._transport = self._transport, None
        self._reader.transport = None
        if transport is not None:
            try:
                transport.close()
            except OSError:
                pass
        self._closing_ids = set()
        self._reader.fail(None)
        del self._reader.deferred[:]
        self._frame_writer = None
        self._on_inbound_frame = self._reader.handler = None
        self._handshake_complete = False
        self.is_closing = False

    # -- RabbitMQ extensions -------------------------------------------
    def update_secret(self, new_secret: Union[str, bytes], reason: str = '',
                      timeout: Optional[float] = None) -> object:
        """Replace the credential of an open connection (RabbitMQ
        connection.update-secret, e.g. a refreshed OAuth 2 token)."""
        self._check_open()
        return self.send_method(spec.Connection.UpdateSecret,
                                spec.args_of(spec.Connection.UpdateSecret),
                                (new_secret, reason),
                                wait=spec.Connection.UpdateSecretOk)


#: connection class -> the same class with automatic recovery
_RECOVERING: Dict[type, type] = {}


def _with_recovery(cls: Type[_C], base: type) -> Type[_C]:
    """``cls`` with the recovering ``base`` mixed in (``base`` itself for
    Connection; a subclass such as kombu's keeps its own methods)."""
    if issubclass(base, cls) and base.__mro__[1] is cls:
        return base
    made = _RECOVERING.get(cls)
    if made is None:
        made = _RECOVERING[cls] = type(cls.__name__, (base, cls), {
            '__module__': cls.__module__, '__qualname__': cls.__qualname__})
    return cast('Type[_C]', made)


def _close_dropped(transport: AbstractTransport) -> None:
    """Close the socket of a connection that was garbage-collected
    without close() (weakref.finalize callback)."""
    try:
        transport.close()
    except OSError:
        pass
