"""amqp.method_framing: frames to method calls and back (spec 4.2.3, 4.2.6).

``Conn`` and ``Sink`` below stand in for the socket side (the attributes a
connection exposes and a transport's ``write``); they record what crosses
the operating-system boundary and are not mocks of this package.

Frames fed in are hand-written or built by pika, and frames written out
are read back by hand or by pika (``testkit``), never by our own codec.
"""
import inspect
import random
import struct

import pika.frame
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pika.spec import Basic, Queue

from amqp import spec
from amqp.basic_message import Message
from amqp.exceptions import (AMQPError, FrameError, FrameSyntaxError,
                             IrrecoverableConnectionError, UnexpectedFrame)
from amqp.method_framing import frame_handler, frame_writer, method_end
from amqp.serialization import dumps, loads
from amqp.method_framing import FrameBuffer
from testkit import (ALL_PROPERTIES, CROSS_TABLE, HEARTBEAT, content_frames,
                     decode_frames, frame, message_frames, method_frame,
                     method_payload, naive_utc, pika_method_class,
                     properties_dict, split_frames)

FRAME_MAX = 4096


class Conn:
    def __init__(self, frame_max=FRAME_MAX):
        self.frame_max = frame_max
        self.bytes_sent = 0
        self.bytes_recv = 0


class Sink:
    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))


class Calls:
    def __init__(self):
        self.calls = []

    def __call__(self, channel, method_sig, payload, content):
        self.calls.append((channel, method_sig, payload, content))


def handler(conn=None):
    calls = Calls()
    return frame_handler(conn or Conn(), calls), calls


DELIVER_ARGS = (b'\x06ctag-1' b'\x00\x00\x00\x00\x00\x00\x00\x01'
                b'\x00' b'\x00' b'\x05tasks')
DELIVER = b'\x00\x3c\x00\x3c' + DELIVER_ARGS


def header(body_size, props=b'\x00\x00'):
    return b'\x00\x3c\x00\x00' + struct.pack('>Q', body_size) + props


# ---------------------------------------------------------------------------
# frame_handler

def test_method_without_content_is_dispatched_at_once():
    on_frame, calls = handler()
    payload = b'\x00\x3c\x00\x50' b'\x00\x00\x00\x00\x00\x00\x00\x07\x00'
    assert on_frame((1, 3, payload)) is True
    assert calls.calls == [(3, (60, 80), payload, None)]
    assert loads('Lb', payload, 4)[0] == [7, False]


def test_method_header_and_body_make_one_call():
    on_frame, calls = handler()
    props = b'\x90\x00' b'\x0atext/plain' b'\x02'
    assert on_frame((1, 1, DELIVER)) is False
    assert on_frame((2, 1, header(5, props))) is False
    assert not calls.calls
    assert on_frame((3, 1, b'hello')) is True
    [(channel, sig, payload, msg)] = calls.calls
    assert (channel, sig, payload) == (1, (60, 60), DELIVER)
    assert isinstance(msg, Message)
    assert msg.body == b'hello'
    assert msg.body_size == 5
    assert msg.properties == {'content_type': 'text/plain',
                              'delivery_mode': 2}
    assert msg.content_type == 'text/plain'
    assert msg.frame_method == (60, 60)
    assert msg.frame_args == DELIVER
    assert loads('sLbss', payload, 4)[0] == ['ctag-1', 1, False, '', 'tasks']


def test_body_split_over_many_frames():
    on_frame, calls = handler()
    body = bytes(range(256)) * 40
    on_frame((1, 2, DELIVER))
    on_frame((2, 2, header(len(body))))
    for start in range(0, len(body), 1000):
        on_frame((3, 2, body[start:start + 1000]))
    [(_, _, _, msg)] = calls.calls
    assert msg.body == body


def test_empty_body_needs_no_body_frame():
    on_frame, calls = handler()
    on_frame((1, 1, DELIVER))
    assert on_frame((2, 1, header(0))) is True
    [(_, _, _, msg)] = calls.calls
    assert msg.body == b''
    # ... and the next method on that channel is welcome.
    on_frame((1, 1, DELIVER))


def test_empty_body_frames_are_tolerated():
    on_frame, calls = handler()
    on_frame((1, 1, DELIVER))
    on_frame((2, 1, header(2)))
    on_frame((3, 1, b''))
    on_frame((3, 1, b'ab'))
    assert calls.calls[0][3].body == b'ab'


