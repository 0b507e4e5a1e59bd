"""The reader: who reads a connection's socket, and how each method read
reaches the thread it belongs to.

A connection may be shared by threads (``docs/guide_threads.rst`` states
the rules for users, ``docs/design.rst`` the design).  Here is how:

* At most one thread at a time holds the **read role** (``_role``): it
  receives from the socket, parses frames into complete methods and, at
  the end of its turn, hands each method to the **lane** of its channel.
  It never runs a handler or a callback while it holds the role, and it
  ends its turn before it would block with methods parsed, so whatever it
  read reaches its owner before it waits on the socket again.
* A lane (:class:`Lane`, one per channel) keeps the methods of its
  channel in arrival order.  They are dispatched -- decoded, handed to
  the channel's handler and to the caller waiting for them -- by one
  thread at a time, in order.  Which thread:

  1. the thread already running the lane;
  2. else the thread in a synchronous wait on that channel (its reply,
     and whatever arrived for the channel before it);
  3. else the reading thread, when it is the connection's *consumer
     thread* (the thread that last called ``drain_events``, while it is
     alive) or there is none yet -- as in py-amqp, where a program with
     one thread runs callbacks inside any call that reads;
  4. else the lane waits for the consumer thread's next ``drain_events``,
     and that thread is woken.

* A thread that needs input (a reply, a confirm, ``drain_events``) and
  finds the role taken sleeps on ``_changed`` until something was handed
  to it, the role is free, or its own deadline passes.  Deadlines are per
  call: the reader's never becomes anyone else's.

The lock ``_lock`` (with the condition ``_changed`` built on it) protects
the lanes' ``runner`` and ``waiter``, hand-over into their inboxes, the
set of lanes waiting for ``drain_events`` (``_ready``), the sleeper
count, the connection's failure and its deferred errors.  It is held only
for bookkeeping, never while a handler runs, a socket is used or a
thread sleeps.  The role is held while the socket is waited on -- that is
what it is for -- and never while a handler runs.

Only the thread holding the role touches the frame buffer, the frame
handler's partial contents and ``last_read``.
"""
from __future__ import annotations

import copy
import logging
import socket
import threading
from collections import deque
from time import monotonic
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, List,
                    Mapping, Optional, Protocol, Sequence, Tuple, Union)

from . import spec
from .exceptions import (AMQPNotImplementedError, FrameError,
                         FrameSyntaxError, InvalidCommand, ReadTimeout,
                         RecoverableConnectionError, UnexpectedFrame)
from .method_framing import READ_SIZE, FrameBuffer, frame_reader, method_end
from .serialization import speedups
from .transport import RECV_QUANTUM, ConnectionLost

if TYPE_CHECKING:
    from .basic_message import Message
    from .method_framing import FrameHandler, OversizedContent
    from .transport import AbstractTransport

__all__ = ('Reader', 'Lane', 'ReadingConnection', 'LaneOwner',
           'PEER_PROTOCOL_ERRORS')

logger = logging.getLogger('amqp')

_get_ident = threading.get_ident

#: Errors we detect in what the peer sent; the connection cannot go on
#: after them (spec 4.2.3: close with the reply code, then drop the socket).
PEER_PROTOCOL_ERRORS = (FrameError, FrameSyntaxError, UnexpectedFrame,
                        AMQPNotImplementedError, InvalidCommand)

_CONNECTION_CLOSE = spec.Connection.Close
#: what a hand-over with nothing for this thread returns (never changed)
_NONE: List[Any] = []
_ACK = spec.Basic.Ack
#: Longest an ack made in a consumer callback waits (held with MSG_MORE,
#: Transport.write_held) for the deliveries received with it to be
#: dispatched, in seconds, checked between callbacks; a callback that runs
#: longer holds it until it writes, returns or the kernel's 200 ms pass.
#: 0 (or None): every ack is sent as it is made, as py-amqp sends it.
#: Read when a batch of deliveries starts.
HOLD_LIMIT: Optional[float] = 0.001
_CONSUME_OK = spec.Basic.ConsumeOk

#: A complete method as parsed: (channel, method_sig, payload, content).
Parsed = Tuple['LaneOwner', spec.MethodSig, bytes,
               Union['Message', 'OversizedContent', None]]


class Lane:
    """The methods that arrived for one channel, and who handles them.

    ``inbox`` is appended to under the reader's lock and popped only by
    the ``runner``.
    """

    __slots__ = ('inbox', 'runner', 'waiter')

    def __init__(self) -> None:
        self.inbox: Deque[Parsed] = deque()
        #: the thread dispatching the inbox, or None
        self.runner: Optional[int] = None
        #: the thread in a synchronous wait on the channel, or None
        self.waiter: Optional[int] = None


