"""Frames in, method calls out, and back (AMQP 0-9-1 sections 2.3.5, 4.2).

Pure: no sockets, no clocks.  Bytes go in and complete methods come out,
as in h11; the connection decides when to read and what to do with them.

``FrameBuffer`` is the read-ahead buffer: ``feed(data)`` appends what the
transport received, ``next_frame()`` returns ``(frame_type, channel_id,
payload)`` once a whole frame is buffered.  :func:`method_end` tells where
the first complete method (with its content frames) ends in a byte string,
so a reply wait can read no byte past its reply.

``frame_handler(connection, callback)`` returns ``on_frame(frame)``: fed
frames, it assembles a content method with its header and body frames and
calls ``callback(channel_id, method_sig, payload, content)`` once per
method.  ``payload`` is the whole method frame payload (arguments start at
offset 4), ``content`` a :class:`~amqp.basic_message.Message` or None.

``frame_writer(connection, transport)`` returns
``write_frame(frame_type, channel_id, method_sig, args, content=None)``,
which writes a method (``args`` already serialized) and its content as
frames, the body split at ``connection.frame_max``; a message that fits
goes out in a single ``transport.write`` call.

What the two factories need of the connection and the transport is
described by the protocols :class:`InboundConnection`,
:class:`OutboundConnection` and :class:`ByteSink`; no class is imported.
"""
from __future__ import annotations

import struct
from typing import (Any, Callable, Dict, FrozenSet, List, Optional,
                    Protocol, Tuple, Union, final)

from . import spec
from .basic_message import Message, OutboundBody, serialized_properties
from .exceptions import FrameError, FrameSyntaxError, UnexpectedFrame
from .serialization import (decode_header_frame_payload,
                            encode_properties_basic, speedups)

__all__ = ('FrameBuffer', 'frame_reader', 'frame_handler', 'frame_writer',
           'method_end',
           'HEARTBEAT_FRAME', 'OversizedContent', 'Frame', 'FrameWriter',
           'FrameHandler', 'MethodCallback', 'InboundConnection',
           'OutboundConnection', 'ByteSink')

#: ``(frame_type, channel_id, payload)``
Frame = Tuple[int, int, bytes]
#: ``callback(channel_id, method_sig, method payload, content)``, called
#: once per complete method by :func:`frame_handler`'s ``on_frame``.
MethodCallback = Callable[
    [int, spec.MethodSig, bytes, Union[Message, 'OversizedContent', None]],
    object]
#: ``on_frame(frame)``: True once a frame completed a method.
FrameHandler = Callable[[Frame], bool]


class FrameWriter(Protocol):
    """What :func:`frame_writer` returns (``content`` is optional)."""

    def __call__(self, type_: int, channel: int, method_sig: spec.MethodSig,
                 args: Optional[bytes],
                 content: Optional[Message[OutboundBody]] = None
                 ) -> None: ...


class InboundConnection(Protocol):
    """What :func:`frame_handler` needs of the connection."""

    #: frames received (heartbeat liveness is judged on it)
    bytes_recv: int


class OutboundConnection(Protocol):
    """What :func:`frame_writer` needs of the connection."""

    #: frames written
    bytes_sent: int

    @property
    def frame_max(self) -> Optional[int]:
        """Largest frame, envelope included (None or 0: no limit)."""


class ByteSink(Protocol):
    """What :func:`frame_writer` needs of the transport."""

    def write(self, s: bytes) -> None:
        """Send all of ``s``."""

_FRAME_METHOD = spec.FRAME_METHOD
_FRAME_HEADER_TYPE = spec.FRAME_HEADER
_FRAME_BODY = spec.FRAME_BODY
_FRAME_HEARTBEAT = spec.FRAME_HEARTBEAT
_FRAME_END_OCTET = spec.FRAME_END
_FRAME_END = spec.FRAME_END_BYTE
_OVERHEAD = spec.FRAME_OVERHEAD
_BASIC = spec.Basic.CLASS_ID

_METHOD_SIG = struct.Struct('>HH')
_U64 = struct.Struct('>Q')
# type, channel, payload size
_FRAME_HEADER = struct.Struct('>BHI')
_FRAME_HEADER_SIZE = _FRAME_HEADER.size
# frame header + class id + method id
_METHOD_FRAME_HEADER = struct.Struct('>BHIHH')
# end of the previous frame + a content header frame's header: frame
# header, class id, weight, body size
_END_CONTENT_HEADER = struct.Struct('>BBHIHHQ')
# end of the previous frame + a body frame's header
_END_FRAME_HEADER = struct.Struct('>BBHI')
# content header payload before the property flags: class, weight, size
_CONTENT_HEADER_FIXED = 12