def test_content_interleaved_across_channels():
    on_frame, calls = handler()
    on_frame((1, 1, DELIVER))
    on_frame((1, 2, DELIVER))
    on_frame((2, 2, header(2)))
    on_frame((2, 1, header(3)))
    on_frame((3, 1, b'one'))
    on_frame((3, 2, b'tw'))
    assert [(c, m.body) for c, _, _, m in calls.calls] == [
        (1, b'one'), (2, b'tw')]


def test_get_ok_and_return_carry_content():
    on_frame, calls = handler()
    get_ok = method_payload(Basic.GetOk(1, False, '', 'q', 0))
    ret = method_payload(Basic.Return(312, 'NO_ROUTE', '', 'q'))
    for payload in (get_ok, ret):
        on_frame((1, 1, payload))
        on_frame((2, 1, header(1)))
        on_frame((3, 1, b'x'))
    assert [c[1] for c in calls.calls] == [(60, 71), (60, 50)]


def test_body_without_header():
    on_frame, _ = handler()
    with pytest.raises(UnexpectedFrame):
        on_frame((3, 1, b'x'))
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    with pytest.raises(UnexpectedFrame):
        on_frame((3, 1, b'x'))


def test_header_without_method():
    on_frame, _ = handler()
    with pytest.raises(UnexpectedFrame):
        on_frame((2, 1, header(1)))
    # A header on a channel other than the one awaiting content.
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    with pytest.raises(UnexpectedFrame):
        on_frame((2, 2, header(1)))


def test_second_header_while_body_pending():
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    on_frame((2, 1, header(5)))
    with pytest.raises(UnexpectedFrame):
        on_frame((2, 1, header(5)))


def test_method_while_content_pending():
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    with pytest.raises(UnexpectedFrame):
        on_frame((1, 1, DELIVER))
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    on_frame((2, 1, header(5)))
    on_frame((3, 1, b'ab'))
    with pytest.raises(UnexpectedFrame):
        on_frame((1, 1, b'\x00\x3c\x00\x50' + b'\x00' * 9))


def test_body_longer_than_announced():
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    on_frame((2, 1, header(3)))
    with pytest.raises(UnexpectedFrame):
        on_frame((3, 1, b'four'))
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    on_frame((2, 1, header(3)))
    on_frame((3, 1, b'ab'))
    with pytest.raises(UnexpectedFrame):
        on_frame((3, 1, b'cd'))


@pytest.mark.parametrize('sig', [(60, 9999), (99, 10), (0, 0)])
def test_unknown_method(sig):
    on_frame, calls = handler()
    with pytest.raises(IrrecoverableConnectionError, match=str(sig[1])):
        on_frame((1, 1, struct.pack('>HH', *sig)))
    assert not calls.calls


def test_method_frame_too_short_for_a_method_id():
    on_frame, _ = handler()
    with pytest.raises(FrameSyntaxError):
        on_frame((1, 1, b'\x00\x3c\x00'))


def test_header_for_a_class_other_than_basic():
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    with pytest.raises(FrameSyntaxError):
        on_frame((2, 1, b'\x00\x32\x00\x00' + b'\x00' * 8 + b'\x00\x00'))


def test_truncated_header_is_a_syntax_error():
    on_frame, _ = handler()
    on_frame((1, 1, DELIVER))
    with pytest.raises(FrameSyntaxError):
        on_frame((2, 1, header(3, b'\x80\x00\x09ab')))


def test_heartbeats_are_counted_and_not_dispatched():
    conn = Conn()
    on_frame, calls = handler(conn)
    assert on_frame((8, 0, b'')) is False
    assert on_frame((8, 0, b'')) is False
    assert conn.bytes_recv == 2
    on_frame((1, 0, b'\x00\x0a\x00\x33'))
    assert conn.bytes_recv == 3
    assert calls.calls == [(0, (10, 51), b'\x00\x0a\x00\x33', None)]


def test_heartbeat_on_a_channel_other_than_zero():
    on_frame, _ = handler()
    with pytest.raises(FrameError):
        on_frame((8, 1, b''))


@pytest.mark.parametrize('frame_type', [0, 4, 7, 9, 65, 255])
def test_unknown_frame_type(frame_type):
    on_frame, _ = handler()
    with pytest.raises(FrameError):
        on_frame((frame_type, 0, b''))


