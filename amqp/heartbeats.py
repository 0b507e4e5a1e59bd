"""Heartbeats (AMQP 0-9-1 section 4.2.7): sending ours when due, noticing
when the broker's stop, and the optional heartbeat thread.

:class:`Heartbeats` is a part of :class:`~amqp.connection.Connection` (its
base class), kept in a module of its own; it has no use alone.
"""
from __future__ import annotations

import logging
import socket
import threading
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Optional, Tuple

from . import wire
from .abstract_channel import AbstractChannel
from .exceptions import ConnectionForced, RecoverableConnectionError
from .method_framing import HEARTBEAT_FRAME

if TYPE_CHECKING:
    from .method_framing import FrameWriter
    from .reader import Reader
    from .transport import AbstractTransport

__all__ = ('Heartbeats', 'AMQP_HEARTBEAT_LOGGER')

#: py-amqp's logger for heartbeat_tick's DEBUG records; logging configs
#: name it to silence or raise heartbeat chatter on its own.
AMQP_HEARTBEAT_LOGGER = logging.getLogger(
    'amqp.connection.Connection.heartbeat_tick')


class Heartbeats(AbstractChannel):
    """heartbeat_tick, send_heartbeat and the heartbeat thread, for
    :class:`~amqp.connection.Connection`."""

    # Set by Connection (declared for type checkers).
    heartbeat: float
    bytes_sent: int
    bytes_recv: int
    prev_sent: Optional[int]
    prev_recv: Optional[int]
    last_heartbeat_sent: float
    last_heartbeat_received: float
    host: str
    _connection_id: str
    _tracing: bool
    _transport: Optional[AbstractTransport]
    _frame_writer: Optional[FrameWriter]
    _reader: Reader
    _heartbeat_thread: Optional[Tuple[threading.Thread, threading.Event]]

    if TYPE_CHECKING:
        def _connect_on_first_use(self, what: str) -> None: ...

        def _transport_lost(self, exc: Optional[BaseException] = None
                            ) -> None: ...

    def send_heartbeat(self) -> None:
        """Send a heartbeat frame now."""
        self._connect_on_first_use('send_heartbeat()')
        writer = self._frame_writer
        if writer is None:
            raise RecoverableConnectionError('connection is closed')
        # set together with the frame writer, cleared together with it
        self._transport.write(HEARTBEAT_FRAME)  # type: ignore[union-attr]
        self.bytes_sent += 1
        if self._tracing:
            wire.heartbeat(self.host, '>')

    def heartbeat_tick(self, rate: float = 2) -> None:
        """Send a heartbeat when due; raise ConnectionForced when the
        broker has been silent too long.

        ``rate`` is how many times per heartbeat interval the caller
        calls this (kombu's ``heartbeat_check(rate=...)``; values <= 0 mean
        2): a heartbeat goes out once nothing was sent for
        ``heartbeat / rate`` seconds, and the connection is declared dead
        once nothing was received for two intervals plus one calling
        period, ``2 * heartbeat + heartbeat / rate`` (2.5 intervals at the
        default rate).  Any frame counts as a heartbeat, both ways.
        :meth:`drain_events` also calls it while waiting.
        """
        hb_debug = AMQP_HEARTBEAT_LOGGER.debug
        hb_debug('heartbeat_tick : for connection %s', self._connection_id)
        if not self.heartbeat:
            return
        if not rate or rate <= 0:
            rate = 2
        period = self.heartbeat / rate
        now = monotonic()
        sent_now, recv_now = self.bytes_sent, self.bytes_recv
        if self.prev_sent is None or self.prev_sent != sent_now:
            self.last_heartbeat_sent = now
        if self.prev_recv is None or self.prev_recv != recv_now:
            # Frames came in since the last tick: the broker was heard at
            # the read that brought them (now if they came another way).
            last_read = self._reader.last_read
            self.last_heartbeat_received = last_read if \
                last_read > self.last_heartbeat_received else now
        hb_debug('heartbeat_tick : Prev sent/recv: %s/%s, now - %s/%s, '
                 'monotonic - %s, last_heartbeat_sent - %s, heartbeat int. '
                 '- %s for connection %s', self.prev_sent, self.prev_recv,
                 sent_now, recv_now, now, self.last_heartbeat_sent,
                 self.heartbeat, self._connection_id)
        self.prev_sent, self.prev_recv = sent_now, recv_now
        if now - self.last_heartbeat_sent >= period:
            hb_debug('heartbeat_tick: sending heartbeat for connection %s',
                     self._connection_id)
            self.send_heartbeat()
            self.last_heartbeat_sent = monotonic()
            self.prev_sent = self.bytes_sent
        if self.last_heartbeat_received and \
                now - self.last_heartbeat_received > \
                2 * self.heartbeat + period:
            if self._heard_unread():
                # the broker's frames wait unread (nothing read them while
                # the program was busy): it was heard; the read counts
                self.last_heartbeat_received = now
                return
            exc = ConnectionForced('Too many heartbeats missed')
            self._transport_lost(exc)
            raise exc

    def _heard_unread(self) -> bool:
        """Whether bytes from the broker wait to be parsed or read: in the
        frame buffer, or in a plain TCP socket (one non-blocking peek; a
        TLS or gevent socket is not asked)."""
        if len(self._reader.frames):
            return True
        transport = self._transport
        sock = None if transport is None else transport.sock
        if type(sock) is not socket.socket:
            return False
        try:
            return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (OSError, ValueError):   # nothing waits; a closed socket
            return False

    def _start_heartbeat_thread(self) -> None:
        stop = threading.Event()
        interval = self.heartbeat / 2.0
        # A weak reference: a connection the application dropped is not
        # kept alive (nor its socket open) by its heartbeat thread.
        thread = threading.Thread(
            target=_heartbeat_loop, args=(weakref.ref(self), stop, interval),
            name='amqp-heartbeat', daemon=True)
        thread.start()
        self._heartbeat_thread = (thread, stop)

    def _beat(self, interval: float) -> bool:
        """One tick of the heartbeat thread; False when it should end.

        Sends only when nothing was sent for ``interval`` and no other
        thread is writing; takes no lock a reader holds.
        """
        transport = self._transport
        if transport is None or not transport.connected:
            return False
        if monotonic() - self.last_heartbeat_sent >= interval:
            try:
                if transport.write_heartbeat(HEARTBEAT_FRAME):
                    self.bytes_sent += 1
                    self.last_heartbeat_sent = monotonic()
                    if self._tracing:
                        wire.heartbeat(self.host, '>')
            except (OSError, RecoverableConnectionError):
                return False
        return True


def _heartbeat_loop(ref: weakref.ref[Heartbeats], stop: threading.Event,
                    interval: float) -> None:
    """The heartbeat thread: holds its connection only during a tick."""
    while not stop.wait(interval):
        conn = ref()
        if conn is None or not conn._beat(interval):
            return
        del conn