#: A heartbeat frame, as sent on the wire (spec 4.2.7).
HEARTBEAT_FRAME = _FRAME_HEADER.pack(_FRAME_HEARTBEAT, 0, 0) + _FRAME_END

#: Bodies at least this large are written scatter-gather, not joined.
_SCATTER_MIN = 32768
#: methods written with the transport's ``write_held``: acknowledgements,
#: which a consumer sends once per delivery (keep in step with
#: is_held_method in _speedups.c)
_HELD_METHODS = frozenset((spec.Basic.Ack, spec.Basic.Nack,
                           spec.Basic.Reject))

#: Bytes a single read asks for while no larger frame is pending.
READ_SIZE = 65536
#: Most body frames one scatter read (FrameBuffer.direct_targets) plans
#: for: two buffers each, well under IOV_MAX.
SCATTER_FRAMES = 32

#: Largest collection buffer kept for reuse (bigger bodies get their own).
REUSE_MAX = 16 * 1024 * 1024

#: Largest body FrameBuffer collects into one buffer when nothing smaller
#: (max_message_size) is set.
COLLECT_MAX = 1 << 31

_METHODS = spec.METHODS
#: every known method signature, mapped to itself: the compiled frame
#: handler hands out these tuples (spec's constants), not equal copies
_SIGS: Dict[spec.MethodSig, spec.MethodSig] = {sig: sig for sig in _METHODS}
_CONTENT_METHODS = spec.CONTENT_METHODS

#: ``body_buffer(n) -> (bytes, writable memoryview)`` from the compiled
#: module, or None: large bodies then collect in a bytearray, copied out
#: once complete.
_body_buffer = None if speedups is None else speedups.body_buffer