_frames = st.lists(st.tuples(
    st.sampled_from([1, 1, 2, 3, 8, 0, 99]),
    st.integers(0, 2),
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([DELIVER, header(0), header(3), b'abc',
                         b'\x00\x3c\x00\x50' + b'\x00' * 9]),
        st.builds(lambda s, rest: s + rest,
                  st.sampled_from([b'\x00\x3c\x00\x3c', b'\x00\x3c\x00\x00',
                                   b'\x00\x0a\x00\x0a']),
                  st.binary(max_size=30)),
    )), max_size=12)


@given(_frames)
def test_garbage_frames_raise_only_amqp_errors(frames):
    on_frame, _ = handler()
    try:
        for f in frames:
            on_frame(f)
    except AMQPError:
        pass


# ---------------------------------------------------------------------------
# frame_writer

# basic.publish(ticket=0, exchange='ex', routing_key='rk', no bits set)
PUBLISH_ARGS = b'\x00\x00' b'\x02ex' b'\x02rk' b'\x00'


def writer(frame_max=FRAME_MAX):
    conn, sink = Conn(frame_max), Sink()
    return frame_writer(conn, sink), conn, sink


def test_small_message_is_one_write_with_exact_bytes():
    write_frame, conn, sink = writer()
    msg = Message(b'hello', content_type='text/plain', delivery_mode=2)
    write_frame(1, 1, (60, 40), PUBLISH_ARGS, msg)
    assert sink.writes == [
        # method frame: type 1, channel 1, size 13, basic.publish
        b'\x01' b'\x00\x01' b'\x00\x00\x00\x0d' b'\x00\x3c\x00\x28'
        b'\x00\x00' b'\x02ex' b'\x02rk' b'\x00' b'\xce'
        # header frame: size 26, class 60, weight 0, body size 5, flags
        # content_type|delivery_mode
        b'\x02' b'\x00\x01' b'\x00\x00\x00\x1a' b'\x00\x3c' b'\x00\x00'
        b'\x00\x00\x00\x00\x00\x00\x00\x05' b'\x90\x00'
        b'\x0atext/plain' b'\x02' b'\xce'
        # body frame
        b'\x03' b'\x00\x01' b'\x00\x00\x00\x05' b'hello' b'\xce'
    ]
    assert conn.bytes_sent == 3


def test_method_without_content_is_one_frame():
    write_frame, conn, sink = writer()
    write_frame(1, 0, (10, 51), b'')
    write_frame(1, 2, (60, 80), b'\x00\x00\x00\x00\x00\x00\x00\x07\x01')
    assert sink.writes == [
        b'\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x33\xce',
        b'\x01\x00\x02\x00\x00\x00\x0d\x00\x3c\x00\x50'
        b'\x00\x00\x00\x00\x00\x00\x00\x07\x01\xce',
    ]
    assert conn.bytes_sent == 2


def test_args_none_means_no_arguments():
    write_frame, _, sink = writer()
    write_frame(1, 1, (90, 10), None)
    assert sink.writes == [b'\x01\x00\x01\x00\x00\x00\x04\x00\x5a\x00\x0a'
                           b'\xce']


def _written_message(sink, channel=1):
    data = b''.join(sink.writes)
    frames = split_frames(data)
    assert frames[0][:2] == (1, channel)
    assert frames[1][:2] == (2, channel)
    body_frames = frames[2:]
    assert all(t == 3 and c == channel for t, c, _ in body_frames)
    body_size = struct.unpack_from('>Q', frames[1][2], 4)[0]
    body = b''.join(p for _, _, p in body_frames)
    assert len(body) == body_size
    return frames, body


