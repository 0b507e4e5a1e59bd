"""The optional compiled twins (``amqp._speedups``) against their pure
specifications: the same values for any input, the same error (class and
message) for any malformed input, never a crash; chosen once at import,
off with ``AMQP_NO_SPEEDUPS``, visible as ``amqp.SPEEDUPS``."""
import os
import shutil
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amqp
from amqp import method_framing, serialization, spec
from amqp.exceptions import AMQPError, FrameSyntaxError
from amqp.method_framing import FrameBuffer
from amqp.serialization import decode_properties_basic_py, \
    encode_properties_basic

from testkit import frame, properties_strategy, tables_strategy

speedups = serialization.speedups
compiled = pytest.mark.skipif(
    speedups is None, reason='amqp._speedups is not built here (no C '
    'compiler at install time, PyPy, or AMQP_NO_SPEEDUPS set)')
SETTINGS = settings(max_examples=400, deadline=None)


def test_built_where_a_compiler_is():
    # CI installs with a compiler: a build that failed there must not
    # pass unnoticed as "the pure path"
    if not (os.environ.get('CI') and shutil.which('cc')):
        pytest.skip('only checked in CI, where cc is installed')
    if os.environ.get('AMQP_NO_SPEEDUPS', '') not in ('', '0'):
        pytest.skip('AMQP_NO_SPEEDUPS is set')
    assert speedups is not None
    assert amqp.SPEEDUPS is True


def test_the_choice_is_visible_and_amqp_no_speedups_turns_it_off():
    assert amqp.SPEEDUPS is (speedups is not None)
    code = ('import amqp, amqp.serialization as s; '
            'print(amqp.SPEEDUPS, s.decode_properties_basic is '
            's.decode_properties_basic_py)')
    env = dict(os.environ, AMQP_NO_SPEEDUPS='1')
    out = subprocess.run([sys.executable, '-c', code], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ['False', 'True']


def _same(buf, offset=0):
    """Both decoders on ``buf``: equal results, or equal errors."""
    def run(fn):
        try:
            return 'ok', fn(buf, offset)
        except FrameSyntaxError as exc:
            return 'error', (type(exc), str(exc))
    pure = run(decode_properties_basic_py)
    fast = run(speedups.decode_properties_basic)
    assert fast == pure, (buf, offset)
    return pure


@compiled
@SETTINGS
@given(properties_strategy, st.binary(max_size=6))
def test_any_properties_decode_the_same(props, prefix):
    wire = encode_properties_basic(props)
    kind, (value, offset) = _same(prefix + wire, len(prefix))
    assert kind == 'ok' and value == props
    assert offset == len(prefix) + len(wire)


@compiled
@SETTINGS
@given(properties_strategy, st.data())
def test_mutated_and_truncated_properties_fail_the_same(props, data):
    wire = bytearray(encode_properties_basic(props))
    for _ in range(data.draw(st.integers(1, 4))):
        if not wire:
            break
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    _same(bytes(wire[:cut]))
    _same(bytes(wire))


@compiled
@SETTINGS
@given(st.binary(max_size=80), st.integers(0, 8))
def test_garbage_fails_the_same(data, offset):
    _same(data, min(offset, len(data)))


@compiled
def test_repeated_strings_are_handed_out_again_correctly():
    # the twin keeps the last value of each property: a different value
    # of the same length must not be taken for it
    for value in ('text/plain', 'text/xxxxx', 'text/plain', '', 'é'):
        wire = encode_properties_basic({'content_type': value})
        assert speedups.decode_properties_basic(wire, 0) == (
            {'content_type': value}, len(wire))


@compiled
def test_other_buffers_and_offsets_are_taken_as_the_pure_path_takes_them():
    wire = encode_properties_basic({'content_type': 'a', 'priority': 3})
    for buf in (bytearray(wire), memoryview(wire)):
        assert speedups.decode_properties_basic(buf, 0) == \
            decode_properties_basic_py(buf, 0)
    assert speedups.decode_properties_basic(wire) == \
        decode_properties_basic_py(wire)
    with pytest.raises(TypeError):
        speedups.decode_properties_basic(wire, 'x')


@compiled
def test_invalid_utf8_decodes_as_the_pure_path_does():
    wire = b'\x80\x00' + bytes([3]) + b'a\xffb'
    assert _same(wire) == ('ok', ({'content_type': 'a\udcffb'}, 6))


# ---------------------------------------------------------------------------
# Method arguments: ArgsDecoder, the twin of decoder_for(fmt)

_FORMATS = sorted({m.args for m in spec.METHODS.values()} |
                  {'ATfx', 'bbbbbbbbbb', 'oBlLf', 'SxF'})
_LETTER_VALUES = {
    'b': st.booleans(),
    'o': st.integers(0, 255),
    'B': st.integers(0, 2 ** 16 - 1),
    'l': st.integers(0, 2 ** 32 - 1),
    'L': st.integers(0, 2 ** 64 - 1),
    'f': st.floats(width=32, allow_nan=False),
    's': st.text(max_size=40),
    'S': st.text(max_size=60),
    'x': st.binary(max_size=60),
    'F': tables_strategy,
    'A': st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=5),
    'T': st.integers(0, 2 ** 40),
}


