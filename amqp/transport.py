"""Blocking TCP and TLS transports with a read-ahead frame buffer.

The transport knows the 8-byte frame envelope (type, channel, size ...
frame-end) and nothing of methods.  Frames are parsed out of one reusable
buffer by offset; a read timeout in the middle of a frame keeps the partial
frame, so the stream is never corrupted.

Reference: AMQP 0-9-1 section 4.2.3 (general frame format).
"""
import errno
import logging
import re
import socket
import ssl
import struct
import threading
from contextlib import contextmanager
from time import monotonic

from .exceptions import FrameError, RecoverableConnectionError

__all__ = ('Transport', 'TCPTransport', 'SSLTransport', 'to_host_port',
           'ConnectionLost', 'FrameBuffer')

logger = logging.getLogger('amqp')

AMQP_PORT = 5672
AMQPS_PORT = 5671
EMPTY_BUFFER = bytes()
FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096

_FRAME_HEADER = struct.Struct('>BHI')
_READ_SIZE = 65536

# Options we set on every TCP socket (overridable by socket_settings).
_KEEPALIVE_OPTS = {
    'TCP_KEEPIDLE': 60,
    'TCP_KEEPINTVL': 10,
    'TCP_KEEPCNT': 9,
}

IPV6_LITERAL = re.compile(r'\[([\.0-9a-f:]+)\](?::(\d+))?', re.IGNORECASE)


class ConnectionLost(RecoverableConnectionError, ConnectionResetError):
    """The peer closed the socket or it broke: both an AMQP recoverable
    connection error and an ``OSError`` (what py-amqp raised)."""

    def __init__(self, reply_text='Server unexpectedly closed connection'):
        RecoverableConnectionError.__init__(self, reply_text)

    def __str__(self):
        return self.reply_text