@pytest.mark.parametrize('size, n_body_frames', [
    (FRAME_MAX - 9, 1),
    (FRAME_MAX - 8, 1),
    (FRAME_MAX - 7, 2),
    (0, 0),
    (1, 1),
    (2 * (FRAME_MAX - 8), 2),
    (2 * (FRAME_MAX - 8) + 1, 3),
    (3 * 1024 * 1024 + 17, -(-(3 * 1024 * 1024 + 17) // (FRAME_MAX - 8))),
])
def test_body_split_at_frame_max(size, n_body_frames):
    write_frame, conn, sink = writer()
    body = bytes(i % 251 for i in range(size))
    write_frame(1, 1, (60, 40), PUBLISH_ARGS, Message(body))
    frames, got = _written_message(sink)
    assert got == body
    assert len(frames) - 2 == n_body_frames
    for _, _, payload in frames:
        assert len(payload) + 8 <= FRAME_MAX
    # every body frame but the last is full
    for _, _, payload in frames[2:-1]:
        assert len(payload) == FRAME_MAX - 8
    assert conn.bytes_sent == len(frames)
    if size <= FRAME_MAX - 8:
        assert len(sink.writes) == 1


def test_large_frame_max_and_default():
    write_frame, _, sink = writer(spec.FRAME_MAX_DEFAULT)
    body = b'x' * (spec.FRAME_MAX_DEFAULT * 2)
    write_frame(1, 1, (60, 40), PUBLISH_ARGS, Message(body))
    frames, got = _written_message(sink)
    assert got == body
    assert len(frames) == 2 + 3


def test_frame_max_zero_means_no_limit():
    write_frame, _, sink = writer(0)
    body = b'x' * 200000
    write_frame(1, 1, (60, 40), PUBLISH_ARGS, Message(body))
    frames, got = _written_message(sink)
    assert got == body and len(frames) == 3


@pytest.mark.parametrize('body', [bytearray(b'abc'), memoryview(b'abc')])
def test_bytes_like_bodies(body):
    write_frame, _, sink = writer()
    write_frame(1, 1, (60, 40), PUBLISH_ARGS, Message(body))
    assert _written_message(sink)[1] == b'abc'


def _read_back(sink):
    """Decode what the writer wrote with pika: ``(method, properties,
    body)`` of the one message in it."""
    method, header, *bodies = decode_frames(b''.join(sink.writes))
    assert isinstance(header, pika.frame.Header)
    body = b''.join(b.fragment for b in bodies)
    assert header.body_size == len(body)
    return method.method, naive_utc(properties_dict(header.properties)), body


@pytest.mark.parametrize('msg, body, properties', [
    (Message('caf\xe9 \u20ac'), 'caf\xe9 \u20ac'.encode('utf-8'),
     {'content_encoding': 'utf-8'}),
    (Message('caf\xe9', content_encoding='latin-1'), b'caf\xe9',
     {'content_encoding': 'latin-1'}),
    (Message('\u20ac', content_encoding=None), b'\xe2\x82\xac',
     {'content_encoding': 'utf-8'}),
], ids=['utf8-by-default', 'content-encoding', 'content-encoding-none'])
def test_str_body_encoding(msg, body, properties):
    write_frame, _, sink = writer()
    write_frame(1, 1, (60, 40), PUBLISH_ARGS, msg)
    assert _read_back(sink)[1:] == (properties, body)


def test_bad_property_raises_before_anything_is_written():
    write_frame, conn, sink = writer()
    with pytest.raises(ValueError, match='priority'):
        write_frame(1, 1, (60, 40), PUBLISH_ARGS, Message(b'x', priority=300))
    with pytest.raises(ValueError, match='content_type'):
        write_frame(1, 1, (60, 40), PUBLISH_ARGS,
                    Message(b'x', content_type='t' * 256))
    assert sink.writes == [] and conn.bytes_sent == 0


def test_writer_output_read_back_by_handler():
    write_frame, _, sink = writer()
    props = {'content_type': 'application/json', 'delivery_mode': 2,
             'application_headers': {'x-retry': 1, 'trace': [1, 'a']},
             'timestamp': 1700000000, 'priority': 3}
    body = b'{"a": 1}' * 1000
    write_frame(1, 5, (60, 40), PUBLISH_ARGS, Message(body, **props))
    method, properties, received = _read_back(sink)
    assert isinstance(method, Basic.Publish)
    assert (method.exchange, method.routing_key) == ('ex', 'rk')
    assert received == body
    assert properties == props


# ---------------------------------------------------------------------------
# Any chunking of a byte stream gives the same frames and messages.

def _stream(messages):
    """Each message published, then an ack, by pika; then a heartbeat."""
    stream = b''
    for channel, body, props in messages:
        stream += message_frames(Basic.Publish(0, 'ex', 'rk'), body, channel,
                                 props, frame_max=FRAME_MAX)
        stream += method_frame(Basic.Ack(channel, False), channel)
    return stream + HEARTBEAT


_text = st.text(st.characters(blacklist_categories=['Cs']), max_size=10)
_messages = st.lists(st.tuples(
    st.integers(1, 3),
    st.binary(max_size=3 * FRAME_MAX),
    st.fixed_dictionaries({}, optional={
        'content_type': _text,
        'delivery_mode': st.integers(1, 2),
        'application_headers': st.dictionaries(
            _text.filter(lambda k: len(k.encode()) < 256),
            st.integers(0, 2 ** 40), max_size=3),
    })), min_size=1, max_size=4)


@given(_messages, st.data())
def test_any_chunking_yields_the_same_frames(messages, data):
    stream = _stream(messages)
    expected = split_frames(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)),
                                     max_size=20)))
    buf = FrameBuffer(max_payload=FRAME_MAX - 8)
    got = []
    for start, end in zip([0] + cuts, cuts + [len(stream)]):
        buf.feed(stream[start:end])
        while True:
            f = buf.next_frame()
            if f is None:
                break
            got.append(f)
    assert got == expected
    assert len(buf) == 0
    calls = Calls()
    on_frame = frame_handler(Conn(), calls)
    for f in got:
        on_frame(f)
    published = [(c, m.body, m.properties) for c, sig, _, m in calls.calls
                 if sig == (60, 40)]
    assert published == [(c, b, p) for c, b, p in messages]