class FrameBuffer:
    """Incremental frame parser: feed bytes, take complete frames.

    ``feed(data)`` appends, ``next_frame()`` returns ``(frame_type,
    channel, payload)`` or None when no complete frame is buffered.
    ``max_payload`` bounds what a frame header may announce; a larger size,
    or a bad frame-end octet, raises FrameError before any allocation for
    it.  A partial frame stays buffered until the rest is fed.

    Large bodies are *collected*: once a content header announces a body
    of at least ``collect_min`` bytes (and at most ``max_body``), the
    payloads of that channel's body frames are copied into one buffer of
    the body's size as they are parsed, and a single body frame carrying
    the whole body is returned when it is complete.  While the buffer ends
    inside such a body frame, :meth:`direct_target` hands out the place in
    the body where the rest of that frame's payload belongs, so the caller
    can receive it there straight from the socket (``recv_into``) and
    report it with :meth:`direct_filled`: each body byte is then copied
    once on its way in, instead of once per buffering step.
    """

    __slots__ = ('buf', 'pos', 'max_payload', 'max_body', 'collect_min',
                 '_body', '_body_view', '_body_size', '_body_channel',
                 '_body_filled',
                 '_spare', '_chunk', '_plan', '_trailers', '_tail',
                 'collecting',
                 '_direct_left', '_end_pending')

    #: bytes as read; a bytearray while a large frame collects
    buf: Union[bytes, bytearray]
    pos: int
    max_payload: int
    #: largest body collected into one buffer (larger ones are left to the
    #: frame handler, which refuses what max_message_size refuses)
    max_body: int
    collect_min: int
    #: the body being collected: a bytearray, or with the compiled
    #: module the bytes object that the message will keep
    _body: Union[bytearray, bytes, None]
    #: the body's place: made on first use (see _view)
    _body_view: Optional[memoryview]
    #: size of the body being collected (0 when none is)
    _body_size: int
    _body_channel: int
    _body_filled: int
    _direct_left: int
    _end_pending: bool
    #: payload size of the body frame being received: the size expected
    #: of the body frames that follow it (a peer splits at one size)
    _chunk: int
    #: the views handed out by direct_targets, until direct_filled_many
    _plan: Optional[List[memoryview]]
    _trailers: Optional[memoryview]
    _tail: Optional[memoryview]

    def __init__(self,
                 max_payload: int = spec.FRAME_MIN_SIZE - _OVERHEAD) -> None:
        #: the collection buffer kept for the next body (up to REUSE_MAX):
        #: a fresh megabyte per message costs more than copying it
        self._spare: Optional[bytearray] = None
        self._plan = None
        self._trailers = None
        self._tail = None
        self.buf = b''
        self.pos = 0
        self.max_payload = max_payload
        self.max_body = COLLECT_MAX
        self.collect_min = READ_SIZE
        self._end_body()

    def _end_body(self) -> None:
        #: a large body is being collected (direct_target may offer a
        #: place to receive into)
        self.collecting = False
        self._body = None
        self._body_view = None
        self._body_size = 0
        # (views of a body given out for a scatter read that did not
        # happen go with it)
        self._plan = None
        self._body_channel = -1
        self._body_filled = 0
        self._direct_left = 0
        self._end_pending = False
        self._chunk = 0

    def __len__(self) -> int:
        return len(self.buf) - self.pos

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> None:
        # Usually every frame of the last read was consumed: the new read
        # becomes the buffer as is, and payloads are sliced out of bytes in
        # one copy.  A large partial frame collects in a bytearray instead,
        # so assembling it is not quadratic.
        buf = self.buf
        pos = self.pos
        rest = len(buf) - pos
        if rest <= 0:
            self.buf = bytes(data)
        elif rest < READ_SIZE and type(buf) is bytes:
            self.buf = buf[pos:] + data
        else:
            if isinstance(buf, bytes):
                buf = bytearray(buf[pos:])
            elif pos:
                del buf[:pos]
            buf += data
            self.buf = buf
        self.pos = 0

    def next_frame(self) -> Optional[Frame]:
        """Take the next complete frame, or return None."""
        while True:
            buf = self.buf
            pos = self.pos
            if self.collecting:
                if self._direct_left:
                    return None     # the rest of a frame goes to the body
                if self._end_pending:
                    # after a payload received straight into the body
                    if len(buf) - pos < 1:
                        return None
                    self._check_end(buf, pos)
                    self.pos = pos = pos + 1
                    self._end_pending = False
                    if self._body_filled == self._body_size:
                        return self._finish_body()
            if len(buf) - pos < _FRAME_HEADER_SIZE:
                return None
            frame_type, channel, size = _FRAME_HEADER.unpack_from(buf, pos)
            if size > self.max_payload:
                raise FrameError(
                    'frame of %d bytes announced; frame_max allows %d' % (
                        size, self.max_payload))
            end = pos + _FRAME_HEADER_SIZE + size
            if len(buf) <= end:
                return None
            if buf[end] != _FRAME_END_OCTET:
                self._check_end(buf, end)
            if self.collecting and channel == self._body_channel:
                if frame_type == _FRAME_BODY:
                    filled = self._body_filled
                    self._check_room(size)
                    view = self._view()
                    view[filled:filled + size] = memoryview(buf)[
                        pos + _FRAME_HEADER_SIZE:end]
                    self._body_filled = filled + size
                    self.pos = end + 1
                    if self._body_filled == self._body_size:
                        return self._finish_body()
                    continue
                # anything else cuts the content short: the frame handler
                # reports it; the collected part is dropped
                self._end_body()
            payload = buf[pos + _FRAME_HEADER_SIZE:end]
            if type(payload) is not bytes:
                payload = bytes(payload)
            self.pos = end + 1
            if frame_type == _FRAME_HEADER_TYPE and \
                    size >= _CONTENT_HEADER_FIXED:
                body_size: int = _U64.unpack_from(payload, 4)[0]
                if self.collect_min <= body_size <= self.max_body:
                    self._start_body(channel, body_size)
            return frame_type, channel, payload

    def _check_end(self, buf: Union[bytes, bytearray], end: int) -> None:
        if buf[end] != _FRAME_END_OCTET:
            raise FrameError('received frame_end %#04x while expecting %#04x'
                             % (buf[end], _FRAME_END_OCTET))

    def _check_room(self, size: int) -> None:
        if self._body_filled + size > self._body_size:
            raise UnexpectedFrame(
                'content body on channel %d longer than the %d bytes its '
                'header announced' % (self._body_channel, self._body_size))

    def _start_body(self, channel: int, body_size: int) -> None:
        # The place for the body is made when its first bytes arrive
        # (_view): by then the message before it has usually been
        # dispatched and freed, and its memory is reused.
        self.collecting = True
        self._body_size = body_size
        self._body_channel = channel
        self._body_filled = 0

    def _view(self) -> memoryview:
        """The place of the body being collected, made on first use."""
        view = self._body_view
        if view is not None:
            return view
        body_size = self._body_size
        if _body_buffer is not None and body_size > 1:
            # the body is received into the bytes object the message
            # keeps: no copy once it is complete
            self._body, view = _body_buffer(body_size)
        else:
            body = self._spare
            if body is None or len(body) < body_size:
                body = bytearray(body_size)
                if body_size <= REUSE_MAX:
                    self._spare = body
            self._body = body
            view = memoryview(body)[:body_size]
        self._body_view = view
        return view

    def _finish_body(self) -> Frame:
        view = self._view()
        body = self._body
        channel = self._body_channel
        self._end_body()
        if type(body) is bytes:
            # complete: nothing writes into it from here on
            view.release()
            return _FRAME_BODY, channel, body
        return _FRAME_BODY, channel, view.tobytes()

    def direct_target(self) -> Optional[memoryview]:
        """Where to receive the next bytes when a large body is being
        collected and the buffer ends inside one of its body frames (the
        part of the body that frame's payload fills), or None.

        The buffered part of that frame is taken over first; after
        receiving into the target, call :meth:`direct_filled`.
        """
        if not self.collecting or self._end_pending:
            return None
        filled = self._body_filled
        if self._direct_left:
            return self._view()[filled:filled + self._direct_left]
        buf = self.buf
        pos = self.pos
        have = len(buf) - pos - _FRAME_HEADER_SIZE
        if have < 0:
            return None
        frame_type, channel, size = _FRAME_HEADER.unpack_from(buf, pos)
        if frame_type != _FRAME_BODY or channel != self._body_channel or \
                size > self.max_payload or have >= size:
            return None      # next_frame deals with it
        self._check_room(size)
        self._chunk = size
        start = pos + _FRAME_HEADER_SIZE
        view = self._view()
        view[filled:filled + have] = memoryview(buf)[start:start + have]
        self.buf = b''
        self.pos = 0
        filled += have
        self._body_filled = filled
        self._direct_left = size - have
        return view[filled:filled + self._direct_left]

    def direct_filled(self, n: int) -> None:
        """``n`` bytes were received into the :meth:`direct_target`."""
        self._body_filled += n
        self._direct_left -= n
        if not self._direct_left:
            self._end_pending = True

    def direct_targets(self, max_frames: int = SCATTER_FRAMES,
                       tail: bool = False) -> Optional[List[memoryview]]:
        """Like :meth:`direct_target`, for one scatter read: the rest of
        the current body frame's payload, then for each further body frame
        (up to ``max_frames``) a place for the 8 bytes between payloads
        (frame-end octet and the next frame header) and the part of the
        body its payload fills, assuming the peer keeps splitting the body
        at the current frame's size; after the body's last frame, its
        frame-end octet and, with ``tail``, a scratch buffer for what
        follows.  Report what was received with
        :meth:`direct_filled_many`, which checks every header against the
        assumption and takes any bytes that do not fit it (a heartbeat in
        between, another split) as ordinary input.
        """
        first = self.direct_target()
        if first is None:
            return None
        view = self._body_view
        assert view is not None
        trailers = self._trailers
        if trailers is None or len(trailers) < (max_frames + 1) * _OVERHEAD:
            trailers = self._trailers = memoryview(
                bytearray((max_frames + 1) * _OVERHEAD))
        chunk = self._chunk
        at = self._body_filled + self._direct_left
        left = len(view) - at
        views = [first]
        t = 0
        while left and max_frames:
            views.append(trailers[t:t + _OVERHEAD])
            n = chunk if chunk < left else left
            views.append(view[at:at + n])
            at += n
            left -= n
            t += _OVERHEAD
            max_frames -= 1
        if not left:
            views.append(trailers[t:t + 1])
            if tail:
                if self._tail is None:
                    self._tail = memoryview(bytearray(READ_SIZE))
                views.append(self._tail)
        self._plan = views
        return views

    def direct_filled_many(self, n: int) -> None:
        """``n`` bytes were received into the :meth:`direct_targets`."""
        views = self._plan
        assert views is not None
        self._plan = None
        first = len(views[0])
        self.direct_filled(first if n > first else n)
        if n <= first:
            return
        n -= first
        i = 1
        last = len(views) - 1
        channel = self._body_channel
        # views[i] is the 8 bytes after a payload, views[i + 1] the next
        # payload's place in the body
        while i < last and n >= _OVERHEAD:
            trailer = views[i]
            if len(trailer) != _OVERHEAD or trailer[0] != _FRAME_END_OCTET:
                break
            part = views[i + 1]
            frame_type, frame_channel, size = _FRAME_HEADER.unpack_from(
                trailer, 1)
            if frame_type != _FRAME_BODY or frame_channel != channel or \
                    size != len(part):
                break
            n -= _OVERHEAD
            self._end_pending = False
            k = size if n > size else n
            self._body_filled += k
            n -= k
            if k < size:
                self._direct_left = size - k
                return
            self._end_pending = True
            i += 2
        if n:
            # from views[i] on (a frame-end octet first) the bytes are
            # ordinary input: whatever landed in body places beyond
            # _body_filled is copied out before it is overwritten
            parts = []
            for v in views[i:]:
                k = len(v) if n > len(v) else n
                parts.append(v[:k])
                n -= k
                if not n:
                    break
            self.feed(b''.join(parts))

    def take_content(self, channel: int) -> Optional[Tuple[bytes, bytes]]:
        """The content header payload and body of ``channel``'s content
        method just returned, when both are already buffered whole: the
        header frame next, then (unless the body is empty) one body frame
        carrying all of a body too small to be collected.  Consumes them;
        returns None and consumes nothing otherwise (anything unusual,
        malformed included, is left to :meth:`next_frame`)."""
        buf = self.buf
        pos = self.pos
        have = len(buf)
        if have - pos < _FRAME_HEADER_SIZE or self.collecting:
            return None
        frame_type, frame_channel, size = _FRAME_HEADER.unpack_from(buf, pos)
        end = pos + _FRAME_HEADER_SIZE + size
        if frame_type != _FRAME_HEADER_TYPE or frame_channel != channel or \
                size < _CONTENT_HEADER_FIXED or size > self.max_payload or \
                end >= have or buf[end] != _FRAME_END_OCTET:
            return None
        header = buf[pos + _FRAME_HEADER_SIZE:end]
        body_size: int = _U64.unpack_from(header, 4)[0]
        if not body_size:
            self.pos = end + 1
            return bytes(header), b''
        pos = end + 1
        if have - pos < _FRAME_HEADER_SIZE or body_size >= self.collect_min:
            return None
        frame_type, frame_channel, size = _FRAME_HEADER.unpack_from(buf, pos)
        end = pos + _FRAME_HEADER_SIZE + size
        if frame_type != _FRAME_BODY or frame_channel != channel or \
                size != body_size or end >= have or \
                buf[end] != _FRAME_END_OCTET:
            return None
        body = buf[pos + _FRAME_HEADER_SIZE:end]
        self.pos = end + 1
        if type(buf) is bytes:
            return header, body    # type: ignore[return-value]
        return bytes(header), bytes(body)

    def has_frame(self) -> bool:
        """True when a complete frame is buffered (nothing is consumed)."""
        buf = self.buf
        pos = self.pos
        if self.collecting and (self._end_pending or
                                            self._direct_left):
            return False
        if len(buf) - pos < _FRAME_HEADER_SIZE:
            return False
        size: int = _FRAME_HEADER.unpack_from(buf, pos)[2]
        return len(buf) - pos >= size + _OVERHEAD

    def unread(self) -> bytes:
        """The buffered bytes not yet returned as frames."""
        return bytes(self.buf[self.pos:])

    def clear(self) -> None:
        """Forget everything buffered."""
        self.buf = b''
        self.pos = 0
        self._end_body()


