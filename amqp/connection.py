"""The AMQP connection: handshake, channels, event loop, heartbeats, close.

Public API as py-amqp 5.x's ``amqp.connection.Connection``; see
docs/connection.rst for where we deliberately differ (bounded waits, TLS
verified by default, a total deadline for ``drain_events``).

Spec: AMQP 0-9-1 section 1.4 (class connection), 2.2.4 (negotiation).
"""
import logging
import socket
import threading
import uuid
from time import monotonic
from urllib.parse import parse_qsl, unquote, urlsplit

from vine import ensure_promise

from . import __version__, sasl, spec
from .abstract_channel import AbstractChannel
from .channel import Channel
from .exceptions import (AMQPDeprecationWarning, AMQPError,  # noqa: F401
                         AMQPNotImplementedError, ChannelError,
                         ConnectionError, ConnectionForced, FrameError,
                         FrameSyntaxError, InvalidCommand, MessageNacked,
                         RecoverableChannelError, RecoverableConnectionError,
                         ResourceError, UnexpectedFrame, error_for_code)
from .method_framing import frame_handler, frame_writer, method_end
from .serialization import dumps
from .transport import Transport

try:  # kombu imports amqp.connection.SSLError; Python may lack ssl
    from ssl import SSLError  # noqa: F401
except ImportError:  # pragma: no cover
    class SSLError(Exception):
        """Stand-in when Python is built without ssl (py-amqp has it)."""

__all__ = ('Connection',)

logger = AMQP_LOGGER = logging.getLogger('amqp')
#: py-amqp's logger for heartbeat_tick's DEBUG records; logging configs
#: name it to silence or raise heartbeat chatter on its own.
AMQP_HEARTBEAT_LOGGER = logging.getLogger(
    'amqp.connection.Connection.heartbeat_tick')

#: Default :attr:`Connection.library_properties` (py-amqp's module-level
#: name): sent in connection.start-ok as the client properties.
LIBRARY_PROPERTIES = {
    'product': 'amqp',
    'product_version': __version__,
    'platform': 'Python',
    'information': 'synchronous AMQP 0-9-1 client (py-amqp compatible)',
}

#: Default :attr:`Connection.negotiate_capabilities` (py-amqp's
#: module-level name): capabilities asked for when the server offers them.
NEGOTIATE_CAPABILITIES = {
    'consumer_cancel_notify': True,
    'connection.blocked': True,
    'authentication_failure_close': True,
    'publisher_confirms': True,
    'basic.nack': True,
    'exchange_exchange_bindings': True,
    'per_consumer_qos': True,
}

#: Bound on how long close() waits for close-ok when no timeout is set.
CLOSE_OK_TIMEOUT = 10.0

_HEARTBEAT_FRAME = b'\x08\x00\x00\x00\x00\x00\x00\xce'

#: Errors we detect in what the peer sent; the connection cannot go on
#: after them (spec 4.2.3: close with the reply code, then drop the socket).
_PEER_PROTOCOL_ERRORS = (FrameError, FrameSyntaxError, UnexpectedFrame,
                         AMQPNotImplementedError, InvalidCommand)

_MECHANISMS = {
    'PLAIN': lambda user, pw, resp: sasl.PLAIN(user, pw),
    'AMQPLAIN': lambda user, pw, resp: sasl.AMQPLAIN(user, pw),
    'EXTERNAL': lambda user, pw, resp: sasl.EXTERNAL(),
    'GSSAPI': lambda user, pw, resp: sasl.GSSAPI(user),
}


