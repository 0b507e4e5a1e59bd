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
from amqp import serialization
from amqp.exceptions import FrameSyntaxError
from amqp.serialization import decode_properties_basic_py, \
    encode_properties_basic

from testkit import properties_strategy

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
