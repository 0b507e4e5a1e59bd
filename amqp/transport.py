"""Blocking TCP and TLS transports: bytes in, bytes out, per-call deadlines.

The transport connects (TCP, then TLS when asked), sends and receives
bytes, and closes.  It knows nothing of frames or methods: the frame buffer
and parser live in :mod:`amqp.method_framing` and the connection owns them.

Every read and write takes a *deadline* (a ``time.monotonic()`` value, or
None for "the configured timeout").  The socket's own timeout is never
changed after connecting: a call without a deadline blocks in the kernel
(one system call), a call with one makes a non-blocking attempt
(``MSG_DONTWAIT``) and waits for readiness with ``poll`` up to its own
deadline.  (A receive whose deadline is a second or more away blocks in
the kernel too: ``SO_RCVTIMEO``, set once at connect, ends it within that
second, and the rest of the wait polls; see ``RECV_QUANTUM``.)  Threads
therefore never share a mutable socket timeout: one thread in
``drain_events(timeout=0)`` and another writing a large body each get
exactly their own bound.  A TLS socket is non-blocking throughout (a
TLS read cannot be made non-blocking per call).

A write that stops part-way through (timeout, signal, ``KeyboardInterrupt``)
leaves the byte stream in the middle of a frame; the transport then refuses
every later write, because the broker would read what follows as the rest
of that frame.
"""
from __future__ import annotations

import logging
import os
import re
import select
import socket
import ssl
import struct
import sys
import threading
from contextlib import contextmanager
from time import monotonic
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterator, List,
                    Mapping, Optional, Sequence, Tuple, Union)

from .exceptions import RecoverableConnectionError, UnexpectedFrame
# py-amqp's amqp.transport exports these; code written for it imports them
# from here (defined in amqp.platform, as py-amqp defines some of them).
from .platform import (AMQP_PROTOCOL_HEADER, DEFAULT_SOCKET_SETTINGS,
                       KNOWN_TCP_OPTS, SIGNED_INT_MAX, SOL_TCP, set_cloexec)

if TYPE_CHECKING:
    from typing_extensions import TypeGuard  # typing has it from 3.10

__all__ = ('Transport', 'AbstractTransport', 'TCPTransport', 'SSLTransport',
           'to_host_port', 'ConnectionLost',
           # py-amqp compatibility
           'AMQP_PROTOCOL_HEADER', 'DEFAULT_SOCKET_SETTINGS',
           'KNOWN_TCP_OPTS', 'SIGNED_INT_MAX', 'SOL_TCP', 'set_cloexec',
           'SSLError', 'UnexpectedFrame', 'EMPTY_BUFFER', 'AMQP_PORT')

SSLError = ssl.SSLError

logger = logging.getLogger('amqp')

AMQP_PORT = 5672
AMQPS_PORT = 5671
EMPTY_BUFFER = bytes()

#: What one receive asks the kernel for when the caller sets no size.
READ_SIZE = 65536

# Options we set on every TCP socket (overridable by socket_settings).
_KEEPALIVE_OPTS = {
    'TCP_KEEPIDLE': 60,
    'TCP_KEEPINTVL': 10,
    'TCP_KEEPCNT': 9,
}

IPV6_LITERAL = re.compile(r'\[([\.0-9a-f:]+)\](?::(\d+))?', re.IGNORECASE)

_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
#: Most buffers one sendmsg takes (the kernel's limit on an iovec).
try:
    _IOV_MAX = max(16, min(os.sysconf('SC_IOV_MAX'), 1024))
except (AttributeError, ValueError, OSError):  # pragma: no cover
    _IOV_MAX = 16

#: Per-call non-blocking flag; 0 where the platform lacks it, and the
#: socket is then non-blocking throughout, as on TLS.
#: (plain ints: the socket module's flags are enums, and or-ing an enum
#: costs a Python-level call on every receive)
_DONTWAIT = int(getattr(socket, 'MSG_DONTWAIT', 0))
#: send(2)'s "more is coming" flag (Linux): the kernel keeps a small
#: write until the next one without it, a push, or 200 ms at most
_MSG_MORE = int(getattr(socket, 'MSG_MORE', 0))
_TCP_CORK = int(getattr(socket, 'TCP_CORK', 0))
_PEEK = int(socket.MSG_PEEK)
_POLLIN = getattr(select, 'POLLIN', 1)
_POLLOUT = getattr(select, 'POLLOUT', 4)
_POLL_ERRORS = (_POLLIN | getattr(select, 'POLLERR', 8) |
                getattr(select, 'POLLHUP', 16))

#: Seconds a blocking TCP receive waits at most (``SO_RCVTIMEO``, set at
#: connect where the platform takes a ``struct timeval``).  A receive whose
#: deadline is at least this far off blocks in the kernel (one system
#: call, as without a deadline) instead of polling first; should nothing
#: arrive within it, the receive fails with EAGAIN and the wait goes on by
#: ``poll`` up to the deadline.  No wait ever outlasts its deadline.
RECV_QUANTUM = 1.0
_TIMEVAL = struct.Struct('@ll')