def frame_reader(frames: FrameBuffer) -> Callable[[], Optional[Frame]]:
    """``frames.next_frame``, or its compiled twin for a plain
    :class:`FrameBuffer` when the compiled module is in use."""
    if speedups is not None and type(frames) is FrameBuffer:
        reader: Callable[[], Optional[Frame]] = speedups.NextFrame(frames)
        return reader
    return frames.next_frame


# final: a channel tells it from a Message by ``type(x) is
# OversizedContent`` (the cheapest test), which narrows only a final class.
@final
class OversizedContent:
    """Stands in for the content of a message whose header announced more
    than ``connection.max_message_size`` bytes: its body frames were
    counted and dropped as they arrived, never stored."""

    __slots__ = ('body_size', 'properties', 'limit')

    def __init__(self, body_size: int, properties: Dict[str, Any],
                 limit: int) -> None:
        self.body_size = body_size
        self.properties = properties
        self.limit = limit

    def __repr__(self) -> str:
        return '<OversizedContent %d bytes (limit %d)>' % (self.body_size,
                                                           self.limit)


def frame_handler(connection: InboundConnection, callback: MethodCallback,
                  content_methods: FrozenSet[spec.MethodSig] = _CONTENT_METHODS
                  ) -> FrameHandler:
    """Return a function that turns frames into complete method calls.

    ``connection.bytes_recv`` is incremented for every frame (heartbeat
    liveness is judged on it).  A content header announcing more than
    ``connection.max_message_size`` bytes (when set) makes the body be
    skipped as it streams in; the method is then dispatched with an
    :class:`OversizedContent` instead of a Message.  Out-of-order frames
    raise
    :class:`~amqp.exceptions.UnexpectedFrame`; malformed ones
    :class:`~amqp.exceptions.FrameSyntaxError`.
    """
    # channel id -> [method_sig, method payload, Message, chunks, remaining]
    # A list, not an object, because one is built per delivery; a list
    # cannot be typed by position, hence Any.
    partial: Dict[int, List[Any]] = {}
    # (chunks is None while an oversized body is being skipped)

    # Where the connection offers the buffer its frames come from, a
    # content method whose header and body are buffered whole is handled
    # in one call here, not three.
    frames: Optional[FrameBuffer] = getattr(connection, 'inbound_frames',
                                            None)
    take_content = None if frames is None else \
        frames.take_content if speedups is None or \
        type(frames) is not FrameBuffer else speedups.ContentTaker(frames)

    def on_frame(frame: Frame) -> bool:
        frame_type, channel, buf = frame
        connection.bytes_recv += 1
        if frame_type == _FRAME_METHOD:
            if channel in partial:
                raise UnexpectedFrame(
                    'method frame on channel %d while its content was still '
                    'arriving' % channel)
            if len(buf) < _METHOD_SIG.size:
                raise FrameSyntaxError(
                    'method frame of %d bytes has no method id' % len(buf))
            method_sig = _METHOD_SIG.unpack_from(buf, 0)
            if method_sig in content_methods:
                whole = None if take_content is None else \
                    take_content(channel)
                if whole is None:
                    partial[channel] = [method_sig, buf, None, [], 0]
                    return False
                connection.bytes_recv += 2 if whole[1] else 1
                content = _content(whole[0], whole[1], method_sig, buf)
                callback(channel, method_sig, buf, content)
                return True
            if method_sig not in _METHODS:
                raise UnexpectedFrame(
                    'unknown method %d.%d on channel %d' % (
                        method_sig[0], method_sig[1], channel))
            callback(channel, method_sig, buf, None)
            return True
        if frame_type == _FRAME_BODY:
            state = partial.get(channel)
            if state is None or state[2] is None:
                raise UnexpectedFrame(
                    'content body frame on channel %d without a content '
                    'header' % channel)
            remaining = state[4] - len(buf)
            if remaining < 0:
                raise UnexpectedFrame(
                    'content body on channel %d longer than the %d bytes its '
                    'header announced' % (channel, state[2].body_size))
            chunks = state[3]
            if chunks is not None:
                chunks.append(buf)
            if remaining:
                state[4] = remaining
                return False
            msg = state[2]
            if chunks is not None:
                msg.body = chunks[0] if len(chunks) == 1 \
                    else b''.join(chunks)
            del partial[channel]
            callback(channel, state[0], state[1], msg)
            return True
        if frame_type == _FRAME_HEADER_TYPE:
            state = partial.get(channel)
            if state is None or state[2] is not None:
                raise UnexpectedFrame(
                    'content header frame on channel %d without a content '
                    'method before it' % channel)
            content = _content(buf, b'', state[0], state[1])
            body_size = content.body_size
            state[2] = content
            state[4] = body_size
            if type(content) is OversizedContent:
                state[3] = None     # its body frames are counted, not kept
                return False
            if not body_size:
                del partial[channel]
                callback(channel, state[0], state[1], content)
                return True
            return False
        if frame_type == _FRAME_HEARTBEAT:
            if channel:
                raise FrameError('heartbeat frame on channel %d; heartbeats '
                                 'belong on channel 0' % channel)
            return False
        raise FrameError('unknown frame type %r' % (frame_type,))

    def _content(header: bytes, body: bytes, method_sig: spec.MethodSig,
                 method_payload: bytes) -> Union[Message, OversizedContent]:
        """The content a header announces: a Message (with ``body``), or
        an OversizedContent when it exceeds max_message_size."""
        _class_id, body_size, properties = decode_header_frame_payload(header)
        limit = getattr(connection, 'max_message_size', None)
        if limit and body_size > limit:
            return OversizedContent(body_size, properties, limit)
        msg = Message(b'')
        msg.body = body
        msg.properties = properties  # ours already: no copy
        msg.frame_method = method_sig
        msg.frame_args = method_payload
        msg.body_size = body_size
        return msg

    if speedups is not None and take_content is not None:
        # the compiled twin: method frames (content taken whole included)
        # handled in one call; everything else goes to on_frame
        handler: FrameHandler = speedups.FrameHandler(
            on_frame, partial, connection, callback, content_methods,
            _SIGS, take_content, Message, _content)
        return handler
    return on_frame