def to_host_port(host, default=AMQP_PORT):
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal.

    Returns ``(host, port)``; raises ValueError naming a bad port.
    """
    port = default
    m = IPV6_LITERAL.match(host)
    if m:
        host = m.group(1)
        if m.group(2):
            port = m.group(2)
    elif host.count(':') == 1:
        host, port = host.rsplit(':', 1)
    try:
        port = int(port)
    except ValueError:
        raise ValueError('invalid port %r in host %r' % (port, host)) from None
    if not 0 < port < 65536:
        raise ValueError('port %d out of range in host %r' % (port, host))
    return host, port


class FrameBuffer:
    """Incremental frame parser: feed bytes, take complete frames.

    Pure (no I/O): ``feed(data)`` appends, ``next_frame()`` returns
    ``(frame_type, channel, payload)`` or None when no complete frame is
    buffered.  ``max_payload`` bounds what a frame header may announce;
    a larger size, or a bad frame-end octet, raises FrameError before any
    allocation for it.
    """

    __slots__ = ('buf', 'pos', 'max_payload')

    def __init__(self, max_payload=FRAME_MIN_SIZE - 8):
        self.buf = EMPTY_BUFFER
        self.pos = 0
        self.max_payload = max_payload

    def __len__(self):
        return len(self.buf) - self.pos

    def feed(self, data):
        # Usually every frame of the last read was consumed: the new read
        # becomes the buffer as is, and payloads are sliced out of bytes in
        # one copy.  A large partial frame collects in a bytearray instead,
        # so assembling it is not quadratic.
        buf = self.buf
        pos = self.pos
        rest = len(buf) - pos
        if rest <= 0:
            self.buf = bytes(data)
        elif rest < _READ_SIZE and type(buf) is bytes:
            self.buf = buf[pos:] + data
        else:
            if type(buf) is bytes:
                buf = bytearray(buf[pos:])
            elif pos:
                del buf[:pos]
            buf += data
            self.buf = buf
        self.pos = 0

    def next_frame(self):
        buf = self.buf
        pos = self.pos
        if len(buf) - pos < 7:
            return None
        frame_type, channel, size = _FRAME_HEADER.unpack_from(buf, pos)
        if size > self.max_payload:
            raise FrameError(
                'frame of %d bytes announced; frame_max allows %d' % (
                    size, self.max_payload))
        end = pos + 7 + size
        if len(buf) <= end:
            return None
        if buf[end] != FRAME_END:
            raise FrameError('received frame_end %#04x while expecting 0xce'
                             % buf[end])
        payload = buf[pos + 7:end]
        if type(payload) is not bytes:
            payload = bytes(payload)
        self.pos = end + 1
        return frame_type, channel, payload

    def unread(self):
        """The buffered bytes not yet returned as frames."""
        return bytes(self.buf[self.pos:])

    def missing(self):
        """Bytes still to read to complete the next frame (at most
        ``_READ_SIZE``); call it when ``next_frame()`` returned None."""
        have = len(self.buf) - self.pos
        if have < 7:
            return 7 - have
        size = _FRAME_HEADER.unpack_from(self.buf, self.pos)[2]
        return min(size + 8 - have, _READ_SIZE)


class _AbstractTransport:
    """Common code for TCP and TLS transports (py-amqp's public surface)."""

    connected = False
    sock = None
    raise_on_initial_eintr = True

    def __init__(self, host, connect_timeout=None, read_timeout=None,
                 write_timeout=None, socket_settings=None,
                 raise_on_initial_eintr=True, **kwargs):
        self.connected = False
        self.sock = None
        self.raise_on_initial_eintr = raise_on_initial_eintr
        self._frames = FrameBuffer()
        self._read_buffer = EMPTY_BUFFER  # py-amqp attribute, unused
        self.host, self.port = to_host_port(host, self.default_port)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.socket_settings = socket_settings
        self._timeout = None       # what the socket is set to now
        self._deadline = None      # end of connect_timeout
        self._override = None      # having_timeout() in force
        self._handshaking = True   # connect_timeout applies
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    default_port = AMQP_PORT

    def __repr__(self):
        if self.sock:
            try:
                return '<{} {}:{} -> {}:{} at {:#x}>'.format(
                    type(self).__name__, *self.sock.getsockname()[:2],
                    *self.sock.getpeername()[:2], id(self))
            except OSError:
                pass
        return '<{}: (disconnected) {}:{} at {:#x}>'.format(
            type(self).__name__, self.host, self.port, id(self))

    @property
    def frame_max(self):
        return self._frames.max_payload + 8

    @frame_max.setter
    def frame_max(self, value):
        self._frames.max_payload = max(value, FRAME_MIN_SIZE) - 8

    def connect(self, deadline=None):
        """Open the socket (every resolved address in turn) and set it up.

        ``connect_timeout`` bounds the TCP connect and the TLS handshake
        together (``deadline``, a ``time.monotonic()`` value, overrides
        it); the socket keeps a timeout until :meth:`handshake_done`.
        """
        if deadline is None and self.connect_timeout is not None:
            deadline = monotonic() + self.connect_timeout
        self._deadline = deadline
        try:
            if self.connected:
                return
            self._connect(self.host, self.port)
            self._init_socket(self.socket_settings)
            self._setup_transport()
            self.connected = True
        except (OSError, ssl.SSLError):
            if self.sock and not self.connected:
                try:
                    self.sock.close()
                except OSError:
                    pass
                self.sock = None
            raise

    def _remaining(self):
        """Seconds left of the connect deadline (None: no limit)."""
        if self._deadline is None:
            return None
        remaining = self._deadline - monotonic()
        if remaining <= 0:
            raise socket.timeout('connect_timeout=%ss exceeded connecting '
                                 'to %s:%s' % (self.connect_timeout,
                                               self.host, self.port))
        return remaining

    def _connect(self, host, port):
        try:
            infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC,
                                       socket.SOCK_STREAM, socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise socket.gaierror(
                exc.errno, 'cannot resolve %r: %s' % (host, exc.strerror)
            ) from None
        last_err = None
        for family, socktype, proto, _, addr in infos:
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
                try:
                    sock.setsockopt(socket.SOL_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
                sock.settimeout(self._remaining())
                sock.connect(addr)
            except OSError as exc:
                logger.debug('connecting to %s (%s) failed: %s', addr,
                             host, exc)
                last_err = exc
                if sock is not None:
                    sock.close()
                continue
            self.sock = sock
            self._timeout = sock.gettimeout()
            return
        if last_err is None:
            last_err = OSError('no address found for %r' % (host,))
        raise last_err

    def _init_socket(self, socket_settings):
        sock = self.sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        opts = {}
        for name, value in _KEEPALIVE_OPTS.items():
            opt = getattr(socket, name, None)
            if opt is not None:
                opts[opt] = value
        opts[socket.TCP_NODELAY] = 1
        if socket_settings:
            opts.update(socket_settings)
        for opt, value in opts.items():
            try:
                sock.setsockopt(socket.SOL_TCP, opt, value)
            except OSError as exc:
                logger.debug('socket option %r=%r not applied: %s',
                             opt, value, exc)
        self._set_timeout(self._remaining())

    def _setup_transport(self):
        """Hook for TLS wrapping."""

    def _set_timeout(self, timeout):
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def handshake_done(self):
        """Replace connect_timeout by the steady-state timeouts."""
        self._handshaking = False
        self._set_timeout(self.read_timeout)

    @contextmanager
    def having_timeout(self, timeout):
        """Use ``timeout`` for the reads and writes inside the block
        (None: leave the configured timeouts alone)."""
        if timeout is None or self.sock is None:
            yield self.sock
            return
        prev, self._override = self._override, timeout
        try:
            yield self.sock
        finally:
            self._override = prev

    def _write_timeout(self):
        if self._override is not None:
            return self._override
        if self._handshaking:
            return self._remaining()
        return self.write_timeout

    def close(self):
        sock = self.sock
        if sock is not None:
            self._shutdown_transport()
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
            self.sock = None
        self.connected = False

    def _shutdown_transport(self):
        """Hook for TLS unwrapping."""

    def read_frame(self, unpack=None, deadline=None, exact=False):
        """Return the next ``(frame_type, channel, payload)``.

        Frames already buffered are returned without touching the socket.
        ``deadline`` (a ``time.monotonic()`` value) bounds the total wait and
        raises ``socket.timeout``; without it ``read_timeout`` applies to
        each read.  A deadline already passed makes one non-blocking read.
        ``exact`` reads no byte past the frame, as py-amqp does: what
        follows stays in the socket, which stays readable for event loops.
        It may be a function ``boundary(bytes) -> end offset or None``
        marking where a whole unit (a method with its content) ends; on a
        plain socket one peek and one read then take the unit at once.
        """
        frames = self._frames
        frame = frames.next_frame()
        if frame is not None:
            return frame
        return self._read_frame_slow(frames, deadline, exact)

    def _read_frame_slow(self, frames, deadline, exact=False):
        while True:
            if deadline is not None:
                timeout = deadline - monotonic()
                if timeout < 0:
                    timeout = 0.0
            elif self._override is not None:
                timeout = self._override
            else:
                timeout = self.read_timeout
            initial = not len(frames)
            with self._read_lock:
                if not exact:
                    size = _READ_SIZE
                elif callable(exact) and self.can_peek:
                    size = self._size_to_boundary(frames, exact, timeout,
                                                  initial)
                else:
                    size = frames.missing()
                data = self._recv(timeout, initial, size)
            frames.feed(data)
            frame = frames.next_frame()
            if frame is not None:
                return frame

    def _size_to_boundary(self, frames, boundary, timeout, initial):
        """How many bytes to read so that the buffer ends where
        ``boundary(bytes)`` says the next unit (a whole method) ends.

        Peeks at what the socket holds: one read then takes the whole
        method (all its frames) and nothing after it.
        """
        peeked = self._recv(timeout, initial, _READ_SIZE, socket.MSG_PEEK)
        pending = frames.unread()
        end = boundary(pending + peeked if pending else peeked)
        if end is None:  # everything there belongs to the method
            return len(peeked)
        return max(end - len(pending), 1)

    def _recv(self, timeout, initial, size=_READ_SIZE, flags=0):
        sock = self.sock
        if sock is None:
            raise ConnectionLost('connection is closed')
        self._set_timeout(timeout)
        while True:
            try:
                data = self._read_some(size, flags)
            except socket.timeout:
                raise
            except (BlockingIOError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                raise socket.timeout('timed out') from None
            except InterruptedError:
                if initial and self.raise_on_initial_eintr:
                    raise socket.timeout('interrupted') from None
                continue
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise socket.timeout('timed out') from None
                self.connected = False
                raise
            if not data:
                self.connected = False
                raise ConnectionLost()
            return data

    #: MSG_PEEK works on the socket (not on TLS: see SSLTransport)
    can_peek = True

    def _read_some(self, n, flags=0):
        return self.sock.recv(n, flags)

    def write(self, s):
        """Send all of ``s``, bounded by ``write_timeout`` (blocking when
        None) whatever timeout the last read left on the socket."""
        sock = self.sock
        if sock is None:
            raise ConnectionLost('connection is closed')
        with self._write_lock:
            try:
                self._set_timeout(self._write_timeout())
                sock.sendall(s)
            except socket.timeout:
                # part of a frame may be out: the stream is unusable now
                self.connected = False
                raise
            except OSError:
                self.connected = False
                raise

    def write_heartbeat(self, frame):
        """Send a heartbeat frame from another thread.

        Returns False without sending while a read is in progress: the
        reader's own loop sends heartbeats then, and one TLS connection
        must not read and write from two threads at once.
        """
        if not self._read_lock.acquire(blocking=False):
            return False
        try:
            self.write(frame)
        finally:
            self._read_lock.release()
        return True


class TCPTransport(_AbstractTransport):
    """Plain TCP transport."""


class SSLTransport(_AbstractTransport):
    """TLS transport: certificates and hostname verified unless told not to.

    ``ssl`` may be ``True`` (system CAs), a dict of options (``ca_certs``,
    ``certfile``, ``keyfile``, ``password``, ``cert_reqs``,
    ``server_hostname``, ``check_hostname``, ``ciphers``, ``ssl_version``/
    ``minimum_version``) or an :class:`ssl.SSLContext` used as is.
    """

    default_port = AMQPS_PORT

    def __init__(self, host, connect_timeout=None, ssl=None, **kwargs):
        self.sslopts = ssl if isinstance(ssl, dict) else {}
        self.sslcontext = ssl if _is_context(ssl) else None
        super().__init__(host, connect_timeout=connect_timeout, **kwargs)

    def _setup_transport(self):
        context, server_hostname = self._build_context()
        self.sock.settimeout(self._remaining())
        self.sock = context.wrap_socket(
            self.sock, server_side=False, do_handshake_on_connect=True,
            server_hostname=server_hostname)
        self._timeout = self.sock.gettimeout()

    def _build_context(self):
        opts = dict(self.sslopts)
        server_hostname = opts.pop('server_hostname', None) or self.host
        if self.sslcontext is not None:
            return self.sslcontext, server_hostname
        cert_reqs = opts.pop('cert_reqs', ssl.CERT_REQUIRED)
        if cert_reqs is None:
            cert_reqs = ssl.CERT_REQUIRED
        check_hostname = opts.pop('check_hostname',
                                  cert_reqs != ssl.CERT_NONE)
        ca_certs = opts.pop('ca_certs', None)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=ca_certs)
        minimum = opts.pop('minimum_version', None)
        maximum = opts.pop('maximum_version', None)
        _apply_versions(context, opts.pop('ssl_version', None),
                        opts.pop('tls_minimum_version', None) or minimum,
                        opts.pop('tls_maximum_version', None) or maximum)
        if opts.pop('server_side', False):
            raise ValueError('ssl option server_side=True: this is a client')
        for accepted in ('do_handshake_on_connect', 'suppress_ragged_eofs'):
            # py-amqp passes these through; we always use the defaults
            opts.pop(accepted, None)
        certfile = opts.pop('certfile', None)
        keyfile = opts.pop('keyfile', None)
        password = opts.pop('password', None)
        if certfile:
            context.load_cert_chain(certfile, keyfile, password)
        ciphers = opts.pop('ciphers', None)
        if ciphers:
            context.set_ciphers(ciphers)
        context.check_hostname = bool(check_hostname) and \
            cert_reqs != ssl.CERT_NONE
        context.verify_mode = cert_reqs
        if opts:
            raise ValueError('unknown ssl options: %s'
                             % ', '.join(sorted(opts)))
        return context, server_hostname

    def _shutdown_transport(self):
        sock = self.sock
        if sock is not None and hasattr(sock, 'unwrap'):
            try:
                sock.settimeout(0.5)
                self.sock = sock.unwrap()
            except (OSError, ValueError):
                pass

    can_peek = False

    def _read_some(self, n, flags=0):
        sock = self.sock
        data = sock.recv(n)
        # TLS records may hold more plaintext than one recv returned.
        pending = sock.pending()
        if pending:
            data += sock.recv(pending)
        return data


_PROTOCOL_VERSIONS = {
    'PROTOCOL_TLSv1': 'TLSv1',
    'PROTOCOL_TLSv1_1': 'TLSv1_1',
    'PROTOCOL_TLSv1_2': 'TLSv1_2',
}


def _apply_versions(context, ssl_version, minimum, maximum):
    """py-amqp's ``ssl_version`` (a fixed protocol such as
    ``PROTOCOL_TLSv1_2``) and ``tls_minimum/maximum_version`` as
    context version bounds; ``PROTOCOL_TLS(_CLIENT)`` means negotiate."""
    if ssl_version is not None:
        fixed = _PROTOCOL_VERSIONS.get(getattr(ssl_version, 'name', ''))
        if fixed is not None:
            version = getattr(ssl.TLSVersion, fixed)
            minimum = minimum or version
            maximum = maximum or version
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum


def _is_context(obj):
    return isinstance(obj, ssl.SSLContext)


def Transport(host, connect_timeout=None, ssl=False, **kwargs):
    """Return a TLS transport when ``ssl`` is set, else a TCP transport."""
    if ssl:
        return SSLTransport(host, connect_timeout=connect_timeout, ssl=ssl,
                            **kwargs)
    return TCPTransport(host, connect_timeout=connect_timeout, **kwargs)