def _same_args(fmt, buf, offset=0):
    def run(fn):
        try:
            return 'ok', fn(buf, offset)
        except FrameSyntaxError as exc:
            return 'error', (type(exc), str(exc))
    pure = run(serialization.decoder_for_py(fmt))
    fast = run(speedups.ArgsDecoder(fmt, serialization.decoder_for_py(fmt)))
    assert fast == pure, (fmt, buf, offset)
    return pure


@compiled
def test_decoder_for_hands_out_the_twin():
    for fmt in _FORMATS:
        assert isinstance(serialization.decoder_for(fmt),
                          speedups.ArgsDecoder)


@compiled
@SETTINGS
@given(st.sampled_from(_FORMATS), st.data())
def test_any_arguments_decode_the_same(fmt, data):
    values = [data.draw(_LETTER_VALUES[c]) for c in fmt]
    wire = serialization.dumps(fmt, values)
    prefix = data.draw(st.binary(max_size=4))
    kind, (decoded, offset) = _same_args(fmt, prefix + wire, len(prefix))
    assert kind == 'ok' and offset == len(prefix) + len(wire)


@compiled
@SETTINGS
@given(st.sampled_from(_FORMATS), st.data())
def test_mutated_and_truncated_arguments_fail_the_same(fmt, data):
    values = [data.draw(_LETTER_VALUES[c]) for c in fmt]
    wire = bytearray(serialization.dumps(fmt, values))
    for _ in range(data.draw(st.integers(0, 3))):
        if wire:
            wire[data.draw(st.integers(0, len(wire) - 1))] = \
                data.draw(st.integers(0, 255))
    _same_args(fmt, bytes(wire[:data.draw(st.integers(0, len(wire)))]))
    _same_args(fmt, bytes(wire))


@compiled
@SETTINGS
@given(st.sampled_from(_FORMATS), st.binary(max_size=64))
def test_garbage_arguments_fail_the_same(fmt, data):
    _same_args(fmt, data)


@compiled
def test_a_bad_format_is_refused():
    with pytest.raises(ValueError):
        speedups.ArgsDecoder('sQ', serialization.decoder_for_py('s'))


# ---------------------------------------------------------------------------
# ContentTaker: the twin of FrameBuffer.take_content