Deadline = Optional[float]


class ConnectionLost(RecoverableConnectionError, ConnectionResetError):
    """The peer closed the socket or it broke: both an AMQP recoverable
    connection error and an ``OSError`` (what py-amqp raised)."""

    def __init__(self,
                 reply_text: str = 'Server unexpectedly closed connection'
                 ) -> None:
        RecoverableConnectionError.__init__(self, reply_text)

    def __str__(self) -> str:
        return self.reply_text or ''


def to_host_port(host: str, default: int = AMQP_PORT) -> Tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal.

    Returns ``(host, port)``; raises ValueError naming a bad port.
    """
    port: Union[str, int] = default
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


def _wait_ready(sock: socket.socket, write: bool, deadline: Deadline,
                verb: str, peer: Tuple[str, int]) -> None:
    """Block until ``sock`` is readable (or writable) or ``deadline``
    passes (``socket.timeout``).  EOF and errors count as readable: the
    following recv reports them."""
    if deadline is None:
        timeout = None
    else:
        timeout = deadline - monotonic()
        if timeout <= 0:
            raise socket.timeout('timed out %s %s:%s' % (verb, *peer))
    if sock.fileno() < 0:   # closed by another thread
        raise ConnectionLost('connection is closed')
    poll = getattr(select, 'poll', None)
    if poll is not None:
        poller = poll()
        poller.register(sock, _POLLOUT if write else _POLL_ERRORS)
        ready = poller.poll(None if timeout is None else timeout * 1000.0)
    else:  # pragma: no cover - platforms (or green libraries) without poll
        fds: Tuple[List[socket.socket], List[socket.socket],
                   List[socket.socket]] = \
            ([], [sock], []) if write else ([sock], [], [])
        ready = any(select.select(fds[0], fds[1], fds[2], timeout))
    if not ready:
        raise socket.timeout('timed out %s %s:%s' % (verb, *peer))


def _smaller(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """The smaller of two bounds where None means no bound."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a < b else b


