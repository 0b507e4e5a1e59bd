"""Sending methods, waiting for replies and dispatching incoming methods.

Shared by :class:`~amqp.connection.Connection` (channel 0) and
:class:`~amqp.channel.Channel`.  Every incoming method is looked up in
:data:`amqp.spec.METHODS`; its arguments are decoded by the generated codec
for its signature and handed to the handler registered for it and to the
caller waiting for it, if any.

What a channel needs from its connection is a small interface, used by
name and never through private attributes: ``channels``,
``channel_ids``, ``frame_writer``, ``transport``, ``connected``,
``waiting_channel``, ``wait_until``, ``defer_error``, ``deferred_errors``,
``raise_deferred``
and ``forget_channel`` (see ``docs/design.rst``).  :class:`ConnectionLike`
spells that interface out for type checkers, so that this module never
imports the connection.
"""
from __future__ import annotations

import logging
import socket
from time import monotonic
from typing import (TYPE_CHECKING, Any, Callable, ContextManager, Dict, List,
                    Literal, Optional, Protocol, Sequence, Tuple, TypeVar,
                    Union, overload)

from vine import ensure_promise, promise

from . import spec
from .exceptions import (AMQPNotImplementedError, FrameSyntaxError,
                         ReadTimeout, RecoverableConnectionError,
                         ReplyTimeout)
from .reader import Lane
from .serialization import (Decoder, EncodableValue, FieldValue, decoder_for,
                            dumps_method)

if TYPE_CHECKING:
    from .basic_message import Message
    from .method_framing import FrameWriter, OversizedContent

__all__ = ('AbstractChannel', 'ConnectionLike', 'ChannelIdsLike',
           'TransportLike', 'MethodArg', 'MethodHandler')

logger = logging.getLogger('amqp')

_METHODS = spec.METHODS

_Self = TypeVar('_Self', bound='AbstractChannel')

#: What a method handler and a waiter receive: the decoded arguments, in
#: spec order, then the content message for a content method.
MethodArg = Union[FieldValue, 'Message']
#: A handler registered for a method (arguments as :data:`MethodArg`).
MethodHandler = Callable[..., object]


class ChannelIdsLike(Protocol):
    """The channel id allocator of a connection."""

    #: the highest id (the negotiated channel_max)
    limit: int

    def allocate(self) -> int:
        """Take the lowest free id."""

    def claim(self, channel_id: int) -> int:
        """Take ``channel_id``."""

    def release(self, channel_id: int) -> None:
        """Give ``channel_id`` back."""


class TransportLike(Protocol):
    """What a channel uses of the connection's transport."""

    def having_timeout(self, timeout: Optional[float]
                       ) -> ContextManager[object]:
        """Bound this thread's reads and writes inside the block."""

    @property
    def broken(self) -> Optional[str]:
        """Why writing is no longer possible (a write was cut off)."""

    @property
    def connected(self) -> bool:
        """True while the socket is open."""


class ConnectionLike(Protocol):
    """What a channel needs from its connection.

    All members are public and read-only from the channel's side.
    """

    @property
    def channels(self) -> Dict[int, AbstractChannel]:
        """Open channels by id (the connection itself is channel 0)."""

    @property
    def channel_ids(self) -> ChannelIdsLike:
        """Allocator of channel ids."""

    @property
    def frame_writer(self) -> Optional[FrameWriter]:
        """Writes a method (and its content) as frames; None once
        closed."""

    @property
    def transport(self) -> Optional[TransportLike]:
        """The transport; None once closed."""

    @property
    def connected(self) -> bool:
        """True while the connection is open."""

    @property
    def waiting_channel(self) -> Optional[AbstractChannel]:
        """The channel in a synchronous wait, or None."""

    @property
    def deferred_errors(self) -> List[Tuple[AbstractChannel, BaseException]]:
        """Errors kept for channels, oldest first (see raise_deferred)."""

    def wait_until(self, channel: AbstractChannel, done: Callable[[], object],
                   deadline: Optional[float],
                   methods: Sequence[spec.MethodSig] = ()) -> None:
        """Handle frames for ``channel`` until ``done()``."""

    def defer_error(self, channel: AbstractChannel,
                    exc: BaseException) -> None:
        """Keep ``exc`` until it can be raised for ``channel``."""

    def raise_deferred(self, channel: Optional[AbstractChannel] = None
                       ) -> None:
        """Raise the oldest deferred error of ``channel``, if any."""

    def forget_channel(self, channel: AbstractChannel,
                       awaiting_close_ok: bool = False) -> None:
        """Unregister a channel that is gone."""

    def note_consumer(self, channel: AbstractChannel) -> None:
        """``channel`` registered a consumer (deliveries may follow
        replies on the connection from now on)."""

    @property
    def reply_timeout(self) -> Optional[float]:
        """Default bound on a synchronous method's reply (None: none)."""