def method_end(buf: Union[bytes, bytearray], pos: int = 0) -> Optional[int]:
    """Offset in ``buf`` where the first complete method ends, or None.

    A method is one frame, or for a content method (basic.deliver,
    get-ok, return) its method, header and body frames.  Used to read no
    byte past a reply while peeking at the socket; malformed input is left
    for :func:`frame_handler` to reject (the first frame's end is returned,
    so that it gets read and parsed).
    """
    size: int
    body_size: int
    have = len(buf)
    if have - pos < _FRAME_HEADER_SIZE:
        return None
    frame_type, _channel, size = _FRAME_HEADER.unpack_from(buf, pos)
    end = pos + size + _OVERHEAD
    if have < end:
        return None
    if frame_type != _FRAME_METHOD or size < _METHOD_SIG.size or \
            _METHOD_SIG.unpack_from(buf, pos + _FRAME_HEADER_SIZE) \
            not in _CONTENT_METHODS:
        return end
    if have - end < _FRAME_HEADER_SIZE:
        return None
    frame_type, _channel, size = _FRAME_HEADER.unpack_from(buf, end)
    if frame_type != _FRAME_HEADER_TYPE or size < _CONTENT_HEADER_FIXED:
        return end
    # content header: class id, weight, body size after the frame header
    if have - end < _FRAME_HEADER_SIZE + _CONTENT_HEADER_FIXED:
        return None
    body_size = _U64.unpack_from(buf, end + _FRAME_HEADER_SIZE + 4)[0]
    end += size + _OVERHEAD
    while body_size > 0:
        if have - end < _FRAME_HEADER_SIZE:
            return None
        frame_type, _channel, size = _FRAME_HEADER.unpack_from(buf, end)
        if frame_type != _FRAME_BODY or not size:
            return end
        body_size -= size
        end += size + _OVERHEAD
    return end if have >= end else None