class LaneOwner(Protocol):
    """A channel, as the reader sees it (the connection is channel 0)."""

    channel_id: int
    lane: Lane

    @property
    def connection(self) -> Optional[object]:
        """None once the channel is closed."""

    def dispatch_method(self, method_sig: spec.MethodSig, payload: bytes,
                        content: Union[Message, OversizedContent, None]
                        ) -> None:
        """Decode a method and hand it to its handler and waiter."""

    def settles_quietly(self) -> bool:
        """Whether a publisher confirm arriving now runs no application
        code."""


class ReadingConnection(Protocol):
    """What the reader uses of its connection (public members only; the
    connection hands its private hooks to the constructor)."""

    @property
    def channels(self) -> Mapping[int, LaneOwner]:
        """Open channels by id."""

    @property
    def heartbeat(self) -> float:
        """The negotiated heartbeat interval (0: none)."""

    @property
    def last_heartbeat_received(self) -> float:
        """``time.monotonic()`` when the broker was last heard."""

    @property
    def last_heartbeat_sent(self) -> float:
        """``time.monotonic()`` when heartbeat_tick last saw us send."""

    def heartbeat_tick(self, rate: float = 2) -> None:
        """Send a heartbeat when due; raise when the broker went quiet."""


class Reader:
    """The read role, the lanes and the waits of one connection.

    ``lost(exc)`` drops the connection after a socket error, ``abort(exc)``
    after a protocol error of the peer, ``gone(channel_id, method_sig)``
    handles a method for a channel that is no longer registered (all three
    are the connection's).
    """

    def __init__(self, connection: ReadingConnection,
                 lost: Callable[[BaseException], None],
                 abort: Callable[[BaseException], None],
                 gone: Callable[[int, spec.MethodSig], None],
                 max_message_size: Optional[int] = None) -> None:
        self._conn = connection
        #: the connection's transport and frame handler (it sets them)
        self.transport: Optional[AbstractTransport] = None
        self.handler: Optional[FrameHandler] = None
        self._lost = lost
        self._abort = abort
        self._gone = gone
        #: what was read from the socket and not yet parsed
        self.frames = FrameBuffer()
        #: frames.next_frame (or its compiled twin)
        self._take_frame = frame_reader(self.frames)
        #: the compiled reply loop (see _pump), or None
        self._c_pump: Any = None
        if speedups is not None and type(self.frames) is FrameBuffer:
            self._c_pump = speedups.Pump(self, self.frames, self._take_frame,
                                         self._recv_failed, monotonic,
                                         READ_SIZE)
        if max_message_size:
            # bodies collected whole are never larger than that
            self.frames.max_body = max_message_size
        #: ``time.monotonic()`` of the last read from the socket
        self.last_read = monotonic()
        #: why the connection ended, once it has (None while open)
        self.failure: Optional[BaseException] = None
        #: errors for channels kept until they can be raised without
        #: aborting another channel's wait: (channel, exception)
        self.deferred: List[Tuple[LaneOwner, BaseException]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._role = threading.Lock()
        self._holder: Optional[int] = None
        self._sleepers = 0
        self._consumer: Optional[threading.Thread] = None
        self._consumer_id: Optional[int] = None
        #: lanes waiting for drain_events, in the order they became ready
        self._ready: Dict[LaneOwner, None] = {}
        #: channels that registered consumers (some may have none left)
        self._consuming: Dict[LaneOwner, None] = {}
        #: methods parsed in the current turn (the role holder's only)
        self._parsed: List[Parsed] = []
        self._stop_channel: Optional[LaneOwner] = None
        self._stop_methods: Sequence[spec.MethodSig] = ()
        self._stopped = False
        #: the reply waited for may be dispatched as soon as it is parsed
        self._direct = False
        self._acks = False
        self._confirm_wait: Optional[Callable[[], object]] = None
        #: thread ident -> the channel it is in a synchronous wait on
        #: (a dict, not a threading.local: several times cheaper)
        self._waits: Dict[int, LaneOwner] = {}

    # -- state others read -------------------------------------------------
    @property
    def waiting_channel(self) -> Optional[LaneOwner]:
        """The channel the calling thread is in a synchronous wait on."""
        return self._waits.get(_get_ident())

    def has_pending(self) -> bool:
        """True when a complete frame is buffered or methods wait for
        ``drain_events``."""
        return bool(self._ready) or self.frames.has_frame()

    def fail(self, exc: Optional[BaseException]) -> None:
        """The connection is gone: wake every waiting thread with
        ``exc`` (the first failure is kept)."""
        with self._lock:
            if self.failure is None:
                self.failure = exc if exc is not None else \
                    RecoverableConnectionError('connection closed')
            self._ready.clear()
            self._changed.notify_all()

    def defer(self, channel: LaneOwner, exc: BaseException) -> None:
        with self._lock:
            self.deferred.append((channel, exc))

    def take_deferred(self, channel: Optional[LaneOwner]
                      ) -> Optional[BaseException]:
        """Remove and return the oldest deferred error of ``channel`` (of
        any channel when None), or None."""
        with self._lock:
            for i, (owner, exc) in enumerate(self.deferred):
                if channel is None or owner is channel:
                    del self.deferred[i]
                    return exc
        return None

    def forget(self, channel: LaneOwner) -> None:
        """``channel`` is gone: drop what waits for it."""
        with self._lock:
            self._ready.pop(channel, None)
            channel.lane.inbox.clear()
            deferred = self.deferred
            if deferred:   # the same list object: others hold it
                deferred[:] = [(ch, exc) for ch, exc in deferred
                               if ch is not channel]
            if self._sleepers:   # whoever waits on it stops waiting
                self._changed.notify_all()

    # -- the frame handler's callback --------------------------------------
    def arrived(self, channel_id: int, method_sig: spec.MethodSig,
                payload: bytes,
                content: Union[Message, OversizedContent, None]) -> None:
        """A complete method was parsed: keep it for the end of the turn
        (dispatched at once when called outside a read, as py-amqp's
        ``on_inbound_method`` is)."""
        channel = self._conn.channels.get(channel_id)
        if channel is None:
            self._gone(channel_id, method_sig)
            return
        if self._holder != _get_ident() or (
                not channel_id and method_sig == _CONNECTION_CLOSE):
            # Not from a read (a test or py-amqp-style code calling the
            # handler itself); or the broker closing the connection,
            # which ends every wait at once (the handler raises).
            channel.dispatch_method(method_sig, payload, content)
            return
        if channel is self._stop_channel and \
                method_sig in self._stop_methods:
            self._stopped = True
            if (self._direct or
                    (self._acks and channel.settles_quietly())) and \
                    not self._parsed and not channel.lane.inbox and \
                    channel.lane.runner is None:
                # The reply this thread waits for, with nothing before it
                # for its channel: handled here, as its own lane would
                # (replies carry no consumer callbacks).
                channel.dispatch_method(method_sig, payload, content)
                return
        self._parsed.append((channel, method_sig, payload, content))

    # -- waits -------------------------------------------------------------
    def wait_until(self, channel: LaneOwner, done: Callable[[], object],
                   deadline: Optional[float],
                   methods: Sequence[spec.MethodSig] = (),
                   handshake: bool = False) -> None:
        """Until ``done()``: run what arrives for ``channel`` and read
        when the role is free.  Raises ``socket.timeout`` when
        ``deadline`` (``time.monotonic()``) passes,
        :class:`~amqp.exceptions.ReadTimeout` when the broker sends
        nothing for the read bound (not while ``handshake``)."""
        me = _get_ident()
        lane = channel.lane
        waits = self._waits
        outer_channel = waits.get(me)
        waits[me] = channel
        # (no lock needed: a hand-over that misses it puts the method in
        # the lane for drain_events, where this loop takes it all the same)
        outer_waiter = lane.waiter
        lane.waiter = me
        try:
            pump = self._c_pump
            if pump is not None and outer_waiter is None and \
                    lane.runner is None and not lane.inbox and \
                    not handshake and not self._consuming and \
                    self.failure is None and not self._conn.heartbeat and \
                    _CONSUME_OK not in methods and \
                    channel.connection is not None and not done() and \
                    self._role.acquire(False):
                # The first turn in its common case: the role was free,
                # nothing is pending for the channel, no consumer (so no
                # ``exact`` read), no heartbeats; the compiled reply loop
                # receives when the socket is plain (no read bound): what
                # _turn and _pump do, without their general checks.
                self._quick_turn(me, channel, methods, deadline, done, pump)
                if done():
                    return
            self._wait(me, channel, done, deadline, methods, handshake)
        finally:
            if outer_channel is None:
                del waits[me]
            else:
                waits[me] = outer_channel
            if lane.waiter == me:
                if outer_waiter is not None and outer_waiter != me:
                    # several threads wait on one lane (the connection's,
                    # channel 0): hand it to one that still waits on it
                    outer_waiter = self._still_waiting(channel)
                lane.waiter = outer_waiter
            if lane.inbox and lane.waiter is None:
                self._release_lane(channel)

    def _wait(self, me: int, channel: LaneOwner, done: Callable[[], object],
              deadline: Optional[float], methods: Sequence[spec.MethodSig],
              handshake: bool) -> None:
        """:meth:`wait_until`'s loop, the waiter registered."""
        lane = channel.lane
        started = monotonic()
        exact: Optional[bool] = None
        while True:
            runner = lane.runner
            free = runner is None or runner == me
            if free:
                if lane.inbox:
                    self._run_lane(channel, me)
                if done():
                    return
                if self.failure is not None or channel.connection is None:
                    if done():
                        return
                    self._raise_closed(channel, methods)
                if self._role.acquire(False):
                    if exact is None:
                        exact = self._exact(methods) if \
                            self._consuming else _CONSUME_OK in methods
                    self._turn(me, channel, methods, deadline, started,
                               exact, handshake, done=done)
                    if done():
                        return
                    continue
            elif done():
                return
            # (when not ``free``, another thread is dispatching this
            # channel's methods, maybe this wait's reply: let it
            # finish, read nothing meanwhile)
            if lane.waiter is None:
                lane.waiter = me   # (another waiter left the lane)
            self._check_time(deadline, started, handshake)
            self._sleep(lane, done, deadline, started, False, free)

    def _still_waiting(self, channel: LaneOwner) -> Optional[int]:
        """A thread in a wait on ``channel``, or None."""
        for ident, waited in list(self._waits.items()):
            if waited is channel:
                return ident
        return None

    def _raise_closed(self, channel: LaneOwner,
                      methods: Sequence[spec.MethodSig]) -> None:
        failure = self.failure
        if failure is not None:
            raise _copy(failure)
        raise RecoverableConnectionError(
            'channel %r closed while waiting for %s' % (
                channel.channel_id, _names(methods)))

    def _release_lane(self, channel: LaneOwner) -> None:
        """A wait ended with methods in its lane (they arrived behind the
        reply): they are for drain_events."""
        lane = channel.lane
        with self._lock:
            if lane.inbox and lane.runner is None and lane.waiter is None:
                self._ready[channel] = None
                if self._sleepers:
                    self._changed.notify_all()

    def drain(self, deadline: Optional[float]) -> None:
        """``drain_events``: dispatch at least one method, then every
        further one already read; the calling thread becomes the
        connection's consumer thread."""
        me = _get_ident()
        if self._consumer_id != me:
            self._consumer = threading.current_thread()
            self._consumer_id = me
        started = monotonic()
        while True:
            if self._ready:
                mine = self._claim_ready(me)
                if mine:
                    self._run_lanes(mine, me)
                    if self.frames.has_frame() and \
                            self._role.acquire(False):
                        # and what is already buffered, without reading
                        self._turn(me, None, (), None, started, False,
                                   False, buffered_only=True)
                    return
            failure = self.failure
            if failure is not None:
                raise _copy(failure)
            if self._role.acquire(False):
                if self._turn(me, None, (), deadline, started, False,
                              False):
                    return
                continue
            self._check_time(deadline, started, False)
            self._sleep(None, None, deadline, started, True)

    def read_one(self, deadline: Optional[float]) -> bool:
        """py-amqp's ``blocking_read``: read and handle one frame; return
        whether it completed a method."""
        me = _get_ident()
        started = monotonic()
        while not self._role.acquire(False):
            failure = self.failure
            if failure is not None:
                raise _copy(failure)
            self._check_time(deadline, started, False)
            self._sleep(None, None, deadline, started, False)
        self._holder = me
        self._stop_channel, self._stopped = None, False
        try:
            frame = self._next_frame()
            transport = self.transport
            while frame is None:
                self._fill(transport, deadline, False)
                frame = self._next_frame()
            handler = self.handler
            if handler is None:
                raise RecoverableConnectionError('connection is closed')
            try:
                completed = handler(frame)
            except PEER_PROTOCOL_ERRORS as exc:
                self._abort(exc)
                raise
        except BaseException:
            self._hand_over(me, claim=False)
            raise
        mine, nested = self._hand_over(me)
        self._run_lanes(mine, me, nested)
        return completed

    def note_consumer(self, channel: LaneOwner) -> None:
        """``channel`` registered a consumer."""
        self._consuming[channel] = None

    def _exact(self, methods: Sequence[spec.MethodSig]) -> bool:
        """Read exactly up to a reply (not greedily) when deliveries may
        follow it: a consumer exists, or this is basic.consume."""
        if _CONSUME_OK in methods:
            return True
        consuming = self._consuming
        if consuming:
            for c in list(consuming):
                if c.connection is not None and \
                        getattr(c, 'callbacks', None):
                    return True
                consuming.pop(c, None)   # (no consumer left)
        return False

    # -- one turn with the role --------------------------------------------
    def _turn(self, me: int, channel: Optional[LaneOwner],
              methods: Sequence[spec.MethodSig], deadline: Optional[float],
              started: float, exact: bool, handshake: bool,
              buffered_only: bool = False,
              done: Optional[Callable[[], object]] = None) -> bool:
        """With the role just taken: read and parse (stopping right after
        ``channel``'s reply among ``methods``), hand the methods over,
        give the role back, run the lanes that fall to this thread.
        Return whether any ran.  (``done``: the wait's condition, see
        ``_confirm_wait``.)"""
        self._holder = me
        self._stop_channel = channel
        self._stop_methods = methods
        self._stopped = False
        # publisher confirms may run on_confirm callbacks: never under the
        # role (see _acks)
        self._direct = channel is not None and not handshake and \
            _ACK not in methods
        # a confirm wait: its ack or nack is handled as it comes when, at
        # that moment, settling it runs no application code
        self._acks = not handshake and _ACK in methods
        # a confirm wait's acks dispatched as they come need not end the
        # turn one by one: the compiled loop reads on until ``done()``
        self._confirm_wait = done if self._acks else None
        try:
            self._pump(deadline, started, exact, handshake, buffered_only)
        except BaseException:
            self._hand_over(me, claim=False)
            raise
        return self._run_handed_over(me)

    def _run_handed_over(self, me: int) -> bool:
        """End a turn: hand over what was parsed and run the lanes that
        fall to this thread; return whether any ran."""
        mine, nested = self._hand_over(me)
        if nested:
            self._run_lanes(mine, me, nested)
            return True
        if not mine:
            return False
        if len(mine) == 1:
            self._run_lane(mine[0], me, claimed=True)
        else:
            self._run_lanes(mine, me)
        return True

    def _quick_turn(self, me: int, channel: LaneOwner,
                    methods: Sequence[spec.MethodSig],
                    deadline: Optional[float], done: Callable[[], object],
                    pump: Any) -> None:
        """:meth:`wait_until`'s first turn in its common case, the role
        just taken (see there); given back on return."""
        handle = self.handler
        transport = self.transport
        sock = None if handle is None or transport is None else \
            transport.plain_sock()
        if sock is None:
            self._hand_over(me, claim=False)   # (gives the role back)
            return
        acks = _ACK in methods
        self._holder = me
        self._stop_channel = channel
        self._stop_methods = methods
        self._stopped = False
        self._direct = not acks
        self._acks = acks
        self._confirm_wait = done if acks else None
        try:
            try:
                finished = pump(sock, handle, deadline, RECV_QUANTUM,
                                self._confirm_wait)
            except PEER_PROTOCOL_ERRORS as exc:
                self._abort(exc)
                raise
            if not finished:
                # a deadline near, a large body, a receive that would
                # block: the turn goes on in the general loop (silence
                # counted from here: no read bound holds in this turn)
                self._pump(deadline, monotonic(), False, False, False)
        except BaseException:
            self._hand_over(me, claim=False)
            raise
        if self._parsed:
            self._run_handed_over(me)
        else:   # (the reply, dispatched as it came: nothing to hand over)
            self._holder = None
            self._role.release()
            if self._sleepers:
                with self._lock:
                    self._changed.notify_all()

    def _next_frame(self) -> Any:
        try:
            return self._take_frame()
        except PEER_PROTOCOL_ERRORS as exc:
            self._abort(exc)
            raise

    def _pump(self, deadline: Optional[float], started: float,
              exact: bool, handshake: bool, buffered_only: bool) -> None:
        """Parse buffered frames; read the socket while none is buffered
        and nothing was parsed yet.  Returns once something was parsed and
        no further complete frame is buffered, or right after the reply
        waited for.

        ``deadline`` is checked between reads, so a peer streaming
        heartbeats or body frames cannot stretch it; once it has passed,
        one non-blocking read is still made.  With heartbeats on, wakes at
        least every heartbeat/2 seconds to send ours and check the
        broker's.  ``started`` is when the call began: silence is counted
        from it or from the last read, whichever is later.
        """
        conn = self._conn
        next_frame = self._take_frame
        handle = self.handler
        parsed = self._parsed
        transport = self.transport
        reply = self._stop_channel is not None and not handshake
        exact = exact and reply
        # the common case, receiving included, in one compiled call: a
        # plain socket, no read bound (reads not ``exact``)
        pump = self._c_pump
        sock = None if pump is None or exact or buffered_only or \
            handshake or transport is None else transport.plain_sock()
        # without a read bound or heartbeats, each read simply waits for
        # the deadline (plain_sock: there is no bound)
        bound = None if sock is not None or handshake or \
            transport is None else transport.read_bound()
        timed = bound is not None or (conn.heartbeat and not handshake)
        late = False
        while True:
            if sock is not None:
                step, why = self._timed_step(deadline, started, bound) \
                    if timed else (deadline, 'deadline')
                try:
                    if pump(sock, handle, step, RECV_QUANTUM,
                            self._confirm_wait):
                        return
                except PEER_PROTOCOL_ERRORS as exc:
                    self._abort(exc)
                    raise
                except socket.timeout as exc:   # (EINTR, as recv_now)
                    self._read_timed_out(exc, why, bound)
                    continue
            try:
                frame = next_frame()
                while frame is not None:
                    handle(frame)  # type: ignore[misc]  # None: closed
                    if self._stopped:
                        return
                    frame = next_frame()
            except PEER_PROTOCOL_ERRORS as exc:
                self._abort(exc)
                raise
            if parsed or buffered_only:
                return
            if deadline is not None and monotonic() >= deadline:
                if late:
                    raise socket.timeout('timed out')
                late = True
            if not timed:
                self._fill(transport, deadline, exact, reply)
                continue
            step, why = self._timed_step(deadline, started, bound)
            try:
                self._fill(transport, step, exact, reply)
            except socket.timeout as exc:
                self._read_timed_out(exc, why, bound)

    def _read_timed_out(self, exc: socket.timeout, why: str,
                        bound: Optional[float]) -> None:
        """A read that ``why`` (see :meth:`_step`) bounded timed out:
        raise ``exc`` (the call's deadline), or ReadTimeout (silence), or
        check heartbeats."""
        if why == 'deadline':
            raise exc
        if why == 'silence':
            raise self._silence(bound) from None
        self._conn.heartbeat_tick()

    def _timed_step(self, deadline: Optional[float], started: float,
                    bound: Optional[float]) -> Tuple[Optional[float], str]:
        """:meth:`_step`, after a heartbeat_tick that is due: the broker's
        frames may have ended every read before its time came."""
        step, why = self._step(deadline, started, bound)
        if why == 'heartbeat' and step is not None and step <= monotonic():
            self._conn.heartbeat_tick()
            step, why = self._step(deadline, started, bound)
        return step, why

    def _step(self, deadline: Optional[float], started: float,
              bound: Optional[float]) -> Tuple[Optional[float], str]:
        """How long the next read may wait, and what ends it: the call's
        ``'deadline'``, the read bound (``'silence'``, counted from the
        last read or the start of the call, whichever is later) or the
        next ``'heartbeat'`` tick (every heartbeat/2 seconds, and the
        moment the broker's silence reaches heartbeat_tick's limit)."""
        step, why = deadline, 'deadline'
        if bound is not None:
            quiet = max(self.last_read, started) + bound
            if step is None or quiet < step:
                step, why = quiet, 'silence'
        conn = self._conn
        hb = conn.heartbeat
        if hb:
            now = monotonic()
            # ours is due heartbeat/2 after the last one we sent (the
            # broker's frames coming sooner must not put it off)
            wake = min(now, conn.last_heartbeat_sent) + hb / 2.0
            # (2.5 intervals: heartbeat_tick's limit, plus a millisecond)
            dead_at = conn.last_heartbeat_received + 2.5 * hb + 0.001
            if now < dead_at < wake:
                wake = dead_at
            if step is None or wake < step:
                step, why = wake, 'heartbeat'
        return step, why

    def _hand_over(self, me: int, claim: bool = True
                   ) -> Tuple[List[LaneOwner], Optional[List[LaneOwner]]]:
        """End of a turn: put what was parsed in its lanes, give the role
        back and wake whoever it concerns; return the lanes this thread
        now runs (none unless ``claim``), and those it was already running
        further up its stack (a callback that reads: run nested, as
        py-amqp does), or None."""
        parsed = self._parsed
        self._holder = None
        if not parsed:
            # (a reply wait whose reply was dispatched as it came) nothing
            # to hand over: give the role back, wake whoever waits for it
            self._role.release()
            if self._sleepers:
                with self._lock:
                    self._changed.notify_all()
            return _NONE, None
        mine: List[LaneOwner] = []
        nested: Optional[List[LaneOwner]] = None
        with self._lock:
            self._role.release()
            drains: Optional[bool] = None
            last = None
            for item in parsed:
                channel = item[0]
                lane = channel.lane
                lane.inbox.append(item)
                if channel is last:
                    continue    # decided with the method before it
                last = channel
                runner = lane.runner
                if runner is not None:
                    # its runner takes it from the inbox; that may be this
                    # thread, in a callback of that channel which reads
                    if runner == me and claim and lane.waiter != me:
                        if drains is None:
                            drains = self._drains(me)
                        if drains:
                            if nested is None:
                                nested = []
                            if channel not in nested:
                                nested.append(channel)
                    continue
                waiter = lane.waiter
                if waiter is None:
                    if drains is None:
                        drains = claim and self._drains(me)
                    if drains:
                        lane.runner = me
                        mine.append(channel)
                    else:
                        self._ready[channel] = None
                elif waiter == me:
                    if claim:
                        lane.runner = me
                        mine.append(channel)
                    else:
                        self._ready[channel] = None
            parsed.clear()
            if drains and self._ready:
                mine.extend(self._claim_ready_locked(me))
            if self._sleepers:
                self._changed.notify_all()
        return mine, nested

    def _drains(self, me: int) -> bool:
        """Whether lanes with nobody waiting on them are run by this
        thread: it is the consumer thread, or there is none (alive)."""
        consumer = self._consumer
        return consumer is None or self._consumer_id == me or \
            not consumer.is_alive()

    def _claim_ready(self, me: int) -> List[LaneOwner]:
        with self._lock:
            return self._claim_ready_locked(me)

    def _claim_ready_locked(self, me: int) -> List[LaneOwner]:
        mine = []
        for channel in self._ready:
            lane = channel.lane
            if lane.runner is None and lane.waiter in (None, me) and \
                    lane.inbox:
                lane.runner = me
                mine.append(channel)
        self._ready.clear()
        return mine

    # -- running lanes -----------------------------------------------------
    def _run_lanes(self, channels: List[LaneOwner], me: int,
                   nested: Optional[List[LaneOwner]] = None) -> None:
        """Run lanes claimed for this thread, then those it runs further
        up its stack (``nested``).  Should one raise, the claimed lanes
        not yet run are released for someone else."""
        for i, channel in enumerate(channels):
            try:
                self._run_lane(channel, me, claimed=True)
            except BaseException:
                with self._lock:
                    for rest in channels[i + 1:]:
                        rest.lane.runner = None
                        self._reassign(rest)
                raise
        for channel in nested or ():
            self._run_lane(channel, me)

    def _run_lane(self, channel: LaneOwner, me: int,
                  claimed: bool = False) -> None:
        """Dispatch ``channel``'s inbox in order (claiming the lane first
        unless ``claimed``); with this thread already running it further
        up the stack (a callback waiting for a reply on its own channel),
        run what came since, as py-amqp does."""
        lane = channel.lane
        inbox = lane.inbox
        outer: Optional[int] = None
        if not claimed:
            with self._lock:
                runner = lane.runner
                if (runner is not None and runner != me) or not inbox:
                    return
                outer = runner
                lane.runner = me
        dispatch = channel.dispatch_method
        transport = self.transport
        # While further deliveries are already received, acks that their
        # callbacks make may wait for the next write (write_held): until
        # the last of them is dispatched, or HOLD_LIMIT passes.
        limit = HOLD_LIMIT or 0.0
        hold = transport if limit > 0 and transport is not None and \
            transport.can_hold else None
        held_since = 0.0
        try:
            while True:
                while inbox:
                    item = inbox.popleft()
                    if hold is not None:
                        if inbox:
                            now = monotonic()
                            if not held_since:
                                held_since = now
                            elif now - held_since > limit:
                                hold.push_held()
                                held_since = now
                            hold.holding = True
                        elif held_since:
                            # (the last one's ack is sent as it is made)
                            hold.holding = False
                    dispatch(item[1], item[2], item[3])
                if held_since and hold is not None:
                    held_since = 0.0
                    hold.holding = False
                    hold.push_held()
                lane.runner = outer
                if outer is not None or not (
                        inbox or lane.waiter not in (None, me) or
                        not channel.channel_id) or \
                        not self._after_run(channel, me):
                    return
        except PEER_PROTOCOL_ERRORS as exc:
            # a method that does not decode: the peer broke the protocol
            lane.runner = outer
            self._abort(exc)
            raise
        except BaseException:
            with self._lock:
                lane.runner = outer
                if outer is None:
                    self._reassign(channel)
                if self._sleepers:
                    self._changed.notify_all()
            raise
        finally:
            if held_since and hold is not None:   # (a callback raised)
                hold.holding = False
                hold.push_held()

    def _after_run(self, channel: LaneOwner, me: int) -> bool:
        """A lane was let go with something in it, or after running for
        another thread's wait: take it back (True) if nobody else may run
        it, else wake whoever should."""
        lane = channel.lane
        with self._lock:
            if lane.inbox and lane.runner is None and \
                    lane.waiter in (None, me):
                lane.runner = me
                self._ready.pop(channel, None)
                return True
            if self._sleepers:
                self._changed.notify_all()
        return False

    def _reassign(self, channel: LaneOwner) -> None:
        """(Holding the lock) a lane with nobody running it: its waiter
        runs it, else the next drain_events."""
        lane = channel.lane
        if lane.inbox and lane.runner is None and lane.waiter is None:
            self._ready[channel] = None
        if self._sleepers:
            self._changed.notify_all()

    # -- sleeping ----------------------------------------------------------
    def _sleep(self, lane: Optional[Lane],
               done: Optional[Callable[[], object]],
               deadline: Optional[float], started: float,
               draining: bool, may_read: bool = True) -> None:
        """Wait until the role is free (when ``may_read``), something is
        handed to this thread, the thread running ``lane`` let it go, the
        connection fails, or the bound passes (the caller then checks its
        deadline)."""
        wake = deadline
        bound = self._read_bound()
        if bound is not None:
            quiet = max(self.last_read, started) + bound
            if wake is None or quiet < wake:
                wake = quiet
        with self._lock:
            # Counted before the role is looked at: a thread that gives
            # the role back without the lock (see _hand_over) then either
            # sees this sleeper and wakes it, or gave it back before the
            # look below.
            self._sleepers += 1
            try:
                if self.failure is not None or \
                        (may_read and not self._role.locked()):
                    return
                if done is not None and done():
                    return
                if lane is not None and lane.runner is None and (
                        lane.inbox or not may_read):
                    return
                if draining and self._ready:
                    return
                timeout = None if wake is None else wake - monotonic()
                if timeout is not None and timeout <= 0:
                    return
                self._changed.wait(timeout)
            finally:
                self._sleepers -= 1

    def _check_time(self, deadline: Optional[float], started: float,
                    handshake: bool) -> None:
        """Raise when the call's deadline or the read bound has passed
        (for a thread that is not reading)."""
        now = monotonic()
        if deadline is not None and now >= deadline:
            raise socket.timeout('timed out')
        if not handshake:
            bound = self._read_bound()
            if bound is not None and \
                    now >= max(self.last_read, started) + bound:
                raise self._silence(bound)

    def _read_bound(self) -> Optional[float]:
        transport = self.transport
        return None if transport is None else transport.read_bound()

    def _silence(self, bound: Optional[float]) -> ReadTimeout:
        transport = self.transport
        where = '' if transport is None else ' from %s:%s' % (
            transport.host, transport.port)
        return ReadTimeout('nothing received%s for %ss (read_timeout, or the '
                       'timeout set on the socket)' % (where, bound))

    # -- reading the socket ------------------------------------------------
    def _fill(self, transport: Optional[AbstractTransport],
              deadline: Optional[float], exact: bool,
              wait_first: bool = False) -> None:
        """Read once from the socket into the frame buffer.

        ``exact`` (TCP only) reads no byte past the end of the first
        complete method: one peek finds where it ends, one read takes it,
        and what follows stays in the socket, readable for event loops
        (py-amqp reads frame by frame and kombu relies on the same).  A
        broken socket or stream closes the connection; ``socket.timeout``
        does not.
        """
        if transport is None or self.transport is None:
            failure = self.failure
            if failure is not None:
                raise _copy(failure)
            raise RecoverableConnectionError('connection is closed')
        frames = self.frames
        try:
            if frames.collecting and self._fill_body(transport, frames,
                                                     deadline, exact):
                self.last_read = monotonic()
                return
            if exact and transport.can_peek:
                peeked = transport.recv(READ_SIZE, deadline, peek=True,
                                        wait_first=wait_first)
                if len(frames):
                    pending = frames.unread()
                    end = method_end(pending + peeked)
                    size = len(peeked) if end is None else \
                        max(end - len(pending), 1)
                else:
                    end = method_end(peeked)
                    size = len(peeked) if end is None else end
                data = transport.recv(size, deadline)
            else:
                # the common case is one blocking receive (recv_now);
                # anything that bounds or interrupts it goes to recv
                data = transport.recv_now(READ_SIZE, deadline) or \
                    transport.recv(READ_SIZE, deadline,
                                   wait_first=wait_first)
        except socket.timeout:
            raise
        except OSError as exc:   # ConnectionLost included
            self._lost(exc)
            raise
        # when the peer was last heard: silence counts from here, not
        # from the heartbeat_tick that first notices these bytes
        self.last_read = monotonic()
        frames.feed(data)

    def _recv_failed(self, sock: socket.socket,
                     exc: Optional[OSError]) -> Optional[BaseException]:
        """The compiled reply loop's receive from ``sock`` raised ``exc``
        (None: the peer closed the stream): None to receive again, or
        what to raise, the connection marked lost where it is (as
        :meth:`_fill` after ``recv_now``)."""
        transport = self.transport
        if transport is None:
            return exc or ConnectionLost()
        failure = transport.receive_failed(sock, exc)
        if failure is not None and not isinstance(failure, socket.timeout):
            self._lost(failure)
        return failure

    @staticmethod
    def _fill_body(transport: AbstractTransport, frames: FrameBuffer,
                   deadline: Optional[float], exact: bool) -> bool:
        """Receive the rest of a large body straight into place when the
        buffer ends inside one; return whether it did."""
        if transport.can_scatter:
            # the rest of the body, and the frame boundaries in it, in one
            # scatter read (and, unless ``exact``, a little of what follows)
            views = frames.direct_targets(tail=not exact)
            if views is None:
                return False
            frames.direct_filled_many(transport.recv_into_many(views,
                                                               deadline))
            return True
        target = frames.direct_target()   # the rest of one body frame
        if target is None:
            return False
        frames.direct_filled(transport.recv_into(target, deadline))
        if transport.pending():   # TLS: what came along with it
            frames.feed(transport.recv(READ_SIZE, deadline))
        return True


def _names(methods: Sequence[spec.MethodSig]) -> str:
    return ', '.join(spec.method_name(m) or str(m) for m in methods)


def _copy(exc: BaseException) -> BaseException:
    """The connection's failure, to raise in one more thread: a copy, so
    that threads do not share (and extend) one traceback."""
    try:
        clone = copy.copy(exc)
    except Exception:  # an exception class that cannot be copied
        return RecoverableConnectionError(str(exc))
    clone.__traceback__ = None
    return clone