class BufferedConn(Conn):
    """A connection that offers its frame buffer to the handler, as
    Connection does while the wire trace is off."""

    def __init__(self, frames):
        super().__init__()
        self.inbound_frames = frames


@given(_messages, st.data(), st.booleans())
def test_contents_taken_whole_from_the_buffer_arrive_the_same(
        messages, data, offered):
    """Where the handler takes a content's header and body straight from
    the buffer, the same messages arrive, and every frame is counted."""
    stream = _stream(messages)
    expected = split_frames(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)),
                                     max_size=20)))
    buf = FrameBuffer(max_payload=FRAME_MAX - 8)
    conn = BufferedConn(buf if offered else None)
    calls = Calls()
    on_frame = frame_handler(conn, calls)
    for start, end in zip([0] + cuts, cuts + [len(stream)]):
        buf.feed(stream[start:end])
        while True:
            f = buf.next_frame()
            if f is None:
                break
            on_frame(f)
    assert len(buf) == 0
    assert conn.bytes_recv == len(expected)
    published = [(c, m.body, m.properties) for c, sig, _, m in calls.calls
                 if sig == (60, 40)]
    assert published == [(c, b, p) for c, b, p in messages]
    assert all(type(m.body) is bytes for c, sig, _, m in calls.calls
               if sig == (60, 40))


def test_a_content_is_taken_whole_only_when_all_of_it_is_buffered():
    body = b'b' * 100
    stream = message_frames(Basic.Publish(0, 'ex', 'rk'), body, 1,
                            frame_max=FRAME_MAX)
    frames = split_frames(stream)
    buf = FrameBuffer(max_payload=FRAME_MAX - 8)
    conn = BufferedConn(buf)
    calls = Calls()
    on_frame = frame_handler(conn, calls)
    buf.feed(stream[:-1])          # all but the body's frame-end octet
    assert on_frame(buf.next_frame()) is False      # method: waits
    assert buf.take_content(1) is None
    assert len(buf) == len(stream) - 1 - (8 + len(frames[0][2]))
    buf.feed(stream[-1:])
    assert on_frame(buf.next_frame()) is False      # header, then body
    assert on_frame(buf.next_frame()) is True
    assert calls.calls[0][3].body == body
    # all of it buffered: one call
    buf.feed(stream)
    assert on_frame(buf.next_frame()) is True
    assert len(buf) == 0 and calls.calls[1][3].body == body
    assert conn.bytes_recv == 6


def _read_like_a_connection(stream, sizes, collect_min, scatter=None):
    """Read ``stream`` as Connection._fill does: into the buffer, or
    straight into a collected body when the buffer offers a target; each
    read takes the next of ``sizes`` (cycled) bytes at most.

    With ``scatter`` (``(max_frames, tail)``), a collected body is read
    as on TCP: one scatter read into the views ``direct_targets`` plans,
    filling each in order as the kernel's ``recvmsg_into`` does.
    """
    buf = FrameBuffer(max_payload=FRAME_MAX - 8)
    buf.collect_min = collect_min
    frames, pos, i = [], 0, 0
    while True:
        while True:
            f = buf.next_frame()
            if f is None:
                break
            frames.append(f)
        if pos >= len(stream):
            break
        n = sizes[i % len(sizes)]
        i += 1
        views = None if scatter is None else buf.direct_targets(*scatter)
        target = None if scatter is not None else buf.direct_target()
        if views is not None:
            n = min(n, len(stream) - pos)
            got = 0
            for view in views:
                k = min(len(view), n - got)
                view[:k] = stream[pos + got:pos + got + k]
                got += k
            buf.direct_filled_many(got)
            n = got
        elif target is not None:
            n = min(n, len(target))
            target[:n] = stream[pos:pos + n]
            buf.direct_filled(n)
        else:
            buf.feed(stream[pos:pos + n])
        pos += n
    assert len(buf) == 0
    return frames