def _resolve(host: str, port: int, timeout: Optional[float]) -> list[Any]:
    """``getaddrinfo`` for a TCP connection, within ``timeout`` seconds.

    The resolver has no timeout of its own, so with one it runs in a
    helper thread; when time runs out the lookup is left to finish alone
    and ``socket.timeout`` is raised.
    """
    def lookup() -> list[Any]:
        try:
            return socket.getaddrinfo(host, port, socket.AF_UNSPEC,
                                      socket.SOCK_STREAM, socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise socket.gaierror(
                exc.errno, 'cannot resolve %r: %s' % (host, exc.strerror)
            ) from None

    if timeout is None or _is_ip_literal(host):
        return lookup()
    result: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            result.append((True, lookup()))
        except BaseException as exc:  # handed to the caller
            result.append((False, exc))

    thread = threading.Thread(target=run, name='amqp-resolve', daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        raise socket.timeout('resolving %r took longer than the %.3gs left '
                             'of connect_timeout' % (host, timeout))
    ok, value = result[0]
    if not ok:
        raise value
    addresses: list[Any] = value
    return addresses


def _is_ip_literal(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False


class _AbstractTransport:
    """Common code for TCP and TLS transports (py-amqp's public surface)."""

    connected = False
    sock: Optional[socket.socket] = None
    raise_on_initial_eintr = True
    default_port = AMQP_PORT
    #: MSG_PEEK works on the socket (not on TLS: see SSLTransport)
    can_peek = True
    #: recv_into_many works (not on TLS, nor where the platform lacks
    #: recvmsg_into)
    can_scatter = hasattr(socket.socket, 'recvmsg_into')
    #: bytes may wait decrypted in the transport (see :meth:`pending`)
    _decrypts = False
    #: the socket is in non-blocking mode (TLS, or no MSG_DONTWAIT)
    _nonblocking = not _DONTWAIT
    #: the socket timeout the transport keeps: None (blocking) or 0.0
    #: (non-blocking), as ``_nonblocking`` says
    _mode: Optional[float] = 0.0 if _nonblocking else None
    #: A timeout the application set on the open socket
    #: (``transport.sock.settimeout(t)``, as celery does to bound its
    #: shutdown): adopted as a bound on each read and write, the socket
    #: itself put back in the mode the transport needs.  None: no bound.
    socket_timeout: Optional[float] = None

    #: a receive is a plain ``sock.recv`` (no subclass replaced
    #: ``_read_some``): :meth:`recv` makes it without the two calls
    _plain_read = True

    #: the socket may hold writes: TCP with MSG_MORE, TCP_NODELAY on and
    #: TCP_CORK off (set when the socket is set up; see can_hold)
    _can_hold = False
    #: set by the reader while it dispatches deliveries already received
    #: (:meth:`write_held` holds only then)
    holding = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if '_read_some' in cls.__dict__:
            cls._plain_read = False
        # A subclass that replaces how bytes are received gets every
        # receive through its own code, never the scatter read.
        if 'can_scatter' not in cls.__dict__ and any(
                name in cls.__dict__ for name in (
                    'recv_into', '_read_into', '_receive', 'recv',
                    '_read_some')):
            cls.can_scatter = False

    def __init__(self, host: str, connect_timeout: Optional[float] = None,
                 read_timeout: Optional[float] = None,
                 write_timeout: Optional[float] = None,
                 socket_settings: Optional[Mapping[int, int]] = None,
                 raise_on_initial_eintr: bool = True, **kwargs: Any) -> None:
        self.connected = False
        self.sock = None
        self.raise_on_initial_eintr = raise_on_initial_eintr
        self.host, self.port = to_host_port(host, self.default_port)
        self.connect_timeout = connect_timeout
        self._read_bound: Optional[float] = None
        self.read_timeout = read_timeout
        self.socket_settings = socket_settings
        self._deadline: Deadline = None   # end of connect_timeout
        #: how long a blocking receive waits at most (SO_RCVTIMEO), or
        #: None where it is not set: see RECV_QUANTUM
        self._quantum: Optional[float] = None
        self._handshaking = True          # connect_timeout applies
        self._local = threading.local()   # having_timeout() per thread
        self._overrides = 0               # having_timeout() blocks, any thread
        self._write_lock = threading.Lock()
        #: why writing is no longer possible (a frame was cut off), or None
        self.broken: Optional[str] = None
        # writes are one blocking send, with nothing to check first
        self._plain_writes = False
        self.write_timeout = write_timeout

    def __repr__(self) -> str:
        if self.sock:
            try:
                return '<{} {}:{} -> {}:{} at {:#x}>'.format(
                    type(self).__name__, *self.sock.getsockname()[:2],
                    *self.sock.getpeername()[:2], id(self))
            except OSError:
                pass
        return '<{}: (disconnected) {}:{} at {:#x}>'.format(
            type(self).__name__, self.host, self.port, id(self))

    # -- connecting -----------------------------------------------------
    def connect(self, deadline: Deadline = None) -> None:
        """Open the socket (every resolved address in turn) and set it up.

        ``connect_timeout`` bounds the TCP connect and the TLS handshake
        together (``deadline``, a ``time.monotonic()`` value, overrides
        it); reads and writes keep that deadline until
        :meth:`handshake_done`.
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
            assert self.sock is not None
            # Deadlines are per call from now on (see the module doc).
            self.sock.settimeout(self._mode)
            self._quantum = self._set_quantum(self.sock)
            self.socket_timeout = None
            self._read_bound = self._read_timeout
            self.connected = True
        except (OSError, ssl.SSLError):
            if self.sock and not self.connected:
                try:
                    self.sock.close()
                except OSError:
                    pass
                self.sock = None
            raise

    def _set_quantum(self, sock: socket.socket) -> Optional[float]:
        """Bound each blocking receive to RECV_QUANTUM (SO_RCVTIMEO);
        return it, or None where receives do not block in the kernel
        (TLS, Windows, a socket library such as gevent's that keeps the
        descriptor non-blocking and waits in its own loop)."""
        if self._nonblocking or sys.platform == 'win32':
            return None
        try:
            if not os.get_blocking(sock.fileno()):
                return None
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                            _TIMEVAL.pack(int(RECV_QUANTUM), 0))
        except (OSError, AttributeError, ValueError) as exc:
            logger.debug('SO_RCVTIMEO not applied: %s', exc)
            return None
        return RECV_QUANTUM

    def _adopt_socket_timeout(self, sock: socket.socket) -> None:
        """The application set a timeout on the open socket: keep it as
        :attr:`socket_timeout` and put the socket back in our mode (a TLS
        read that blocks would hold the TLS lock; a TCP socket with a
        timeout would poll before every non-blocking receive)."""
        timeout = sock.gettimeout()
        mode = self._mode
        if timeout == mode:
            return
        sock.settimeout(mode)
        # settimeout(0) asks for non-blocking calls, not for a bound of
        # zero: nothing to adopt
        self.socket_timeout = timeout or None
        self._read_bound = _smaller(self._read_timeout, self.socket_timeout)
        self._update_plain_writes()

    @property
    def read_timeout(self) -> Optional[float]:
        """Longest silence of the peer a read waits through (None: no
        limit)."""
        return self._read_timeout

    @read_timeout.setter
    def read_timeout(self, value: Optional[float]) -> None:
        self._read_timeout = value
        self._read_bound = _smaller(value, self.socket_timeout)

    def read_bound(self) -> Optional[float]:
        """The longest silence a read accepts: the smaller of
        ``read_timeout`` and :attr:`socket_timeout` (None: no bound)."""
        sock = self.sock
        if sock is not None and sock.gettimeout() != self._mode:
            self._adopt_socket_timeout(sock)
        return self._read_bound

    def _remaining(self) -> Optional[float]:
        """Seconds left of the connect deadline (None: no limit)."""
        if self._deadline is None:
            return None
        remaining = self._deadline - monotonic()
        if remaining <= 0:
            raise socket.timeout('connect_timeout=%ss exceeded connecting '
                                 'to %s:%s' % (self.connect_timeout,
                                               self.host, self.port))
        return remaining

    def _connect(self, host: str, port: int) -> None:
        infos = _resolve(host, port, self._remaining())
        last_err: Optional[OSError] = None
        for family, socktype, proto, _, addr in infos:
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
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
            return
        if last_err is None:
            last_err = OSError('no address found for %r' % (host,))
        raise last_err

    def _init_socket(self, socket_settings: Optional[Mapping[int, int]]
                     ) -> None:
        sock = self.sock
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        opts: Dict[int, int] = {}
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
        # Held writes leave with the next write or a push (TCP_CORK set
        # to 0), which a socket the application corked or put under
        # Nagle's algorithm would not honour as this transport expects.
        try:
            self._can_hold = bool(
                _MSG_MORE and _TCP_CORK and
                sock.family in (socket.AF_INET, socket.AF_INET6) and
                sock.getsockopt(socket.SOL_TCP, socket.TCP_NODELAY) and
                not sock.getsockopt(socket.SOL_TCP, _TCP_CORK))
        except OSError:
            self._can_hold = False

    def _setup_transport(self) -> None:
        """Hook for TLS wrapping (the socket is still blocking here)."""

    def handshake_done(self) -> None:
        """Replace connect_timeout by the steady-state timeouts."""
        self._handshaking = False
        self._update_plain_writes()

    @property
    def write_timeout(self) -> Optional[float]:
        return self._write_timeout

    @write_timeout.setter
    def write_timeout(self, value: Optional[float]) -> None:
        self._write_timeout = value
        self._update_plain_writes()

    def _update_plain_writes(self) -> None:
        cls = type(self)
        self._plain_writes = (
            not self._handshaking and self.broken is None and
            self._write_timeout is None and not self._nonblocking and
            self.socket_timeout is None and
            self.sock is not None and
            cls._write is _AbstractTransport._write and
            cls._send_some is _AbstractTransport._send_some)

    # -- deadlines ------------------------------------------------------
    @contextmanager
    def having_timeout(self, timeout: Optional[float]
                       ) -> Iterator[Optional[socket.socket]]:
        """Use ``timeout`` for the reads and writes this thread makes
        inside the block (None: leave the configured timeouts alone).

        Per thread: another thread's reads and writes keep their own.
        """
        if timeout is None or self.sock is None:
            yield self.sock
            return
        local = self._local
        prev = getattr(local, 'override', None)
        local.override = timeout
        with self._write_lock:
            self._overrides += 1
        try:
            yield self.sock
        finally:
            local.override = prev
            with self._write_lock:
                self._overrides -= 1

    def _default_deadline(self, timeout: Optional[float]) -> Deadline:
        """The deadline of a call that was given none: the connect
        deadline while handshaking, else ``having_timeout`` or
        ``timeout`` (read_timeout or write_timeout) from now."""
        override: Optional[float] = getattr(self._local, 'override', None)
        if override is not None:
            return monotonic() + override
        if self._handshaking and self._deadline is not None:
            return self._deadline
        timeout = _smaller(timeout, self.socket_timeout)
        if timeout is None:
            return None
        return monotonic() + timeout

    # -- reading --------------------------------------------------------
    def recv(self, size: int = READ_SIZE, deadline: Deadline = None,
             peek: bool = False, wait_first: bool = False) -> bytes:
        """Return between 1 and ``size`` bytes (more on TLS: whatever is
        already decrypted comes along), waiting until ``deadline``.

        ``deadline`` None means ``read_timeout`` from now (no limit when
        that is None).  Raises ``socket.timeout`` when it passes,
        :class:`ConnectionLost` when the peer closed the connection.
        ``peek`` leaves the bytes in the socket (TCP only).  With a
        deadline, ``wait_first`` polls before the first receive (one
        system call fewer when nothing has arrived yet, as after sending a
        request) instead of trying a non-blocking receive first.
        """
        data: bytes = self._receive(
            None if self._plain_read else self._read_some, size,
            _PEEK if peek else 0, deadline, wait_first)
        return data

    def recv_into(self, view: memoryview, deadline: Deadline = None) -> int:
        """Receive between 1 and ``len(view)`` bytes into ``view``; return
        how many.  Deadlines and errors as :meth:`recv`."""
        n: int = self._receive(self._read_into, view, 0, deadline)
        return n

    def recv_into_many(self, views: Sequence[memoryview],
                       deadline: Deadline = None) -> int:
        """Receive into ``views`` in order (one scatter read, filling
        each before the next); return how many bytes in all.  Only where
        :attr:`can_scatter`; deadlines and errors as :meth:`recv`."""
        n: int = self._receive(self._read_into_many, views, 0, deadline)
        return n

    def recv_now(self, size: int, deadline: Deadline) -> Optional[bytes]:
        """What :meth:`recv` does in the reader's common case, without
        its checks: one blocking receive, when the kernel ends it within
        the receive quantum and nothing else bounds it (no
        ``read_timeout``, socket timeout, ``having_timeout`` or
        handshake; ``deadline`` None or a quantum away or more).
        Returns None, having received nothing, when that does not hold or
        the quantum passed: then :meth:`recv` waits the rest.  Errors as
        :meth:`recv`.  (The compiled reply loop receives as this does,
        where :meth:`plain_sock` allows: keep the two in step.)"""
        quantum = self._quantum
        sock = self.sock
        if quantum is None or not self._plain_read or self._handshaking \
                or self._read_bound is not None or self._overrides or \
                sock is None or sock.gettimeout() != self._mode or (
                    deadline is not None and
                    deadline - monotonic() < quantum):
            return None
        try:
            data: bytes = sock.recv(size)
        except _WOULD_BLOCK:
            return None
        except OSError as exc:   # (EINTR as _receive: receive_failed)
            failure = self.receive_failed(sock, exc)
            if failure is None:
                return None
            raise failure
        if not data:
            raise self._closed_by_peer()
        return data

    def plain_sock(self) -> Optional[socket.socket]:
        """The socket, when a receive from it may be made as
        :meth:`recv_now` makes it (its conditions but the deadline hold,
        and neither a subclass nor the instance replaced it): the
        compiled reply loop (``_speedups.Pump``) then receives itself;
        else None.  Keep in step with :meth:`recv_now`."""
        sock = self.sock
        if self._quantum is None or not self._plain_read or \
                self._handshaking or self._read_bound is not None or \
                self._overrides or sock is None or \
                sock.gettimeout() != self._mode or \
                getattr(self.recv_now, '__func__', None) is not \
                _AbstractTransport.recv_now:
            return None
        return sock

    def receive_failed(self, sock: socket.socket, exc: Optional[OSError]
                       ) -> Optional[BaseException]:
        """What :meth:`recv_now` makes of ``sock.recv`` raising ``exc``
        (None: it returned no byte, the peer closed): None to receive
        again (an EINTR), or the exception to raise -- socket.timeout
        (an EINTR with ``raise_on_initial_eintr``), or the connection is
        lost (ConnectionLost, or the error)."""
        if isinstance(exc, InterruptedError):
            if not self.raise_on_initial_eintr:
                return None
            interrupted = socket.timeout('interrupted')
            interrupted.__suppress_context__ = True
            return interrupted
        if exc is None:
            return self._closed_by_peer()
        lost = self._receive_failed(sock, exc)
        if lost is not exc:
            lost.__cause__ = exc
        return lost

    def _closed_by_peer(self) -> ConnectionLost:
        self.connected = False
        return ConnectionLost()

    def _receive_failed(self, sock: socket.socket,
                        exc: OSError) -> OSError:
        """A receive on ``sock`` raised ``exc``: what to raise."""
        self.connected = False
        if sock.fileno() < 0:   # closed by another thread
            return ConnectionLost('connection is closed')
        return exc

    def _receive(self, op: Optional[Callable[[Any, int], Any]], arg: Any,
                 flags: int, deadline: Deadline,
                 wait_first: bool = False) -> Any:
        """``op(arg, flags)`` until it does not block (None: this
        socket's ``recv``, as :meth:`_read_some` makes it)."""
        sock = self.sock
        if sock is None:
            raise ConnectionLost('connection is closed')
        if sock.gettimeout() != self._mode:
            self._adopt_socket_timeout(sock)
        if deadline is None:
            deadline = self._default_deadline(self.read_timeout)
        elif self.socket_timeout is not None:
            deadline = min(deadline, monotonic() + self.socket_timeout)
        if deadline is not None:
            quantum = self._quantum
            # a deadline at least a quantum off: block in the kernel
            # (SO_RCVTIMEO ends the receive in time), else poll for it
            if quantum is None or deadline - monotonic() < quantum:
                if not self._nonblocking:
                    flags |= _DONTWAIT
                if wait_first and not (self._decrypts and self.pending()):
                    _wait_ready(sock, False, deadline, 'reading from',
                                (self.host, self.port))
        while True:
            try:
                # (a socket closed meanwhile by another thread fails here
                # with EBADF: ConnectionLost below)
                result = sock.recv(arg, flags) if op is None else \
                    op(arg, flags)
            except _WOULD_BLOCK as exc:
                _wait_ready(sock, isinstance(exc, ssl.SSLWantWriteError),
                            deadline, 'reading from', (self.host, self.port))
                continue
            except InterruptedError:
                # py-amqp's choice (kombu's hub relies on it): a signal
                # ends the read as a timeout.  Nothing is lost: a partial
                # frame stays in the connection's buffer.
                if self.raise_on_initial_eintr:
                    raise socket.timeout('interrupted') from None
                continue
            except socket.timeout:
                raise   # a timeout is not a broken socket
            except OSError as exc:
                failure = self._receive_failed(sock, exc)
                if failure is exc:
                    raise
                raise failure from exc
            if not result:
                self.connected = False
                raise ConnectionLost()
            return result

    def _live_sock(self) -> socket.socket:
        """The socket; ConnectionLost once it is closed (another thread
        may close it while this one reads or writes)."""
        sock = self.sock
        if sock is None:
            raise ConnectionLost('connection is closed')
        return sock

    def _read_some(self, n: int, flags: int = 0) -> bytes:
        """One receive; with ``MSG_DONTWAIT`` in ``flags`` it raises
        BlockingIOError instead of waiting."""
        return self._live_sock().recv(n, flags)

    def _read_into(self, view: memoryview, flags: int = 0) -> int:
        return self._live_sock().recv_into(view, 0, flags)

    def _read_into_many(self, views: Sequence[memoryview],
                        flags: int = 0) -> int:
        n: int = self._live_sock().recvmsg_into(views, 0, flags)[0]
        return n

    def pending(self) -> int:
        """Bytes received and decrypted but not yet returned (TLS)."""
        return 0

    # -- writing --------------------------------------------------------
    @property
    def plain_write_lock(self) -> Optional[threading.Lock]:
        """The write lock, when :meth:`write` and :meth:`write_held` are
        the stock ones (None when a subclass or the instance replaced
        either): the compiled frame writer then takes their plain branch
        itself, under this lock."""
        if getattr(self.write, '__func__', None) is \
                _AbstractTransport.write and \
                getattr(self.write_held, '__func__', None) is \
                _AbstractTransport.write_held:
            return self._write_lock
        return None

    @property
    def plain_writev(self) -> bool:
        """Whether :meth:`writev` is the stock scatter-gather one (neither
        a subclass nor the instance replaced it): the compiled frame writer
        then sends a large body the way its plain case does, under
        :attr:`plain_write_lock`."""
        cls = type(self)
        return (getattr(self.writev, '__func__', None) is
                _AbstractTransport.writev and
                cls._writev is _AbstractTransport._writev and
                cls._write is _AbstractTransport._write)

    def write(self, s: Union[bytes, bytearray, memoryview],
              _flags: int = 0) -> None:
        """Send all of ``s``, bounded by ``write_timeout`` (or
        :meth:`having_timeout`); no limit when both are None.

        Raises ``socket.timeout`` when time runs out.  When that (or any
        exception, ``KeyboardInterrupt`` included) cuts ``s`` off after
        part of it was sent, the transport is marked :attr:`broken` and
        every later write raises RecoverableConnectionError at once.
        (``_flags``: send flags for the one blocking send, from
        :meth:`write_held`.)
        """
        with self._write_lock:
            if self._plain_writes and not self._overrides:
                # The common case, kept short: one blocking send.  (The
                # compiled frame writer does this branch itself: keep
                # send_plain in _speedups.c in step.)
                try:
                    sent = self.sock.send(  # type: ignore[union-attr]
                        s, _flags)
                except BaseException as exc:
                    self._write_failed(exc, 0, len(s))
                    raise
                if sent == len(s):
                    return
                self._write(s, sent)
                return
            self._write(s)

    @property
    def can_hold(self) -> bool:
        """Whether :meth:`write_held` may hold writes now: the socket
        can (plain TCP on Linux, ``TCP_NODELAY`` on, not corked) and writes
        are :meth:`write`'s one blocking send (not TLS, no
        ``write_timeout``)."""
        return self._can_hold and self._plain_writes

    def write_held(self, s: Union[bytes, bytearray, memoryview]) -> None:
        """Send all of ``s`` as :meth:`write` does, for a small write that
        may wait for the ones after it (an acknowledgement).

        While the reader is handing out deliveries it has already received
        (:attr:`holding`), on plain TCP (:attr:`can_hold`), ``s`` is given
        to the kernel with ``MSG_MORE``: it leaves in one segment with the
        next write that is not held, with :meth:`push_held` (the reader
        calls it when those deliveries are dispatched or 1 ms has passed),
        or after 200 ms at most (Linux's limit).  Otherwise, and whenever
        :meth:`write` would not make its one blocking send, this is
        :meth:`write`.
        """
        if self.holding and getattr(self.write, '__func__', None) is \
                _AbstractTransport.write:
            self.write(s, _MSG_MORE)    # (held in write's plain branch only)
        else:
            self.write(s)

    def push_held(self) -> None:
        """Send now what :meth:`write_held` left with the kernel (nothing
        when nothing is held).  A socket already closed or lost is left
        to the next read or write to report."""
        sock = self.sock
        if sock is None or not self._can_hold:
            return
        try:
            # (turning TCP_CORK off pushes what MSG_MORE kept back)
            sock.setsockopt(socket.SOL_TCP, _TCP_CORK, 0)
        except OSError:
            pass

    def _write_start(self) -> Tuple[socket.socket, Deadline, int]:
        """For a write that is not the plain blocking send: the socket
        (refusing a transport whose stream is cut or closed), the write's
        deadline and the send flags that go with it."""
        if self.broken is not None:
            raise RecoverableConnectionError(self.broken)
        sock = self.sock
        if sock is None:
            raise ConnectionLost('connection is closed')
        if sock.gettimeout() != self._mode:
            self._adopt_socket_timeout(sock)
        deadline = self._default_deadline(self.write_timeout)
        flags = _DONTWAIT if deadline is not None and \
            not self._nonblocking else 0
        return sock, deadline, flags

    def _write(self, s: Union[bytes, bytearray, memoryview],
               sent: int = 0) -> None:
        """Send ``s`` from offset ``sent`` on (py-amqp's hook: a subclass
        overriding it gets every write)."""
        sock, deadline, flags = self._write_start()
        total = len(s) if type(s) is bytes else memoryview(s).nbytes
        view: Optional[memoryview] = memoryview(s).cast('B') if sent \
            else None
        try:
            while True:
                try:
                    sent += self._send_some(
                        s if view is None else view[sent:], flags)
                except _WOULD_BLOCK as exc:
                    _wait_ready(sock, not isinstance(exc,
                                                     ssl.SSLWantReadError),
                                deadline, 'writing to', (self.host, self.port))
                    continue
                except InterruptedError:
                    continue
                if sent >= total:
                    return
                if view is None:
                    view = memoryview(s).cast('B')
        except BaseException as exc:
            self._write_failed(exc, sent, total)
            raise

    def writev(self, parts: Sequence[Union[bytes, memoryview]]) -> None:
        """Send the concatenation of ``parts`` (bytes or memoryviews over
        bytes), as :meth:`write` would, without joining them first: on
        TCP a scatter-gather ``sendmsg`` per ``IOV_MAX`` parts, so a large
        body goes from the caller's buffer to the kernel in one copy."""
        if type(self)._write is not _AbstractTransport._write:
            self.write(b''.join(parts))  # a subclass's _write sees it all
            return
        with self._write_lock:
            self._writev(parts)

    def _writev(self, parts: Sequence[Union[bytes, memoryview]]) -> None:
        sock, deadline, flags = self._write_start()
        views = [p for p in parts if len(p)]
        total = sum(map(len, views))
        sent = 0
        first = 0
        try:
            # (The compiled frame writer does the plain case of this loop
            # itself for a large body: keep send_scatter in _speedups.c in
            # step.)
            while first < len(views):
                try:
                    n = sock.sendmsg(views[first:first + _IOV_MAX], (),
                                     flags)
                except _WOULD_BLOCK:
                    _wait_ready(sock, True, deadline, 'writing to',
                                (self.host, self.port))
                    continue
                except InterruptedError:
                    continue
                sent += n
                if sent == total:   # (usually all of it, in one call)
                    return
                while n:        # drop what went out, cut the part it ends in
                    size = len(views[first])
                    if n >= size:
                        n -= size
                        first += 1
                    else:
                        views[first] = memoryview(views[first])[n:]
                        n = 0
        except BaseException as exc:
            self._write_failed(exc, sent, total)
            raise

    def _write_failed(self, exc: BaseException, sent: int,
                      total: int) -> None:
        """Record what a write that raised ``exc`` did to the stream."""
        if isinstance(exc, socket.timeout):
            if sent:
                self._cut_off(sent, total, 'timed out')
        elif isinstance(exc, OSError):
            self._lost()
        else:
            # KeyboardInterrupt and other asynchronous exceptions: Python
            # may raise them just after a send returned, before its count
            # was added, so any of the data may be on the wire.
            self._cut_off(sent, total, type(exc).__name__)

    def _lost(self) -> None:
        self.connected = False
        self.broken = 'connection to %s:%s was lost' % (self.host, self.port)
        self._plain_writes = False

    def _cut_off(self, sent: int, total: int, why: str) -> None:
        self._plain_writes = False
        self.broken = (
            'connection to %s:%s is unusable: a write of %d bytes was cut '
            'off after %s%d bytes (%s)' % (
                self.host, self.port, total,
                'at least ' if why[0].isupper() else '', sent, why))
        self.connected = False

    def _send_some(self, data: Union[bytes, bytearray, memoryview],
                   flags: int) -> int:
        """One send; blocks until some of ``data`` is sent unless
        ``flags`` has MSG_DONTWAIT."""
        return self._live_sock().send(data, flags)

    def write_heartbeat(self, frame: bytes) -> bool:
        """Send a heartbeat frame from another thread.

        Returns False without sending while another thread is writing:
        bytes are flowing then, and the frame must not cut into theirs.
        """
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            self._write(frame)
        finally:
            self._write_lock.release()
        return True

    # -- closing --------------------------------------------------------
    def close(self) -> None:
        sock = self.sock
        if sock is not None:
            self._shutdown_transport()
            sock = self.sock
            if sock is not None:
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
        self._plain_writes = False

    def _shutdown_transport(self) -> None:
        """Hook for TLS unwrapping."""


class TCPTransport(_AbstractTransport):
    """Plain TCP transport."""


class SSLTransport(_AbstractTransport):
    """TLS transport: certificates and hostname verified unless told not to.

    ``ssl`` may be ``True`` (system CAs), a dict of options (``ca_certs``,
    ``certfile``, ``keyfile``, ``password``, ``cert_reqs``,
    ``server_hostname``, ``check_hostname``, ``ciphers``, ``ssl_version``/
    ``minimum_version``) or an :class:`ssl.SSLContext` used as is.

    One TLS session must not be read and written by two threads at the
    same moment; each non-blocking ``SSL_read``/``SSL_write`` call holds a
    lock, but no lock is held while waiting for the socket.
    """

    default_port = AMQPS_PORT
    can_peek = False
    can_scatter = False
    _decrypts = True
    _nonblocking = True
    _mode = 0.0

    def __init__(self, host: str, connect_timeout: Optional[float] = None,
                 ssl: Union[bool, Dict[str, Any], 'ssl.SSLContext',
                            None] = None,
                 **kwargs: Any) -> None:
        self.sslopts = ssl if isinstance(ssl, dict) else {}
        self.sslcontext = ssl if _is_context(ssl) else None
        self._tls_lock = threading.Lock()
        super().__init__(host, connect_timeout=connect_timeout, **kwargs)

    def _setup_transport(self) -> None:
        context, server_hostname = self._build_context()
        assert self.sock is not None
        self.sock.settimeout(self._remaining())
        self.sock = context.wrap_socket(
            self.sock, server_side=False, do_handshake_on_connect=True,
            server_hostname=server_hostname)

    def _build_context(self) -> Tuple['ssl.SSLContext', str]:
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

    def _shutdown_transport(self) -> None:
        sock = self.sock
        if sock is not None and hasattr(sock, 'unwrap'):
            try:
                sock.settimeout(0.5)
                with self._tls_lock:
                    self.sock = sock.unwrap()
            except (OSError, ValueError):
                pass

    def _read_some(self, n: int, flags: int = 0) -> bytes:
        sock = self._live_sock()
        assert isinstance(sock, ssl.SSLSocket)
        with self._tls_lock:
            data = sock.recv(n)
            # A record may hold more plaintext than was asked for: take it
            # all, so nothing waits inside OpenSSL where no poll sees it.
            pending = sock.pending()
            if pending:
                data += sock.recv(pending)
        return data

    def writev(self, parts: Sequence[Union[bytes, memoryview]]) -> None:
        """TLS has no scatter-gather send: join, then write."""
        self.write(b''.join(parts))

    def _read_into(self, view: memoryview, flags: int = 0) -> int:
        sock = self._live_sock()
        assert isinstance(sock, ssl.SSLSocket)
        with self._tls_lock:
            return sock.recv_into(view)

    def pending(self) -> int:
        sock = self.sock
        return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0

    def _send_some(self, data: Union[bytes, bytearray, memoryview],
                   flags: int) -> int:
        sock = self._live_sock()
        with self._tls_lock:
            return sock.send(data)


_PROTOCOL_VERSIONS = {
    'PROTOCOL_TLSv1': 'TLSv1',
    'PROTOCOL_TLSv1_1': 'TLSv1_1',
    'PROTOCOL_TLSv1_2': 'TLSv1_2',
}


def _apply_versions(context: ssl.SSLContext, ssl_version: object,
                    minimum: Optional[ssl.TLSVersion],
                    maximum: Optional[ssl.TLSVersion]) -> None:
    """py-amqp's ``ssl_version`` (a fixed protocol such as
    ``PROTOCOL_TLSv1_2``) and ``tls_minimum/maximum_version`` as
    context version bounds; ``PROTOCOL_TLS(_CLIENT)`` means negotiate."""
    if ssl_version is not None:
        fixed = _PROTOCOL_VERSIONS.get(getattr(ssl_version, 'name', ''))
        if fixed is not None:
            version: ssl.TLSVersion = getattr(ssl.TLSVersion, fixed)
            minimum = minimum or version
            maximum = maximum or version
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum


def _is_context(obj: object) -> TypeGuard[ssl.SSLContext]:
    return isinstance(obj, ssl.SSLContext)


#: The base class of every transport: what :func:`Transport` (and
#: ``Connection.Transport``) returns.
AbstractTransport = _AbstractTransport


def Transport(host: str, connect_timeout: Optional[float] = None,
              ssl: Union[bool, Dict[str, Any], 'ssl.SSLContext'] = False,
              **kwargs: Any) -> _AbstractTransport:
    """Return a TLS transport when ``ssl`` is set, else a TCP transport."""
    if ssl:
        return SSLTransport(host, connect_timeout=connect_timeout, ssl=ssl,
                            **kwargs)
    return TCPTransport(host, connect_timeout=connect_timeout, **kwargs)
