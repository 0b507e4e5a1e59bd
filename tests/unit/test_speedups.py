"""The optional compiled twins (``amqp._speedups``) against their pure
specifications: the same values for any input, the same error (class and
message) for any malformed input, never a crash; chosen once at import,
off with ``AMQP_NO_SPEEDUPS``, visible as ``amqp.SPEEDUPS``."""
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amqp
from amqp import serialization, spec
from amqp.exceptions import FrameSyntaxError
from amqp.serialization import decode_properties_basic_py, \
    encode_properties_basic

from testkit import properties_strategy, tables_strategy

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