def _published(frames):
    calls = Calls()
    on_frame = frame_handler(Conn(), calls)
    for f in frames:
        on_frame(f)
    return [(c, m.body, m.properties) for c, sig, _, m in calls.calls
            if sig == (60, 40)]


@given(_messages, st.lists(st.integers(1, 3 * FRAME_MAX), min_size=1,
                           max_size=8), st.sampled_from([1, 100, 10 ** 9]))
def test_bodies_collected_whole_arrive_the_same(messages, sizes,
                                                collect_min):
    """Collecting large bodies into one buffer, with payloads received
    straight into it, changes nothing about the messages delivered."""
    stream = _stream(messages)
    frames = _read_like_a_connection(stream, sizes, collect_min)
    assert _published(frames) == [(c, b, p) for c, b, p in messages]
    if collect_min == 1:    # every body came as one frame
        bodies = [f for f in frames if f[0] == 3]
        assert len(bodies) == sum(1 for _, b, _ in messages if b)


def _resplit(stream, cuts, heartbeats):
    """``stream`` with body frames cut in two where ``cuts`` (cycled)
    say and a heartbeat before every frame ``heartbeats`` picks: frames a
    scatter read's plan does not expect."""
    out = []
    for n, (ftype, channel, payload) in enumerate(split_frames(stream)):
        if heartbeats and heartbeats[n % len(heartbeats)]:
            out.append(HEARTBEAT)
        cut = cuts[n % len(cuts)] if cuts else 0
        if ftype == 3 and 0 < cut < len(payload):
            out.append(frame(3, channel, payload[:cut]))
            payload = payload[cut:]
        out.append(frame(ftype, channel, payload))
    return b''.join(out)


#: bodies of one to six frames (random bytes from a drawn seed: drawing
#: the bytes themselves makes hypothesis favour short ones)
_large_messages = st.lists(st.builds(
    lambda channel, size, seed: (channel, random.Random(seed).randbytes(size),
                                 {}),
    st.integers(1, 3), st.integers(FRAME_MAX - 100, 6 * FRAME_MAX),
    st.integers(0, 2 ** 32)), min_size=1, max_size=3)


@given(_large_messages, st.lists(st.integers(1, 7 * FRAME_MAX), min_size=1,
                                 max_size=8), st.sampled_from([1, 100]),
       st.sampled_from([(1, False), (2, True), (32, True), (32, False)]),
       st.lists(st.integers(0, FRAME_MAX), max_size=4),
       st.lists(st.booleans(), max_size=5))
def test_scatter_reads_of_collected_bodies_arrive_the_same(
        messages, sizes, collect_min, scatter, cuts, heartbeats):
    """Reading a large body's frames in scatter reads, planned on the
    assumption that the peer keeps one split, gives the same messages
    whatever the peer actually sends between payloads (heartbeats, a
    different split) and wherever the reads end."""
    stream = _resplit(_stream(messages), cuts, heartbeats)
    frames = _read_like_a_connection(stream, sizes, collect_min, scatter)
    assert _published(frames) == [(c, b, p) for c, b, p in messages]
    assert frames == _read_like_a_connection(stream, [len(stream)],
                                             collect_min)


def test_a_scatter_read_checks_every_frame_end():
    stream = bytearray(_stream([(1, b'q' * (3 * FRAME_MAX), {})]))
    # the frame-end octet of the first body frame, which a scatter read
    # receives into its plan's first 8-byte gap
    frames = split_frames(bytes(stream))
    end = sum(8 + len(p) for _, _, p in frames[:3]) - 1
    assert stream[end] == 0xCE
    stream[end] = 0x00
    with pytest.raises(FrameError, match='frame_end'):
        _read_like_a_connection(bytes(stream), [100, len(stream)], 1,
                                (32, True))


@pytest.mark.parametrize('scatter', [None, (32, True)])
def test_collected_bodies_of_interleaved_channels(scatter):
    # channel 1's content, then channel 2's, frames interleaved: frames
    # of the same type and size as the body frames a scatter read expects
    one = message_frames(Basic.Publish(0, 'ex', 'a'), b'1' * 9000, 1,
                         frame_max=FRAME_MAX)
    two = message_frames(Basic.Publish(0, 'ex', 'b'), b'2' * 9000, 2,
                         frame_max=FRAME_MAX)
    f1, f2 = split_frames(one), split_frames(two)
    mixed = b''.join(frame(*f) for pair in zip(f1, f2) for f in pair)
    frames = _read_like_a_connection(mixed, [700, 5000], 100, scatter)
    assert sorted(b for _, b, _ in _published(frames)) == \
        [b'1' * 9000, b'2' * 9000]