def _content_stream(data):
    """A header frame and body frame(s) for a content on channel 1, with
    the variations take_content must see through: another channel or
    frame type, a body split or longer than announced, a bad frame end,
    a cut, whatever follows."""
    body = data.draw(st.binary(max_size=300))
    announced = len(body) + data.draw(st.sampled_from([0, 0, 0, 1, -1]))
    header = struct.pack('>HHQ', 60, 0, max(announced, 0)) + \
        data.draw(st.sampled_from([b'\x00\x00', b'\x80\x00\x01a', b'']))
    frames = [frame(data.draw(st.sampled_from([2, 2, 2, 3, 1])),
                    data.draw(st.sampled_from([1, 1, 1, 2])), header)]
    if body:
        cut = data.draw(st.sampled_from([len(body), len(body),
                                         len(body) // 2]))
        for part in (body[:cut], body[cut:]):
            if part:
                frames.append(frame(
                    data.draw(st.sampled_from([3, 3, 3, 2])),
                    data.draw(st.sampled_from([1, 1, 1, 0])), part))
    bad_end = data.draw(st.sampled_from([None, None, 0, 1]))
    if bad_end is not None and bad_end < len(frames):
        frames[bad_end] = frames[bad_end][:-1] + b'\x00'
    wire = bytearray(b''.join(frames) + data.draw(st.binary(max_size=20)))
    if wire and data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del wire[data.draw(st.integers(0, len(wire))):]
    return bytes(wire)


@compiled
@SETTINGS
@given(st.data())
def test_content_is_taken_the_same(data):
    lead = data.draw(st.binary(max_size=8))     # bytes already consumed
    wire = _content_stream(data)
    max_payload = data.draw(st.sampled_from([131064, 100, 12]))
    collect_min = data.draw(st.sampled_from([65536, 50, 1]))
    pure, fast = FrameBuffer(max_payload), FrameBuffer(max_payload)
    for fb in (pure, fast):
        fb.collect_min = collect_min
        fb.feed(lead + wire)
        fb.pos = len(lead)
    taker = speedups.ContentTaker(fast)
    assert taker(1) == pure.take_content(1)
    assert fast.pos == pure.pos


@compiled
def test_a_bytearray_buffer_goes_to_the_method():
    wire = frame(2, 1, struct.pack('>HHQ', 60, 0, 2) + b'\x00\x00') + \
        frame(3, 1, b'hi')
    fb = FrameBuffer(131064)
    fb.feed(wire)
    fb.buf = bytearray(fb.buf)
    assert speedups.ContentTaker(fb)(1) == (
        struct.pack('>HHQ', 60, 0, 2) + b'\x00\x00', b'hi')
    assert fb.pos == len(wire)


# ---------------------------------------------------------------------------
# NextFrame, FrameHandler, FrameWriter, ArgsEncoder, body_buffer: each fed
# the same input as its pure twin (the module's own, with the compiled
# module switched off where the twin would otherwise use it)

class _PurePath:
    """method_framing and serialization as they run without the compiled
    module, for the length of a ``with`` block."""

    def __enter__(self):
        self.saved = (method_framing.speedups, method_framing._body_buffer)
        method_framing.speedups = None
        method_framing._body_buffer = None

    def __exit__(self, *exc):
        method_framing.speedups, method_framing._body_buffer = self.saved


def _outcome(fn, *args):
    try:
        return 'ok', fn(*args)
    except (AMQPError, ValueError, TypeError, LookupError) as exc:
        return 'error', (type(exc), str(exc))


_CONTENT_SIGS = sorted(spec.CONTENT_METHODS)
_OTHER_SIGS = [(60, 80), (20, 40), (10, 50), (60, 31)]


def _stream(data):
    """Frames a broker could send, as one byte string, with the usual
    kinds of damage: content methods with their header and body (whole,
    split, large enough to be collected, cut short, on another channel),
    other methods, heartbeats, unknown methods and frame types, bad frame
    ends, oversized frames, random bytes."""
    parts = []
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(
            ['content'] * 4 + ['method', 'heartbeat', 'unknown', 'junk']))
        channel = data.draw(st.sampled_from([1, 1, 2, 0]))
        if kind == 'content':
            sig = data.draw(st.sampled_from(_CONTENT_SIGS))
            body = b'b' * data.draw(st.sampled_from([0, 1, 5, 70, 300]))
            props = data.draw(st.sampled_from(
                [b'\x00\x00', b'\x80\x00\x0atext/plain', b'\x00\x02',
                 b'\x00']))
            parts.append(frame(1, channel, struct.pack('>HH', *sig) +
                               data.draw(st.binary(max_size=30))))
            announced = len(body) + data.draw(st.sampled_from([0, 0, 1]))
            parts.append(frame(data.draw(st.sampled_from([2, 2, 2, 3])),
                               channel, struct.pack(
                                   '>HHQ', data.draw(st.sampled_from(
                                       [60, 60, 60, 50])), 0, announced) +
                               props))
            split = data.draw(st.sampled_from([0, 0, 1, 2]))
            size = max(1, len(body) // (split + 1))
            for at in range(0, len(body), size):
                parts.append(frame(3, data.draw(st.sampled_from(
                    [channel] * 5 + [channel + 1])), body[at:at + size]))
        elif kind == 'method':
            parts.append(frame(1, channel, struct.pack(
                '>HH', *data.draw(st.sampled_from(_OTHER_SIGS))) +
                data.draw(st.binary(max_size=20))))
        elif kind == 'heartbeat':
            parts.append(frame(8, data.draw(st.sampled_from([0, 0, 1])),
                               b''))
        elif kind == 'unknown':
            parts.append(frame(data.draw(st.sampled_from([1, 9])), channel,
                               data.draw(st.binary(max_size=8))))
        else:
            parts.append(data.draw(st.binary(max_size=12)))
    wire = bytearray(b''.join(parts))
    for _ in range(data.draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if wire:
            wire[data.draw(st.integers(0, len(wire) - 1))] = \
                data.draw(st.integers(0, 255))
    return bytes(wire)


def _chunks(data, wire):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)),
                                     max_size=6)))
    return [wire[a:b] for a, b in zip([0] + cuts, cuts + [len(wire)])]