def _too_large(what: str, method_sig: spec.MethodSig, size: int,
               frame_max: int) -> ValueError:
    return ValueError('%s frame for %s is %d bytes; frame_max is %d' % (
        what, _METHODS[method_sig].name if method_sig in _METHODS
        else method_sig, size, frame_max))


def frame_writer(connection: OutboundConnection,
                 transport: ByteSink) -> FrameWriter:
    """Return ``write_frame(type_, channel, method_sig, args, content)``.

    ``connection.frame_max`` bounds each frame (envelope included);
    ``connection.bytes_sent`` counts the frames written.  A method or
    content header frame that would exceed ``frame_max`` (huge arguments
    or headers) raises ValueError before anything is written: the broker
    would close the whole connection over it.
    """
    write = transport.write
    # acknowledgements, which may wait for the next write (ByteSinks
    # without write_held write them at once)
    write_held = getattr(transport, 'write_held', None) or write
    # scatter-gather: a large body goes out without being joined to its
    # frame headers first (ByteSinks without writev get one joined write)
    writev = getattr(transport, 'writev', None) or \
        (lambda parts: write(b''.join(parts)))
    # the envelope plus class id and method id
    method_overhead = _OVERHEAD + _METHOD_SIG.size
    # the envelope plus class id, weight and body size
    header_overhead = _OVERHEAD + _CONTENT_HEADER_FIXED

    def write_frame(type_: int, channel: int, method_sig: spec.MethodSig,
                    args: Optional[bytes],
                    content: Optional[Message[OutboundBody]] = None
                    ) -> None:
        args = args or b''
        frame_max = connection.frame_max
        size = len(args) + _METHOD_SIG.size
        if frame_max and len(args) + method_overhead > frame_max:
            raise _too_large('method', method_sig, len(args) +
                             method_overhead, frame_max)
        if content is None:
            (write_held if method_sig in _HELD_METHODS else write)(
                _METHOD_FRAME_HEADER.pack(
                    type_, channel, size, method_sig[0], method_sig[1]
                ) + args + _FRAME_END)
            connection.bytes_sent += 1
            return
        body = content.body
        properties = content.properties
        if type(body) is not bytes:
            if isinstance(body, str):
                encoding = properties.get('content_encoding')
                if encoding is None:  # unset and None both mean UTF-8
                    encoding = properties['content_encoding'] = 'utf-8'
                # a content_encoding that is not a str makes encode()
                # raise TypeError, as in py-amqp
                body = body.encode(encoding)  # type: ignore[arg-type]
            elif body is None:
                body = b''
            else:
                # len() of a memoryview over wide items counts items
                body = memoryview(body).cast('B')
        if type(content) is Message:
            props = encode_properties_basic(properties)
        else:  # a subclass may serialize its own (py-amqp's hook)
            props = serialized_properties(content)
        props_size = len(props)
        body_size = len(body)
        if frame_max:
            if props_size + header_overhead > frame_max:
                raise _too_large('content header', method_sig,
                                 props_size + header_overhead, frame_max)
            if body_size > frame_max - _OVERHEAD:
                write_split(type_, channel, method_sig, args, size, props,
                            body, body_size, frame_max - _OVERHEAD)
                return
        # The method frame, the content header frame and (with a body) the
        # body frame's header, each frame end packed with the next header.
        head = b''.join((
            _METHOD_FRAME_HEADER.pack(
                type_, channel, size, method_sig[0], method_sig[1]),
            args,
            _END_CONTENT_HEADER.pack(
                _FRAME_END_OCTET, _FRAME_HEADER_TYPE, channel,
                _CONTENT_HEADER_FIXED + props_size, _BASIC, 0, body_size),
            props,
            _END_FRAME_HEADER.pack(_FRAME_END_OCTET, _FRAME_BODY, channel,
                                   body_size) if body_size else b''))
        if body_size >= _SCATTER_MIN:
            writev((head, body, _FRAME_END))   # the body is not copied
        else:
            write(head + body + _FRAME_END if body_size else
                  head + _FRAME_END)
        connection.bytes_sent += 3 if body_size else 2

    def write_split(type_: int, channel: int, method_sig: spec.MethodSig,
                    args: bytes, size: int, props: bytes,
                    body: Union[bytes, memoryview], body_size: int,
                    chunk: int) -> None:
        """A body over several frames of ``chunk`` bytes, in one write:
        the body's slices go to the socket as they are (scatter-gather),
        between small frame headers."""
        view = memoryview(body)
        head = (_METHOD_FRAME_HEADER.pack(
                    type_, channel, size, method_sig[0], method_sig[1]) +
                args +
                _END_CONTENT_HEADER.pack(
                    _FRAME_END_OCTET, _FRAME_HEADER_TYPE, channel,
                    _CONTENT_HEADER_FIXED + len(props), _BASIC, 0,
                    body_size) +
                props)
        parts: List[Union[bytes, memoryview]] = [head]
        append = parts.append
        last = _FRAME_END_OCTET
        for start in range(0, body_size, chunk):
            piece = view[start:start + chunk]
            # the previous frame's end and this frame's header in one part
            append(_END_FRAME_HEADER.pack(last, _FRAME_BODY, channel,
                                          len(piece)))
            append(piece)
        append(_FRAME_END)
        writev(parts)
        connection.bytes_sent += 2 + (body_size + chunk - 1) // chunk

    if speedups is not None:
        # the compiled twin: a method, or one with a small bytes body,
        # built into one bytes object; anything else goes to write_frame
        # (with the transport's write lock, when its write is the stock
        # one, the writer takes write's plain branch itself; when its
        # writev is too, a large bytes body goes out by scatter-gather
        # from the writer as well)
        lock = getattr(transport, 'plain_write_lock', None)
        scatter = lock is not None and \
            getattr(transport, 'plain_writev', False) is True
        writer: FrameWriter = speedups.FrameWriter(
            write_frame, connection, write, encode_properties_basic, Message,
            transport, lock, scatter)
        return writer
    return write_frame