def test_a_collected_body_longer_than_announced_is_refused():
    import struct
    header = frame(2, 1, struct.pack('>HHQH', 60, 0, 10, 0))
    stream = method_frame(Basic.Publish(0, 'ex', 'rk'), 1) + header + \
        frame(3, 1, b'x' * 6) + frame(3, 1, b'y' * 6)
    with pytest.raises(UnexpectedFrame, match='longer'):
        _read_like_a_connection(stream, [len(stream)], 1)
    with pytest.raises(UnexpectedFrame, match='longer'):
        _read_like_a_connection(stream, [3], 1)


def test_bodies_over_max_body_are_not_collected():
    buf = FrameBuffer(max_payload=FRAME_MAX - 8)
    buf.collect_min, buf.max_body = 1, 100
    stream = _stream([(1, b'z' * 500, {})])
    buf.feed(stream)
    frames = []
    while True:
        f = buf.next_frame()
        if f is None:
            break
        frames.append(f)
    assert frames == split_frames(stream)     # frame by frame, as sent


def test_one_byte_at_a_time():
    stream = _stream([(1, b'abc' * 3000, {'content_type': 'x'})])
    buf = FrameBuffer(max_payload=FRAME_MAX - 8)
    got = []
    for i in range(len(stream)):
        buf.feed(stream[i:i + 1])
        f = buf.next_frame()
        if f is not None:
            got.append(f)
    assert got == split_frames(stream)


# ---------------------------------------------------------------------------
# Frames the broker would refuse are refused here, before any write.

def test_method_frame_larger_than_frame_max():
    write_frame, conn, sink = writer()
    args = method_payload(Queue.Declare(
        0, 'q', arguments={'x-big': 'v' * FRAME_MAX}))[4:]
    with pytest.raises(ValueError, match='queue.declare'):
        write_frame(1, 1, (50, 10), args)
    assert sink.writes == [] and conn.bytes_sent == 0
    # exactly frame_max is allowed
    args = b'\x00' * (FRAME_MAX - 12)
    write_frame(1, 1, (60, 80), args)
    assert len(sink.writes[0]) == FRAME_MAX


def test_content_header_larger_than_frame_max():
    write_frame, conn, sink = writer()
    msg = Message(b'x', application_headers={'h': 'v' * FRAME_MAX})
    with pytest.raises(ValueError, match='content header'):
        write_frame(1, 1, (60, 40), PUBLISH_ARGS, msg)
    assert sink.writes == [] and conn.bytes_sent == 0


def test_frame_max_zero_checks_nothing():
    write_frame, _, sink = writer(0)
    msg = Message(b'x', application_headers={'h': 'v' * FRAME_MAX})
    write_frame(1, 1, (60, 40), PUBLISH_ARGS, msg)
    assert _read_back(sink)[1] == {'application_headers':
                                   {'h': 'v' * FRAME_MAX}}


def test_memoryview_of_wide_items_is_sent_as_its_bytes():
    import array
    body = array.array('i', range(2000))
    write_frame, _, sink = writer()
    write_frame(1, 1, (60, 40), PUBLISH_ARGS, Message(memoryview(body)))
    assert _written_message(sink)[1] == body.tobytes()


def test_body_of_a_type_without_bytes_is_a_type_error():
    write_frame, _, sink = writer()
    with pytest.raises(TypeError):
        write_frame(1, 1, (60, 40), PUBLISH_ARGS, Message(12))
    assert sink.writes == []


# -- method_end: where a whole method (with its content) ends ---------------

def _content_unit(body_chunks, channel=1):
    method = frame(1, channel, struct.pack('>HH', 60, 71) + b'\x00' * 8 +
                   b'\x00' + b'\x00\x00' + b'\x00\x00\x00\x00')
    size = sum(len(c) for c in body_chunks)
    header = frame(2, channel, struct.pack('>HHQ', 60, 0, size) + b'\x00\x00')
    return method + header + b''.join(frame(3, channel, c)
                                      for c in body_chunks)