def _frames_of(fb, take, chunks, pure):
    """Feed ``chunks`` and take every frame after each; the frames, or
    the error that ended it, and where the buffer stands."""
    got = []
    for chunk in chunks:
        fb.feed(chunk)
        while True:
            if pure:
                with _PurePath():
                    kind, value = _outcome(take)
            else:
                kind, value = _outcome(take)
            if kind == 'error':
                got.append(value)
                return got, len(fb)
            if value is None:
                break
            got.append(value)
    return got, len(fb)


@compiled
@SETTINGS
@given(st.data())
def test_frames_are_read_the_same_at_any_chunking(data):
    wire = _stream(data)
    chunks = _chunks(data, wire)
    max_payload = data.draw(st.sampled_from([131064, 200, 40]))
    collect_min = data.draw(st.sampled_from([65536, 60, 2]))
    pure, fast = FrameBuffer(max_payload), FrameBuffer(max_payload)
    for fb in (pure, fast):
        fb.collect_min = collect_min
    reader = method_framing.frame_reader(fast)
    assert isinstance(reader, speedups.NextFrame)
    assert _frames_of(fast, reader, chunks, False) == \
        _frames_of(pure, pure.next_frame, chunks, True)


class _Connection:
    """What frame_handler needs of a connection, and the buffer it reads
    (``inbound_frames``: content taken whole from it)."""

    def __init__(self, max_payload, max_message_size):
        self.bytes_recv = 0
        self.inbound_frames = FrameBuffer(max_payload)
        if max_message_size is not None:
            self.max_message_size = max_message_size


def _summary(content):
    if content is None:
        return None
    if isinstance(content, method_framing.OversizedContent):
        return ('oversized', content.body_size, content.properties,
                content.limit)
    return (type(content), content.body, content.properties,
            content.channel, content.delivery_info, content.frame_method,
            content.frame_args, content.body_size)


def _handled(conn, handler, chunks, pure):
    calls = []
    fb = conn.inbound_frames
    take = fb.next_frame if pure else method_framing.frame_reader(fb)
    for chunk in chunks:
        fb.feed(chunk)
        while True:
            kind, value = _outcome(take)
            if kind == 'error':
                return calls, value, conn.bytes_recv, len(fb)
            if value is None:
                break
            kind, done = _outcome(handler, value)
            if kind == 'error':
                return calls, done, conn.bytes_recv, len(fb)
            calls.append(done)
    return calls, None, conn.bytes_recv, len(fb)


