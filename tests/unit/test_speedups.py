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
from amqp import serialization, spec
from amqp.exceptions import FrameSyntaxError
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