class Connection(AbstractChannel):
    """An AMQP connection to a broker (a blocking socket transport).

    Created unconnected; :meth:`connect` (or ``with``) opens the socket and
    runs the handshake.  Unknown keyword arguments are accepted and ignored
    (kombu passes its own).
    """

    Channel = Channel

    #: Sent in connection.start-ok; ``capabilities`` are filled in from
    #: :attr:`negotiate_capabilities` and what the server offers.
    library_properties = LIBRARY_PROPERTIES

    #: Capabilities we ask for when the server offers them.
    negotiate_capabilities = NEGOTIATE_CAPABILITIES

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

    last_heartbeat_sent = 0
    last_heartbeat_received = 0
    bytes_sent = 0
    bytes_recv = 0
    prev_sent = None
    prev_recv = None
    server_heartbeat = None
    heartbeat = 0
    _transport = None
    _frame_writer = None
    _on_inbound_frame = None
    _heartbeat_thread = None

    def __init__(self, host='localhost:5672', userid='guest',
                 password='guest', login_method=None, login_response=None,
                 authentication=(), virtual_host='/', locale='en_US',
                 client_properties=None, ssl=False, connect_timeout=None,
                 channel_max=None, frame_max=None, heartbeat=0, on_open=None,
                 on_blocked=None, on_unblocked=None, confirm_publish=False,
                 on_tune_ok=None, read_timeout=None, write_timeout=None,
                 socket_settings=None, frame_handler=frame_handler,
                 frame_writer=frame_writer, on_close=None,
                 blocked_timeout=None, heartbeat_thread=False, **kwargs):
        self._connection_id = uuid.uuid4().hex
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
        self.channels = {}
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
        self.heartbeat_thread = heartbeat_thread
        self.on_blocked = on_blocked
        self.on_unblocked = on_unblocked
        self.on_close = on_close
        self.on_open = ensure_promise(on_open)
        self.blocked = None   # the reason while the broker blocks us
        self.version_major = 0
        self.version_minor = 0
        self.server_properties = {}
        self.mechanisms = []
        self.locales = []
        self._used_channel_ids = set()

    # -- construction helpers -------------------------------------------
    @staticmethod
    def _select_auth(authentication, login_method, login_response,
                     userid, password):
        if authentication:
            if isinstance(authentication, sasl.SASL):
                return (authentication,)
            return tuple(authentication)
        if login_method is not None:
            factory = _MECHANISMS.get(login_method)
            if factory is not None:
                if login_method in ('PLAIN', 'AMQPLAIN') and \
                        (userid is None or password is None):
                    raise ValueError('login_method %s needs userid and '
                                     'password' % login_method)
                return (factory(userid, password, login_response),)
            if login_response is not None:
                return (sasl.RAW(login_method, login_response),)
            raise ValueError('unknown login_method %r: use one of %s, or '
                             'give login_response' % (
                                 login_method, ', '.join(sorted(_MECHANISMS))))
        return (sasl.GSSAPI(userid, fail_soft=True), sasl.EXTERNAL(),
                sasl.AMQPLAIN(userid, password), sasl.PLAIN(userid, password))

    @classmethod
    def from_url(cls, url, **kwargs):
        """Build a Connection from ``amqp://`` or ``amqps://`` URL.

        ``amqps://user:pass@host:5671/vhost?heartbeat=30&connect_timeout=5``.
        The vhost is the URL path with one leading ``/`` removed and
        percent-decoding applied (``%2F`` is ``/``; an empty path means
        ``/``).  Query parameters become keyword arguments (numbers
        converted); explicit ``kwargs`` win.
        """
        parts = urlsplit(url)
        if parts.scheme not in ('amqp', 'amqps', 'pyamqp'):
            raise ValueError('unsupported URL scheme %r (expected amqp:// or '
                             'amqps://)' % parts.scheme)
        secure = parts.scheme == 'amqps'
        port = parts.port or (5671 if secure else 5672)
        host = parts.hostname or 'localhost'
        if ':' in host:
            host = '[%s]' % host
        opts = {
            'host': '%s:%d' % (host, port),
            'userid': unquote(parts.username) if parts.username is not None
            else 'guest',
            'password': unquote(parts.password) if parts.password is not None
            else 'guest',
            'virtual_host': unquote(parts.path[1:]) if len(parts.path) > 1
            else '/',
        }
        if secure:
            opts['ssl'] = True
        for key, value in parse_qsl(parts.query):
            opts[key] = _coerce(value)
        opts.update(kwargs)
        return cls(**opts)

    def __repr__(self):
        if self._transport:
            return '<AMQP Connection: %s/%s using %r at %#x>' % (
                self.host, self.virtual_host, self._transport, id(self))
        return '<AMQP Connection: %s/%s (disconnected) at %#x>' % (
            self.host, self.virtual_host, id(self))

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *eargs):
        self.close()

    def then(self, on_success, on_error=None):
        return self.on_open.then(on_success, on_error)

    def _setup_listeners(self):
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
    def Transport(self, host, connect_timeout, ssl=False,
                  read_timeout=None, write_timeout=None,
                  socket_settings=None, **kwargs):
        return Transport(host, connect_timeout=connect_timeout, ssl=ssl,
                         read_timeout=read_timeout,
                         write_timeout=write_timeout,
                         socket_settings=socket_settings, **kwargs)

    @property
    def connected(self):
        """True once the handshake finished and until the connection
        closes."""
        return bool(self._transport and self._transport.connected and
                    self._handshake_complete)

    def connect(self, callback=None):
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
        self._used_channel_ids = set()
        self.bytes_sent = self.bytes_recv = 0
        self.prev_sent = self.prev_recv = None
        self.transport = self.Transport(
            self.host, self.connect_timeout, self.ssl, self.read_timeout,
            self.write_timeout, socket_settings=self.socket_settings)
        # one deadline for TCP connect, TLS handshake and AMQP handshake
        deadline = None if self.connect_timeout is None else \
            monotonic() + self.connect_timeout
        try:
            self.transport.connect(deadline)
            self.on_inbound_frame = self.frame_handler_cls(
                self, self.on_inbound_method)
            self.frame_writer = self.frame_writer_cls(self, self.transport)
            self.transport.write(spec.PROTOCOL_HEADER)
            while not self._handshake_complete:
                self._drain_for(self, deadline, handshake=True)
            self.transport.handshake_done()
        except socket.timeout:
            self.collect()
            raise socket.timeout(
                'AMQP handshake with %s did not finish within '
                'connect_timeout=%ss' % (self.host, self.connect_timeout)
            ) from None
        except BaseException:
            self.collect()
            raise
        if self.heartbeat and self.heartbeat_thread:
            self._start_heartbeat_thread()
        if callback:
            callback()
        return None

    def _on_start(self, version_major, version_minor, server_properties,
                  mechanisms, locales, argsig='FsSs'):
        self.version_major = version_major
        self.version_minor = version_minor
        self.server_properties = server_properties
        if isinstance(mechanisms, str):
            mechanisms = mechanisms.encode('utf-8', 'surrogateescape')
        self.mechanisms = mechanisms.split(b' ')
        self.locales = locales.split(' ')
        logger.debug('Start from server, version: %d.%d, properties: %s, '
                     'mechanisms: %s, locales: %s', version_major,
                     version_minor, server_properties, self.mechanisms,
                     self.locales)
        client_properties = self.client_properties
        scap = server_properties.get('capabilities') or {}
        cap = dict(client_properties.get('capabilities') or {})
        cap.update({name: enable for name, enable in
                    self.negotiate_capabilities.items() if scap.get(name)})
        if cap:
            client_properties['capabilities'] = cap
        else:
            client_properties.pop('capabilities', None)
        for auth in self.authentication:
            if auth.mechanism in self.mechanisms:
                response = auth.start(self)
                if response is not NotImplemented:
                    break
        else:
            raise ConnectionError(
                "Couldn't find appropriate auth mechanism (can offer: {}; "
                "available: {})".format(
                    ', '.join(m.mechanism.decode()
                              for m in self.authentication if m.mechanism),
                    ', '.join(m.decode('utf-8', 'replace')
                              for m in self.mechanisms)))
        self._auth = auth
        self.send_method(spec.Connection.StartOk, argsig,
                         (client_properties, auth.mechanism, response,
                          self.locale))

    def _on_secure(self, challenge):
        if isinstance(challenge, str):
            challenge = challenge.encode('utf-8', 'surrogateescape')
        response = self._auth.challenge(challenge)
        self.send_method(spec.Connection.SecureOk, 'x', (response,))

    def _on_tune(self, channel_max, frame_max, server_heartbeat,
                 argsig='BlB'):
        self.channel_max = _negotiate(self.channel_max, channel_max)
        self.frame_max = _negotiate(self.frame_max, frame_max)
        self.server_heartbeat = server_heartbeat or 0
        client_heartbeat = self.client_heartbeat or 0
        # 0 on our side disables heartbeats; otherwise the lower non-zero.
        if not client_heartbeat:
            self.heartbeat = 0
        elif not self.server_heartbeat:
            self.heartbeat = int(client_heartbeat)
        else:
            self.heartbeat = min(self.server_heartbeat, int(client_heartbeat))
        self.transport.frame_max = self.frame_max
        self.send_method(spec.Connection.TuneOk, argsig,
                         (self.channel_max, self.frame_max, self.heartbeat))
        self.on_tune_ok()
        self.last_heartbeat_sent = self.last_heartbeat_received = monotonic()
        self.send_method(spec.Connection.Open, 'ssb',
                         (self.virtual_host, '', False))

    def _on_open_ok(self, known_hosts=''):
        self._handshake_complete = True
        self.on_open(self)

    @property
    def transport(self):
        return self._transport

    @transport.setter
    def transport(self, transport):
        self._transport = transport

    @property
    def on_inbound_frame(self):
        return self._on_inbound_frame

    @on_inbound_frame.setter
    def on_inbound_frame(self, on_inbound_frame):
        self._on_inbound_frame = on_inbound_frame

    @property
    def frame_writer(self):
        return self._frame_writer

    @frame_writer.setter
    def frame_writer(self, frame_writer):
        self._frame_writer = frame_writer

    @property
    def sock(self):
        return self._transport.sock if self._transport else None

    @property
    def server_capabilities(self):
        return self.server_properties.get('capabilities') or {}

    # -- channels -------------------------------------------------------
    def _get_free_channel_id(self):
        used = self._used_channel_ids
        for channel_id in range(1, self.channel_max + 1):
            if channel_id not in used:
                used.add(channel_id)
                return channel_id
        raise ResourceError(
            'No free channel ids, current={}, channel_max={}'.format(
                len(self.channels), self.channel_max), spec.Channel.Open)

    def _claim_channel_id(self, channel_id):
        if channel_id in self._used_channel_ids:
            raise ConnectionError('Channel %r already open' % (channel_id,))
        if not 0 < channel_id <= self.channel_max:
            raise ResourceError('channel id %r outside 1..%d' % (
                channel_id, self.channel_max), spec.Channel.Open)
        self._used_channel_ids.add(channel_id)
        return channel_id

    def _release_channel_id(self, channel_id):
        self._used_channel_ids.discard(channel_id)

    def channel(self, channel_id=None, callback=None):
        """Return the open Channel ``channel_id``, or open a new one."""
        self._check_open()
        try:
            return self.channels[channel_id]
        except KeyError:
            channel = self.Channel(self, channel_id, on_open=callback)
            channel.open()
            return channel

    def _check_open(self):
        if not self.connected:
            raise RecoverableConnectionError(
                'connection to %s is not open' % (self.host,))

    def is_alive(self):
        """True while the connection is open (py-amqp compatibility)."""
        return self.connected

    # -- event loop -----------------------------------------------------
    def drain_events(self, timeout=None):
        """Wait for and dispatch incoming methods.

        Dispatches at least one method, then every further complete method
        already buffered.  ``timeout`` bounds the whole call (heartbeats in
        between do not extend it) and raises ``socket.timeout``;
        ``timeout=0`` never blocks.
        """
        deadline = None if timeout is None else monotonic() + timeout
        self._raise_deferred_errors()
        self._drain_for(None, deadline)
        self._dispatch_buffered()
        self._raise_deferred_errors()

    def _raise_deferred_errors(self):
        """Raise an error a channel received while another channel was
        mid-wait (consumer cancelled, message returned)."""
        for channel in list(self.channels.values()):
            if getattr(channel, '_deferred', None):
                channel._raise_deferred()

    def _dispatch_buffered(self):
        """Dispatch every complete frame already read, without I/O.

        Event loops (kombu's hub, celery's worker) only call
        drain_events when the socket is readable, so nothing may stay in
        the read-ahead buffer once a call returns.
        """
        transport = self._transport
        while transport is not None:
            try:
                frame = transport._frames.next_frame()
            except _PEER_PROTOCOL_ERRORS as exc:
                self._abort(exc)
                raise
            if frame is None:
                break
            self._handle_frame(frame)
            transport = self._transport

    def blocking_read(self, timeout=None):
        """Read and handle one frame (py-amqp's primitive)."""
        deadline = None if timeout is None else monotonic() + timeout
        transport = self._transport
        if transport is None:
            raise RecoverableConnectionError('connection is closed')
        return self._handle_frame(self._read_frame(transport, deadline))

    def _read_frame(self, transport, deadline, exact=False):
        """Read one frame; a broken socket or stream closes the
        connection (socket.timeout does not)."""
        try:
            return transport.read_frame(deadline=deadline, exact=exact)
        except socket.timeout:
            raise
        except _PEER_PROTOCOL_ERRORS as exc:
            self._abort(exc)
            raise
        except OSError as exc:   # ConnectionLost included
            self._transport_lost(exc)
            raise

    def _drain_for(self, channel, deadline, handshake=False):
        """Read frames until one method has been dispatched.

        With heartbeats on and no earlier deadline, wakes at least every
        heartbeat/2 seconds to send ours and check the broker's.  While a
        channel waits for a reply, reads stop at frame ends: deliveries
        behind the reply are dispatched by the next drain_events, not from
        inside the call that waited (py-amqp's behaviour; kombu's
        ``consume(); drain_events()`` relies on it).
        """
        exact = method_end if channel is not None and not handshake \
            else False
        while True:
            transport = self._transport
            if transport is None:
                raise RecoverableConnectionError(
                    'connection to %s is closed' % (self.host,))
            step = deadline
            hb = self.heartbeat
            if hb and not handshake:
                wake = monotonic() + hb / 2.0
                if step is None or wake < step:
                    step = wake
            try:
                frame = self._read_frame(transport, step, exact)
            except socket.timeout:
                if step is deadline:
                    raise
                self.heartbeat_tick()
                continue
            if self._handle_frame(frame):
                if exact and not transport.can_peek:
                    # TLS: what was decrypted behind the reply sits in our
                    # buffer, where an event loop polling the socket would
                    # never see it: dispatch it now rather than stall.
                    self._dispatch_buffered()
                return

    def _handle_frame(self, frame):
        try:
            return self._on_inbound_frame(frame)
        except _PEER_PROTOCOL_ERRORS as exc:
            self._abort(exc)
            raise

    def _abort(self, exc):
        """The peer broke the protocol: send connection.close with the
        error's reply code (best effort, no waiting) and drop the socket."""
        transport = self._transport
        if transport is None:
            return
        logger.debug('closing connection to %s after protocol error: %s',
                     self.host, exc)
        writer = self._frame_writer
        if writer is not None and transport.connected:
            try:
                with transport.having_timeout(1.0):
                    writer(1, 0, spec.Connection.Close, dumps(
                        'BsBB', (exc.reply_code, str(exc)[:255], 0, 0)),
                        None)
            except Exception:  # the socket may be past saving
                pass
        self._transport_lost(exc)

    def on_inbound_method(self, channel_id, method_sig, payload, content):
        """Dispatch a complete method to its channel."""
        channel = self.channels.get(channel_id)
        if channel is None:
            if self.channels is None:
                return
            logger.debug('method %s for unknown channel %s dropped',
                         method_sig, channel_id)
            return
        return channel.dispatch_method(method_sig, payload, content)

    # -- heartbeats -----------------------------------------------------
    def send_heartbeat(self):
        """Send a heartbeat frame now."""
        writer = self._frame_writer
        if writer is None:
            raise RecoverableConnectionError('connection is closed')
        self._transport.write(_HEARTBEAT_FRAME)
        self.bytes_sent += 1

    def heartbeat_tick(self, rate=2):
        """Send a heartbeat when due; raise ConnectionForced when the
        broker has been silent for two heartbeat intervals.

        Call it at least every ``heartbeat / rate`` seconds (kombu does);
        :meth:`drain_events` also calls it while waiting.
        """
        if not self.heartbeat:
            return
        now = monotonic()
        sent_now, recv_now = self.bytes_sent, self.bytes_recv
        if self.prev_sent is None or self.prev_sent != sent_now:
            self.last_heartbeat_sent = now
        if self.prev_recv is None or self.prev_recv != recv_now:
            self.last_heartbeat_received = now
        self.prev_sent, self.prev_recv = sent_now, recv_now
        if now - self.last_heartbeat_sent >= self.heartbeat / 2.0:
            self.send_heartbeat()
            self.last_heartbeat_sent = monotonic()
            self.prev_sent = self.bytes_sent
        if self.last_heartbeat_received and \
                now - self.last_heartbeat_received > 2 * self.heartbeat:
            exc = ConnectionForced('Too many heartbeats missed')
            self._transport_lost(exc)
            raise exc

    def _start_heartbeat_thread(self):
        stop = threading.Event()
        interval = self.heartbeat / 2.0

        def run():
            while not stop.wait(interval):
                transport = self._transport
                if transport is None or not transport.connected:
                    return
                if monotonic() - self.last_heartbeat_sent >= interval:
                    try:
                        if transport.write_heartbeat(_HEARTBEAT_FRAME):
                            self.bytes_sent += 1
                            self.last_heartbeat_sent = monotonic()
                    except OSError:
                        return

        thread = threading.Thread(target=run, name='amqp-heartbeat',
                                  daemon=True)
        thread.start()
        self._heartbeat_thread = (thread, stop)

    # -- blocked --------------------------------------------------------
    def _on_blocked(self, reason=''):
        self.blocked = reason or 'connection blocked'
        if self.on_blocked:
            self.on_blocked(reason)

    def _on_unblocked(self):
        self.blocked = None
        if self.on_unblocked:
            self.on_unblocked()

    # -- closing --------------------------------------------------------
    def close(self, reply_code=0, reply_text='', method_sig=(0, 0),
              argsig='BsBB'):
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
            self.send_method(spec.Connection.Close, argsig,
                             (reply_code, reply_text, method_sig[0],
                              method_sig[1]))
            self.is_closing = True
            timeout = self.connect_timeout or CLOSE_OK_TIMEOUT
            try:
                self.wait(spec.Connection.CloseOk, timeout=timeout)
            except (OSError, AMQPError) as exc:
                # closing anyway: a late or missing close-ok changes nothing
                logger.debug('no close-ok from %s: %r', self.host, exc)
        finally:
            self._transport_lost(None)
        return None

    _ALLOWED_METHODS_WHEN_CLOSING = (spec.Connection.Close,
                                     spec.Connection.CloseOk)

    def _on_close(self, reply_code, reply_text, class_id, method_id):
        """The broker closes the connection: answer close-ok and raise."""
        try:
            self.send_method(spec.Connection.CloseOk)
        except OSError:
            pass
        exc = error_for_code(reply_code, reply_text, (class_id, method_id),
                             ConnectionError)
        self._transport_lost(exc)
        raise exc

    def _on_close_ok(self):
        """close() drops the socket once its wait returns."""

    def _notify_close(self, exc):
        if self.on_close:
            try:
                self.on_close(exc)
            except Exception:  # never hide the close behind a callback bug
                logger.exception('on_close callback failed')

    def _transport_lost(self, exc=None):
        """Drop the connection; tell ``on_close`` once, with the reason
        (None for a clean close)."""
        was_open = self._transport is not None
        self.collect()
        if was_open:
            self._notify_close(exc)

    def collect(self):
        """Drop the transport and every channel without network I/O."""
        if self._heartbeat_thread is not None:
            self._heartbeat_thread[1].set()
            self._heartbeat_thread = None
        transport, self._transport = self._transport, None
        if transport is not None:
            try:
                transport.close()
            except OSError:
                pass
        channels = self.channels or {}
        for channel in list(channels.values()):
            if channel is not self:
                channel.collect()
        self.channels = {}
        self._used_channel_ids = set()
        self._frame_writer = None
        self._on_inbound_frame = None
        self._handshake_complete = False
        self.is_closing = False

    # -- RabbitMQ extensions -------------------------------------------
    def update_secret(self, new_secret, reason='', timeout=None):
        """Replace the credential of an open connection (RabbitMQ
        connection.update-secret, e.g. a refreshed OAuth 2 token)."""
        self._check_open()
        return self.send_method(spec.Connection.UpdateSecret, 'Ss',
                                (new_secret, reason),
                                wait=spec.Connection.UpdateSecretOk)


def _negotiate(ours, theirs):
    """The lower of two limits where 0 means 'no limit' (spec 1.4.2.6)."""
    if not ours:
        return theirs
    if not theirs:
        return ours
    return min(ours, theirs)


def _coerce(value):
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    lowered = value.lower()
    if lowered in ('true', 'yes', 'on'):
        return True
    if lowered in ('false', 'no', 'off'):
        return False
    return value