#: method signature -> (its spec, the decoder of its arguments or None
#: when it has none, whether content follows it); filled as methods come
_DISPATCH: Dict[spec.MethodSig,
                Tuple[spec.MethodSpec, Optional[Decoder], bool]] = {}


def _dispatch_entry(method_sig: spec.MethodSig
                    ) -> Tuple[spec.MethodSpec, Optional[Decoder], bool]:
    """``_DISPATCH[method_sig]``, made the first time the method comes."""
    try:
        amqp_method = _METHODS[method_sig]
    except KeyError:
        raise AMQPNotImplementedError(
            'Unknown AMQP method {!r}'.format(method_sig)) from None
    entry = _DISPATCH[method_sig] = (
        amqp_method,
        decoder_for(amqp_method.args) if amqp_method.args else None,
        bool(amqp_method.content))
    return entry

#: what a left-out reserved field reads as, by format letter
_RESERVED_DEFAULTS: Dict[str, FieldValue] = {'s': '', 'S': '', 'b': False,
                                             'B': 0}


def _decode_without_reserved(amqp_method: spec.MethodSpec, payload: bytes
                             ) -> Optional[List[FieldValue]]:
    """Arguments of a method whose trailing *reserved* fields were left out
    (spec.TRAILING_RESERVED), the missing ones filled with their empty
    value; None for anything else (the payload must end exactly where the
    reserved fields would start)."""
    fmt = amqp_method.args
    for missing in range(1, spec.TRAILING_RESERVED.get(amqp_method.sig,
                                                       0) + 1):
        try:
            args, end = decoder_for(fmt[:-missing])(
                payload, spec.METHOD_ARGS_OFFSET)
        except FrameSyntaxError:
            continue
        if end == len(payload):
            return args + [_RESERVED_DEFAULTS[letter]
                           for letter in fmt[-missing:]]
    return None


class _Reply(List[Any]):
    """What a synchronous call waits on when it was given no callback:
    empty until the reply is dispatched, then ``[method_sig, *arguments]``
    (a vine promise costs several times more to make and fulfil, once per
    round trip).  A list, so that the wait's condition is its bound
    ``__len__``, which costs no Python frame each time it is asked."""

    __slots__ = ()

    def __call__(self, *args: Any) -> None:
        if not self:
            self.extend(args)

    @property
    def ready(self) -> bool:
        return bool(self)

    @property
    def args(self) -> Tuple[Any, ...]:
        """(method_sig, *arguments), or () before the reply."""
        return tuple(self)


#: what ``_pending`` holds: the caller's promise, or a :class:`_Reply`
Waiter = Union[promise, _Reply]