@compiled
@SETTINGS
@given(st.data())
def test_frames_become_the_same_method_calls(data):
    wire = _stream(data)
    chunks = _chunks(data, wire)
    max_payload = data.draw(st.sampled_from([131064, 200]))
    limit = data.draw(st.sampled_from([None, None, 0, 3, 100, 2 ** 70,
                                       -1, 1.5]))
    collect_min = data.draw(st.sampled_from([65536, 60]))
    results = []
    for pure in (True, False):
        conn = _Connection(max_payload, limit)
        conn.inbound_frames.collect_min = collect_min
        calls = []

        def callback(channel, sig, payload, content, calls=calls):
            calls.append((channel, sig, payload, _summary(content)))
        if pure:
            with _PurePath():
                handler = method_framing.frame_handler(conn, callback)
                outcome = _handled(conn, handler, chunks, True)
        else:
            handler = method_framing.frame_handler(conn, callback)
            assert isinstance(handler, speedups.FrameHandler)
            outcome = _handled(conn, handler, chunks, False)
        results.append((calls, outcome))
    assert results[1] == results[0]


@compiled
def test_a_delivery_taken_whole_is_a_complete_message():
    conn = _Connection(131064, None)
    got = []
    handler = method_framing.frame_handler(
        conn, lambda *call: got.append(call))
    wire = frame(1, 1, struct.pack('>HH', 60, 60) + b'\x03ctgxyz') + \
        frame(2, 1, struct.pack('>HHQ', 60, 0, 2) +
              encode_properties_basic({'content_type': 'a/b'})) + \
        frame(3, 1, b'hi')
    conn.inbound_frames.feed(wire)
    assert handler(conn.inbound_frames.next_frame()) is True
    (channel, sig, payload, msg), = got
    assert (channel, sig) == (1, (60, 60))
    # spec's own tuple, which the channel's lookups find by identity
    assert sig is spec.Basic.Deliver
    assert type(msg) is amqp.Message
    assert (msg.body, msg.properties, msg.body_size) == (
        b'hi', {'content_type': 'a/b'}, 2)
    assert (msg.frame_method, msg.frame_args) == ((60, 60), payload)
    assert msg.channel is None and msg.delivery_info is None
    assert msg.content_type == 'a/b'
    assert conn.bytes_recv == 3


class _Sink:
    def __init__(self):
        self.written = []

    def write(self, data):
        self.written.append(bytes(data))

    def writev(self, parts):
        self.written.append(b''.join(bytes(p) for p in parts))


class _Outbound:
    def __init__(self, frame_max):
        self.bytes_sent = 0
        self.frame_max = frame_max


_BODIES = st.one_of(st.binary(max_size=200), st.text(max_size=20),
                    st.just(b'x' * 40000), st.just(None),
                    st.binary(max_size=20).map(bytearray))


@compiled
@SETTINGS
@given(st.data())
def test_frames_are_written_the_same(data):
    frame_max = data.draw(st.sampled_from([None, 0, 131072, 4096, 60, 20]))
    calls = []
    for _ in range(data.draw(st.integers(1, 4))):
        sig = data.draw(st.sampled_from(_CONTENT_SIGS + _OTHER_SIGS))
        args = data.draw(st.one_of(st.none(), st.binary(max_size=80)))
        content = None
        if data.draw(st.booleans()):
            props = data.draw(properties_strategy)
            if data.draw(st.booleans()):
                props['x_bad'] = object()   # (refused: not a property)
            content = (data.draw(_BODIES), props)
        calls.append((data.draw(st.sampled_from([1, 1, 2])),
                      data.draw(st.sampled_from([0, 1, 65535])), sig, args,
                      content))
    results = []
    for pure in (True, False):
        conn, sink = _Outbound(frame_max), _Sink()
        if pure:
            with _PurePath():
                writer = method_framing.frame_writer(conn, sink)
        else:
            writer = method_framing.frame_writer(conn, sink)
            assert isinstance(writer, speedups.FrameWriter)
        outcomes = []
        for type_, channel, sig, args, content in calls:
            if content is None:
                outcomes.append(_outcome(writer, type_, channel, sig, args))
            else:
                msg = amqp.Message(content[0], **content[1])
                outcomes.append(_outcome(writer, type_, channel, sig, args,
                                         msg))
                outcomes.append(msg.properties.get('content_encoding'))
        results.append((outcomes, sink.written, conn.bytes_sent))
    assert results[1] == results[0]