def test_method_end_plain_method_is_one_frame():
    qos_ok = frame(1, 1, struct.pack('>HH', 60, 11))
    assert method_end(qos_ok + b'\x01\x00') == len(qos_ok)
    assert method_end(HEARTBEAT + qos_ok) == len(HEARTBEAT)


def test_method_end_content_method_spans_header_and_bodies():
    unit = _content_unit([b'abc', b'defg'])
    trailing = frame(1, 1, struct.pack('>HH', 60, 11))
    data = unit + trailing
    assert method_end(data) == len(unit)
    # every cut before the end of the unit: not complete yet
    for cut in range(len(unit)):
        assert method_end(data[:cut]) is None, cut
    for cut in range(len(unit), len(data) + 1):
        assert method_end(data[:cut]) == len(unit)


def test_method_end_empty_body_is_method_and_header():
    unit = _content_unit([])
    assert method_end(unit + b'\x08') == len(unit)


def test_method_end_leaves_malformed_input_to_the_parser():
    method = _content_unit([b'x'])[:27]  # the get-ok method frame only
    assert method[-1] == 0xCE
    assert method_end(method + frame(3, 1, b'x')) == len(method)



# -- every method in the spec table crosses pika both ways ------------------
# A symmetric bug (encoder and decoder wrong the same way: a field's type,
# the bit packing, an id) passes every round trip through our own codec;
# pika's independent codec on the other side catches it.

def _sample(letter, position):
    """A value for an argument of type ``letter`` that no neighbour shares,
    so a shifted or swapped field cannot go unnoticed."""
    return {
        'o': 0xA0 + position,
        'B': 0xB000 + position,
        'l': 0xC0000000 + position,
        'L': 0xD000000000000000 + position,
        's': 'short-%d-\u00e9' % position,
        'S': 'long-%d-\u20ac' % position,
        'b': position % 3 != 1,
        'F': CROSS_TABLE,
    }[letter]


def _from_pika(value):
    # pika gives longstr arguments as bytes and timestamps as aware UTC
    return value.decode('utf-8') if isinstance(value, bytes) else \
        naive_utc(value)


CROSS_BODY = bytes(range(256)) * 20      # several frames at FRAME_MAX
CROSS_PROPERTIES = dict(ALL_PROPERTIES, application_headers=CROSS_TABLE)


def _cross_case(name):
    method = spec.METHODS_BY_NAME[name]
    values = [_sample(letter, i) for i, letter in enumerate(method.args)]
    return method, pika_method_class(name), values


@pytest.mark.parametrize('name', sorted(spec.METHODS_BY_NAME))
def test_every_method_encoded_by_pika_decodes_here(name):
    method, pika_class, values = _cross_case(name)
    wire = method_frame(pika_class(*values), channel=7)
    if method.content:
        wire += content_frames(7, CROSS_BODY, CROSS_PROPERTIES,
                               frame_max=FRAME_MAX)
    buf = FrameBuffer(max_payload=FRAME_MAX - 8)
    buf.feed(wire)
    calls = Calls()
    on_frame = frame_handler(Conn(), calls)
    while (f := buf.next_frame()) is not None:
        on_frame(f)
    [(channel, sig, payload, msg)] = calls.calls
    assert (channel, sig) == (7, method.sig)
    assert loads(method.args, payload, 4) == (values, len(payload))
    if method.content:
        assert msg.body == CROSS_BODY
        assert msg.properties == CROSS_PROPERTIES
    else:
        assert msg is None


@pytest.mark.parametrize('name', sorted(spec.METHODS_BY_NAME))
def test_every_method_encoded_here_decodes_in_pika(name):
    method, pika_class, values = _cross_case(name)
    write_frame, _, sink = writer()
    content = Message(CROSS_BODY, **CROSS_PROPERTIES) if method.content \
        else None
    write_frame(1, 7, method.sig, dumps(method.args, values), content)
    frames = decode_frames(b''.join(sink.writes))
    assert all(f.channel_number == 7 for f in frames)
    got = frames[0].method
    assert type(got) is pika_class
    names = list(inspect.signature(pika_class).parameters)  # wire order
    assert [_from_pika(getattr(got, n)) for n in names] == values
    if method.content:
        header, *bodies = frames[1:]
        assert naive_utc(properties_dict(header.properties)) == \
            CROSS_PROPERTIES
        assert b''.join(b.fragment for b in bodies) == CROSS_BODY
        assert header.body_size == len(CROSS_BODY)
    else:
        assert len(frames) == 1