class AbstractChannel:
    """Superclass for Connection and Channel.

    Subclasses fill ``self._callbacks`` (method_sig -> handler) in
    ``_setup_listeners``.  ``self._pending`` maps a method signature to the
    promise (or :class:`_Reply`) of the caller waiting for it.
    """

    #: methods accepted on a channel that is closing (spec 2.2.3: everything
    #: else is discarded until close-ok)
    _ALLOWED_METHODS_WHEN_CLOSING: Tuple[spec.MethodSig, ...] = ()

    def __init__(self, connection: ConnectionLike, channel_id: int) -> None:
        self.is_closing = False
        #: None once the channel is closed
        self.connection: Optional[ConnectionLike] = connection
        self.channel_id = channel_id
        #: what arrived for this channel and who handles it (the
        #: connection's reader uses it; see :mod:`amqp.reader`)
        self.lane = Lane()
        connection.channels[channel_id] = self
        # py-amqp attribute, kept for compatibility
        self.method_queue: List[object] = []
        self.auto_decode = False
        self._pending: Dict[spec.MethodSig, Waiter] = {}
        self._callbacks: Dict[spec.MethodSig, MethodHandler] = {}
        self._setup_listeners()

    def _setup_listeners(self) -> None:
        raise NotImplementedError('subclass responsibility')

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send_method(
            self, sig: spec.MethodSig, format: Optional[str] = None,
            args: Optional[Sequence[EncodableValue]] = None,
            content: Optional[Message] = None,
            wait: Union[spec.MethodSig, List[spec.MethodSig], None] = None,
            callback: Optional[Callable[..., object]] = None,
            returns_tuple: bool = False
    ) -> Union[promise, MethodArg, Tuple[MethodArg, ...]]:
        """Send method ``sig`` with ``args`` serialized by ``format``.

        Arguments are encoded before anything is written, so bad input
        raises TypeError/ValueError with nothing sent.  With ``wait``
        (a reply signature or a list of them) block for the reply, at most
        the connection's ``reply_timeout``, and return its arguments (see
        :meth:`wait` and :meth:`wait_reply`).  The reply is expected before
        the method is written, so that another thread reading the
        connection hands it to this call however fast it comes.
        """
        conn = self.connection
        if conn is None:
            raise RecoverableConnectionError(
                'channel %r is closed' % (self.channel_id,))
        payload = dumps_method(sig, format, args or ()) if format else b''
        writer = conn.frame_writer
        if writer is None:
            raise RecoverableConnectionError('connection already closed')
        if wait and callback is None and not self._wait_replaced():
            return self._call(sig, payload, content,
                              wait if isinstance(wait, list) else [wait],
                              returns_tuple, conn.reply_timeout, writer)
        writer(spec.FRAME_METHOD, self.channel_id, sig, payload, content)
        p = None
        if callback:   # py-amqp's: a promise of the send, fulfilled now
            p = promise()
            p.then(callback)
            p()
        if wait:
            return self.wait_reply(wait, returns_tuple=returns_tuple)
        return p

    def _call(self, sig: spec.MethodSig, payload: bytes,
              content: Optional[Message], methods: List[spec.MethodSig],
              returns_tuple: bool, timeout: Optional[float],
              writer: Optional[FrameWriter] = None, abandon: bool = True
              ) -> Union[MethodArg, Tuple[MethodArg, ...]]:
        """Write a method and wait for one of ``methods``, the reply
        registered first.  ``timeout`` bounds the wait; when it (or the
        read bound) runs out, raises :class:`~amqp.exceptions.ReplyTimeout`
        after :meth:`_abandon_wait` (with ``abandon``; else the plain
        ``socket.timeout``)."""
        conn = self.connection
        if conn is None:
            raise RecoverableConnectionError(
                'channel %r is closed' % (self.channel_id,))
        if writer is None:
            writer = conn.frame_writer
            if writer is None:
                raise RecoverableConnectionError('connection already closed')
        p = _Reply()
        pending = self._pending
        # (usually nothing else waits on this channel: then whatever is
        # left in ``pending`` afterwards is this call's)
        previous = self._expect(methods, p) if pending else None
        if previous is None:
            for m in methods:
                pending[m] = p
        try:
            writer(spec.FRAME_METHOD, self.channel_id, sig, payload, content)
            deadline = None if timeout is None else monotonic() + timeout
            try:
                conn.wait_until(self, p.__len__, deadline, methods)
                # after the reply is in hand, so that raising does not
                # lose it
                if conn.deferred_errors:
                    conn.raise_deferred(self)
                args = tuple(p[1:])
            except ReplyTimeout:
                raise
            except socket.timeout as exc:
                if not abandon:
                    raise
                raise self._timed_out(exc, methods, timeout) from None
        finally:
            if previous is None:
                pending.clear()
            else:
                self._unexpect(previous, p)
        if returns_tuple:
            return args
        return args[0] if args else None

    def _wait_replaced(self) -> bool:
        """True when :meth:`wait` was replaced on this channel or its
        class (kombu's tests do): replies must then go through it.

        (Asked of the bound method: reading the instance's ``__dict__``
        would make CPython keep the channel's attributes in a real dict,
        and every attribute access slower, from then on.)"""
        return getattr(self.wait, '__func__', None) is not _WAIT

    def _plain_calls(self) -> bool:
        """True unless :meth:`wait` or :meth:`send_method` was replaced
        (on this channel or its class): a call that would go through them
        may then skip them."""
        return getattr(self.send_method, '__func__', None) is _SEND_METHOD \
            and getattr(self.wait, '__func__', None) is _WAIT

    def _expect(self, methods: List[spec.MethodSig], p: Waiter
                ) -> List[Tuple[spec.MethodSig, Optional[Waiter]]]:
        """Register ``p`` for ``methods``; return what it replaced."""
        pending = self._pending
        previous = []
        for m in methods:
            previous.append((m, pending.get(m)))
            pending[m] = p
        return previous

    def _unexpect(self, previous: List[Tuple[spec.MethodSig,
                                             Optional[Waiter]]],
                  p: Waiter) -> None:
        pending = self._pending
        for m, prev in previous:
            if prev is None:
                if pending.get(m) is p:
                    del pending[m]
            else:
                pending[m] = prev

    def _await(self, conn: ConnectionLike, p: Waiter,
               methods: List[spec.MethodSig], deadline: Optional[float]
               ) -> Tuple[MethodArg, ...]:
        """Wait for the registered ``p``; return the reply's arguments."""
        conn.wait_until(self, lambda: p.ready, deadline, methods)
        # after the reply is in hand, so that raising does not lose it
        if conn.deferred_errors:
            conn.raise_deferred(self)
        # the waiter was called with (method_sig, *arguments)
        if isinstance(p, _Reply):
            return p.args[1:]
        value = p.value
        return value[0][1:] if value else ()

    def _timed_out(self, exc: socket.timeout, methods: List[spec.MethodSig],
                   timeout: Optional[float]) -> ReplyTimeout:
        """The ReplyTimeout for a wait that ran out, after making sure a
        late reply cannot confuse a later call (:meth:`_abandon_wait`)."""
        names = ' or '.join(spec.method_name(m) or str(m) for m in methods)
        if isinstance(exc, ReadTimeout):
            text = 'no %s on channel %s: %s' % (names, self.channel_id, exc)
        else:
            text = 'no %s within %ss on channel %s' % (names, timeout,
                                                       self.channel_id)
        error = ReplyTimeout(text, methods[0])
        self._abandon_wait(error)
        return error

    @overload
    def wait_reply(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
                   returns_tuple: Literal[False] = False,
                   timeout: Optional[float] = None) -> MethodArg: ...

    @overload
    def wait_reply(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
                   returns_tuple: Literal[True],
                   timeout: Optional[float] = None
                   ) -> Tuple[MethodArg, ...]: ...

    @overload
    def wait_reply(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
                   returns_tuple: bool = False,
                   timeout: Optional[float] = None
                   ) -> Union[MethodArg, Tuple[MethodArg, ...]]: ...

    def wait_reply(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
                   returns_tuple: bool = False,
                   timeout: Optional[float] = None
                   ) -> Union[MethodArg, Tuple[MethodArg, ...]]:
        """Wait for the reply to a method just sent, like :meth:`wait`,
        but never forever: ``timeout`` defaults to the connection's
        ``reply_timeout`` (None there: no limit).

        When it runs out, raises :class:`~amqp.exceptions.ReplyTimeout`
        after making sure the late reply cannot confuse a later call: a
        channel is closed (its id reserved until close-ok), the connection
        closes itself.
        """
        conn = self.connection
        if timeout is None and conn is not None:
            timeout = conn.reply_timeout
        try:
            return self.wait(method, returns_tuple=returns_tuple,
                             timeout=timeout)
        except ReplyTimeout:
            raise
        except socket.timeout as exc:
            raise self._timed_out(
                exc, method if isinstance(method, list) else [method],
                timeout) from None

    def _abandon_wait(self, exc: ReplyTimeout) -> None:
        """A reply did not come in time: leave no state that a late reply
        could corrupt (subclass responsibility)."""
        raise NotImplementedError('subclass responsibility')

    def close(self) -> object:
        """Close this channel (subclass responsibility)."""
        raise NotImplementedError('must be overridden by subclass')

    def collect(self) -> None:
        """Drop this channel's state without network I/O (subclass
        responsibility)."""
        raise NotImplementedError('must be overridden by subclass')

    @overload
    def wait(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
             callback: Optional[Callable[..., object]] = None,
             timeout: Optional[float] = None,
             returns_tuple: Literal[False] = False) -> MethodArg: ...

    @overload
    def wait(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
             callback: Optional[Callable[..., object]],
             timeout: Optional[float],
             returns_tuple: Literal[True]) -> Tuple[MethodArg, ...]: ...

    @overload
    def wait(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
             callback: Optional[Callable[..., object]] = None,
             timeout: Optional[float] = None, *,
             returns_tuple: Literal[True]) -> Tuple[MethodArg, ...]: ...

    @overload
    def wait(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
             callback: Optional[Callable[..., object]] = None,
             timeout: Optional[float] = None,
             returns_tuple: bool = False
             ) -> Union[MethodArg, Tuple[MethodArg, ...]]: ...

    def wait(self, method: Union[spec.MethodSig, List[spec.MethodSig]],
             callback: Optional[Callable[..., object]] = None,
             timeout: Optional[float] = None,
             returns_tuple: bool = False
             ) -> Union[MethodArg, Tuple[MethodArg, ...]]:
        """Drain events until one of ``method`` (sig or list) arrives.

        Returns the reply's first argument (or all of them as a tuple with
        ``returns_tuple``).  ``timeout`` bounds the whole wait and raises
        ``socket.timeout`` when it runs out; ``read_timeout`` bounds each
        silence of the broker.  (A reply that another thread may read
        before this call starts is expected with :meth:`send_method`'s
        ``wait`` instead.)
        """
        p: Waiter = _Reply() if callback is None else ensure_promise(callback)
        methods = method if isinstance(method, list) else [method]
        conn = self.connection
        if conn is None:
            raise RecoverableConnectionError(
                'channel %r is closed' % (self.channel_id,))
        previous = self._expect(methods, p)
        deadline = None if timeout is None else monotonic() + timeout
        try:
            args = self._await(conn, p, methods, deadline)
        finally:
            self._unexpect(previous, p)
        if returns_tuple:
            return args
        return args[0] if args else None

    def settles_quietly(self) -> bool:
        """Whether a publisher confirm arriving now would run no
        application code (channels in confirm mode say; see
        :class:`amqp.channel.Channel`)."""
        return False

    def dispatch_method(self, method_sig: spec.MethodSig, payload: bytes,
                        content: Union[Message, OversizedContent, None]
                        ) -> None:
        """Decode an incoming method and call its handler and waiter."""
        if self.is_closing and method_sig not in \
                self._ALLOWED_METHODS_WHEN_CLOSING:
            # spec 2.2.3: a closing channel discards all but close/close-ok
            logger.debug('channel %s closing: dropping %s', self.channel_id,
                         method_sig)
            return
        entry = _DISPATCH.get(method_sig)
        if entry is None:
            entry = _dispatch_entry(method_sig)
        amqp_method, decode, has_content = entry
        listener = self._callbacks.get(method_sig)
        one_shot = self._pending.pop(method_sig, None)
        if listener is None and one_shot is None:
            logger.debug('channel %s: no handler for %s', self.channel_id,
                         amqp_method.name)
            return
        if decode is not None:
            try:
                args, _ = decode(payload, spec.METHOD_ARGS_OFFSET)
            except FrameSyntaxError:
                lenient = _decode_without_reserved(amqp_method, payload)
                if lenient is None:
                    raise
                args = lenient
        else:
            args = []
        if has_content:
            # The content message rides as the last argument: the decoded
            # list is extended in place, not copied, once per delivery.
            args.append(content)  # type: ignore[arg-type]
        if listener is not None:
            listener(*args)
        if one_shot is not None:
            if one_shot.__class__ is _Reply:
                # (what its __call__ does, without the call through the
                # class's __call__ slot: once per round trip)
                if not one_shot:
                    one_shot.append(method_sig)
                    one_shot += args
            else:
                one_shot(method_sig, *args)
        conn = self.connection
        if conn is not None and conn.deferred_errors and \
                conn.waiting_channel is None:
            conn.raise_deferred(self)  # dispatched from drain_events


#: the stock :meth:`AbstractChannel.wait`, to tell when it was replaced
_WAIT = AbstractChannel.wait
#: the stock :meth:`AbstractChannel.send_method`
_SEND_METHOD = AbstractChannel.send_method