_ENCODER_FORMATS = ['Lb', 'Bssbb', 'Bsbbb', 'olLBbbbbbbbbbs', 's', 'Bsssb',
                    'lBb', 'o']
class _IntSubclass(int):
    pass


_ODD_VALUES = st.sampled_from([
    None, True, False, -1, 0, 1, 255, 256, 65535, 65536, 2 ** 32 - 1,
    2 ** 32, 2 ** 64 - 1, 2 ** 64, 1.0, '', 'a' * 255, 'a' * 256,
    '\udc80', 'é' * 128, b'raw', _IntSubclass(3)])


@compiled
@SETTINGS
@given(st.sampled_from(_ENCODER_FORMATS), st.data())
def test_arguments_encode_the_same(fmt, data):
    with _NoTwins():
        pure = serialization._compile_encoder(fmt)
    fast = serialization._compile_encoder(fmt)
    assert isinstance(fast, speedups.ArgsEncoder)
    values = [data.draw(st.one_of(_LETTER_VALUES[c] if c in _LETTER_VALUES
                                  else st.booleans(), _ODD_VALUES))
              for c in fmt]
    if data.draw(st.booleans()):
        values = tuple(values)
    if data.draw(st.integers(0, 9)) == 0:
        values = values[:-1]
    assert _outcome(fast, values) == _outcome(pure, values)


class _NoTwins:
    def __enter__(self):
        self.saved = serialization.speedups
        serialization.speedups = None

    def __exit__(self, *exc):
        serialization.speedups = self.saved


@compiled
def test_body_buffer_hands_out_a_fresh_bytes_and_its_view():
    body, view = speedups.body_buffer(5)
    view[:] = b'hello'
    assert body == b'hello' and type(body) is bytes
    assert not view.readonly and len(view) == 5
    other, _ = speedups.body_buffer(5)
    assert other is not body
    for bad in (0, 1, -1):
        with pytest.raises(ValueError):
            speedups.body_buffer(bad)


@compiled
def test_a_collected_body_is_the_bytes_it_was_received_into():
    body = bytes(range(256)) * 300
    wire = frame(2, 1, struct.pack('>HHQ', 60, 0, len(body)) + b'\x00\x00')
    for at in range(0, len(body), 4096):
        wire += frame(3, 1, body[at:at + 4096])
    fb = FrameBuffer(131064)
    fb.feed(wire[:20000])
    assert fb.next_frame()[0] == 2
    assert fb.collecting
    assert fb.next_frame() is None
    views = fb.direct_targets()
    rest = memoryview(wire)[20000:]
    n = 0
    for v in views:
        k = min(len(v), len(rest) - n)
        v[:k] = rest[n:n + k]
        n += k
    fb.direct_filled_many(n)
    kind, channel, got = fb.next_frame()
    assert (kind, channel, got) == (3, 1, body)
    assert type(got) is bytes
    assert fb._body is None and fb._plan is None


@compiled
def test_not_in_says_what_the_lambda_says():
    """``publishing._not_in``: the compiled condition of a confirm wait
    answers as ``lambda: key not in container`` at every moment, and
    refuses arguments."""
    from amqp import publishing
    unsettled = {1: None, 2: None}
    compiled_check = publishing._not_in(2, unsettled)
    assert isinstance(compiled_check, speedups.NotIn)
    assert compiled_check() is False
    del unsettled[2]
    assert compiled_check() is True
    unsettled[2] = None
    assert compiled_check() is False
    with pytest.raises(TypeError):
        compiled_check(1)
    with pytest.raises(TypeError):
        speedups.NotIn(1, None)()    # (as ``1 not in None`` raises)
