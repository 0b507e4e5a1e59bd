"""amqp.serialization against hand-written wire bytes.

Layouts come from the AMQP 0-9-1 spec (4.2.5 data types, the method
definitions of amqp0-9-1.xml) and, for field-table value tags, RabbitMQ's
"AMQP 0-9-1 errata" page: signed ``b s I l``, unsigned ``B u i``, plus
``t f d D S x A T F V``.  The expected bytes are written out here by hand,
piece by piece, never produced by the code under test.
"""
import struct
from datetime import datetime, timezone
from decimal import Decimal

import pika.data as pika_data  # test-only dependency
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amqp import serialization, spec, tables
from amqp.exceptions import AMQPError, FrameSyntaxError
from amqp.serialization import (decode_properties_basic, decode_table, dumps,
                                dumps_method,
                                encode_properties_basic, encode_table, loads)
from testkit import properties_strategy as _properties  # noqa: I001
from testkit import tables_strategy as _tables
from testkit import (ALL_PROPERTIES, CROSS_TABLE, basic_properties,
                     method_payload, naive_utc, pika_method_class)

SETTINGS = settings(max_examples=200)   # the rest: conftest's profile

EMPTY_TABLE = b'\x00\x00\x00\x00'


def table(body):
    """Length-prefix a hand-written table/array body."""
    return struct.pack('>I', len(body)) + body


# ---------------------------------------------------------------------------
# Every method: sample arguments and the exact argument bytes.

METHOD_VECTORS = {
    'connection.start': (
        (0, 9, {'product': 'RabbitMQ'}, 'PLAIN AMQPLAIN', 'en_US'),
        b'\x00' b'\x09'
        b'\x00\x00\x00\x15' b'\x07product' b'S\x00\x00\x00\x08RabbitMQ'
        b'\x00\x00\x00\x0ePLAIN AMQPLAIN'
        b'\x00\x00\x00\x05en_US'),
    'connection.start-ok': (
        ({'product': 'amqp'}, 'PLAIN', '\x00guest\x00guest', 'en_US'),
        b'\x00\x00\x00\x11' b'\x07product' b'S\x00\x00\x00\x04amqp'
        b'\x05PLAIN'
        b'\x00\x00\x00\x0c\x00guest\x00guest'
        b'\x05en_US'),
    'connection.secure': (('challenge',), b'\x00\x00\x00\x09challenge'),
    'connection.secure-ok': (('response',), b'\x00\x00\x00\x08response'),
    'connection.tune': ((2047, 131072, 60),
                        b'\x07\xff' b'\x00\x02\x00\x00' b'\x00\x3c'),
    'connection.tune-ok': ((1024, 4096, 30),
                           b'\x04\x00' b'\x00\x00\x10\x00' b'\x00\x1e'),
    'connection.open': (('/', '', False), b'\x01/' b'\x00' b'\x00'),
    'connection.open-ok': (('',), b'\x00'),
    'connection.close': ((404, 'NOT_FOUND', 50, 10),
                         b'\x01\x94' b'\x09NOT_FOUND' b'\x00\x32' b'\x00\x0a'),
    'connection.close-ok': ((), b''),
    'connection.blocked': (('low on memory',), b'\x0dlow on memory'),
    'connection.unblocked': ((), b''),
    'connection.update-secret': (('token', 'refresh'),
                                 b'\x00\x00\x00\x05token' b'\x07refresh'),
    'connection.update-secret-ok': ((), b''),
    'channel.open': (('',), b'\x00'),
    'channel.open-ok': (('',), b'\x00\x00\x00\x00'),
    'channel.flow': ((True,), b'\x01'),
    'channel.flow-ok': ((False,), b'\x00'),
    'channel.close': ((406, 'PRECONDITION_FAILED', 50, 10),
                      b'\x01\x96' b'\x13PRECONDITION_FAILED'
                      b'\x00\x32' b'\x00\x0a'),
    'channel.close-ok': ((), b''),
    # bits: exclusive=1, passive=2, active=4, write=8, read=16
    'access.request': (('/data', False, True, True, True, True),
                       b'\x05/data' b'\x1e'),
    'access.request-ok': ((1,), b'\x00\x01'),
    # bits: passive=1, durable=2, auto_delete=4, internal=8, nowait=16
    'exchange.declare': (
        (0, 'logs', 'fanout', False, True, False, False, False, {}),
        b'\x00\x00' b'\x04logs' b'\x06fanout' b'\x02' + EMPTY_TABLE),
    'exchange.declare-ok': ((), b''),
    'exchange.delete': ((0, 'logs', True, False),
                        b'\x00\x00' b'\x04logs' b'\x01'),
    'exchange.delete-ok': ((), b''),
    'exchange.bind': (
        (0, 'dst', 'src', 'rk', False, {'x-match': 'all'}),
        b'\x00\x00' b'\x03dst' b'\x03src' b'\x02rk' b'\x00'
        b'\x00\x00\x00\x10' b'\x07x-match' b'S\x00\x00\x00\x03all'),
    'exchange.bind-ok': ((), b''),
    'exchange.unbind': (
        (0, 'dst', 'src', 'rk', True, {}),
        b'\x00\x00' b'\x03dst' b'\x03src' b'\x02rk' b'\x01' + EMPTY_TABLE),
    'exchange.unbind-ok': ((), b''),
    # bits: passive=1, durable=2, exclusive=4, auto_delete=8, nowait=16
    'queue.declare': (
        (0, 'tasks', False, True, False, False, False,
         {'x-queue-type': 'quorum'}),
        b'\x00\x00' b'\x05tasks' b'\x02'
        b'\x00\x00\x00\x18' b'\x0cx-queue-type' b'S\x00\x00\x00\x06quorum'),
    'queue.declare-ok': (('tasks', 3, 1),
                         b'\x05tasks' b'\x00\x00\x00\x03' b'\x00\x00\x00\x01'),
    'queue.bind': (
        (0, 'tasks', 'amq.direct', 'tasks', False, {}),
        b'\x00\x00' b'\x05tasks' b'\x0aamq.direct' b'\x05tasks' b'\x00'
        + EMPTY_TABLE),
    'queue.bind-ok': ((), b''),
    'queue.purge': ((0, 'tasks', False), b'\x00\x00' b'\x05tasks' b'\x00'),
    'queue.purge-ok': ((42,), b'\x00\x00\x00\x2a'),
    # bits: if_unused=1, if_empty=2, nowait=4
    'queue.delete': ((0, 'tasks', True, True, False),
                     b'\x00\x00' b'\x05tasks' b'\x03'),
    'queue.delete-ok': ((7,), b'\x00\x00\x00\x07'),
    'queue.unbind': (
        (0, 'tasks', 'amq.topic', 'a.*', {}),
        b'\x00\x00' b'\x05tasks' b'\x09amq.topic' b'\x03a.*' + EMPTY_TABLE),
    'queue.unbind-ok': ((), b''),
    'basic.qos': ((0, 10, False),
                  b'\x00\x00\x00\x00' b'\x00\x0a' b'\x00'),
    'basic.qos-ok': ((), b''),
    # bits: no_local=1, no_ack=2, exclusive=4, nowait=8
    'basic.consume': (
        (0, 'tasks', 'ctag-1', False, True, False, False, {'x-priority': 5}),
        b'\x00\x00' b'\x05tasks' b'\x06ctag-1' b'\x02'
        b'\x00\x00\x00\x10' b'\x0ax-priority' b'I\x00\x00\x00\x05'),
    'basic.consume-ok': (('ctag-1',), b'\x06ctag-1'),
    'basic.cancel': (('ctag-1', False), b'\x06ctag-1' b'\x00'),
    'basic.cancel-ok': (('ctag-1',), b'\x06ctag-1'),
    # bits: mandatory=1, immediate=2
    'basic.publish': ((0, 'amq.direct', 'tasks', True, False),
                      b'\x00\x00' b'\x0aamq.direct' b'\x05tasks' b'\x01'),
    'basic.return': ((312, 'NO_ROUTE', 'amq.direct', 'nowhere'),
                     b'\x01\x38' b'\x08NO_ROUTE' b'\x0aamq.direct'
                     b'\x07nowhere'),
    'basic.deliver': (('ctag-1', 1, False, '', 'tasks'),
                      b'\x06ctag-1' b'\x00\x00\x00\x00\x00\x00\x00\x01'
                      b'\x00' b'\x00' b'\x05tasks'),
    'basic.get': ((0, 'tasks', True), b'\x00\x00' b'\x05tasks' b'\x01'),
    'basic.get-ok': ((2 ** 40, True, 'ex', 'rk', 5),
                     b'\x00\x00\x01\x00\x00\x00\x00\x00' b'\x01'
                     b'\x02ex' b'\x02rk' b'\x00\x00\x00\x05'),
    'basic.get-empty': (('',), b'\x00'),
    'basic.ack': ((1, True), b'\x00\x00\x00\x00\x00\x00\x00\x01' b'\x01'),
    'basic.reject': ((2 ** 64 - 1, True),
                     b'\xff\xff\xff\xff\xff\xff\xff\xff' b'\x01'),
    'basic.recover-async': ((True,), b'\x01'),
    'basic.recover': ((False,), b'\x00'),
    'basic.recover-ok': ((), b''),
    # bits: multiple=1, requeue=2
    'basic.nack': ((3, False, True),
                   b'\x00\x00\x00\x00\x00\x00\x00\x03' b'\x02'),
    'confirm.select': ((False,), b'\x00'),
    'confirm.select-ok': ((), b''),
    'tx.select': ((), b''),
    'tx.select-ok': ((), b''),
    'tx.commit': ((), b''),
    'tx.commit-ok': ((), b''),
    'tx.rollback': ((), b''),
    'tx.rollback-ok': ((), b''),
}


def test_every_method_has_a_vector():
    assert set(METHOD_VECTORS) == set(spec.METHODS_BY_NAME)


@pytest.mark.parametrize('name', sorted(METHOD_VECTORS))
def test_method_vectors_are_what_pika_writes(name):
    # The hand-written bytes checked by a second, independent encoder.
    args, expected = METHOD_VECTORS[name]
    assert method_payload(pika_method_class(name)(*args))[4:] == expected


@pytest.mark.parametrize('name', sorted(METHOD_VECTORS))
def test_method_arguments_encode_to_exact_bytes(name):
    args, expected = METHOD_VECTORS[name]
    assert dumps(spec.METHODS_BY_NAME[name].args, args) == expected


@pytest.mark.parametrize('name', sorted(METHOD_VECTORS))
def test_method_arguments_decode_from_exact_bytes(name):
    args, wire = METHOD_VECTORS[name]
    fmt = spec.METHODS_BY_NAME[name].args
    values, offset = loads(fmt, wire, 0)
    assert values == list(args)
    assert offset == len(wire)
    # Arguments start at offset 4 of a method frame payload.
    values, offset = loads(fmt, b'\x00\x3c\x00\x28' + wire, 4)
    assert values == list(args) and offset == len(wire) + 4


@pytest.mark.parametrize('name', sorted(METHOD_VECTORS))
def test_method_arguments_truncated_anywhere_raise_syntax_error(name):
    args, wire = METHOD_VECTORS[name]
    fmt = spec.METHODS_BY_NAME[name].args
    for cut in range(len(wire)):
        with pytest.raises(FrameSyntaxError):
            loads(fmt, wire[:cut])


def test_loads_accepts_bytearray_memoryview_and_bytes_format():
    wire = b'\x00\x00\x00\x00\x00\x00\x00\x01\x01'
    assert loads('Lb', bytearray(wire)) == ([1, True], 9)
    assert loads('Lb', memoryview(wire)) == ([1, True], 9)
    assert loads(b'Lb', wire) == ([1, True], 9)
    assert dumps(b'Lb', (1, True)) == wire


def test_nine_bits_take_two_octets():
    assert dumps('bbbbbbbbb', (True,) * 9) == b'\xff\x01'
    assert loads('bbbbbbbbb', b'\xff\x01')[0] == [True] * 9


def test_bits_separated_by_other_fields_start_new_octets():
    assert dumps('bob', (True, 7, True)) == b'\x01\x07\x01'
    assert loads('bob', b'\x01\x07\x01') == ([True, 7, True], 3)


def test_remaining_format_letters():
    # f: 32-bit float, x: longstr as bytes, A: field array, T: timestamp.
    assert dumps('f', (1.5,)) == b'\x3f\xc0\x00\x00'
    assert loads('f', b'\x3f\xc0\x00\x00') == ([1.5], 4)
    assert dumps('x', (b'\x00\xff',)) == b'\x00\x00\x00\x02\x00\xff'
    assert loads('x', b'\x00\x00\x00\x02\x00\xff') == ([b'\x00\xff'], 6)
    assert dumps('A', ([1, 'a'],)) == table(b'I\x00\x00\x00\x01'
                                            b'S\x00\x00\x00\x01a')
    assert loads('A', table(b'I\x00\x00\x00\x01'))[0] == [[1]]
    ts = b'\x00\x00\x00\x00\x65\x53\xf1\x00'  # 1700000000
    assert dumps('T', (1700000000,)) == ts
    assert dumps('T', (datetime(2023, 11, 14, 22, 13, 20),)) == ts
    assert dumps('T', (datetime(2023, 11, 14, 22, 13, 20,
                                tzinfo=timezone.utc),)) == ts
    assert loads('T', ts)[0] == [datetime(2023, 11, 14, 22, 13, 20)]


def test_longstr_argument_given_as_bytes_is_sent_verbatim():
    assert dumps('S', (b'\x00\xffraw',)) == b'\x00\x00\x00\x05\x00\xffraw'


def test_non_utf8_shortstr_survives_a_round_trip():
    values, _ = loads('s', b'\x02\xff\xfe')
    assert dumps('s', values) == b'\x02\xff\xfe'


# ---------------------------------------------------------------------------
# Field-table value tags, as RabbitMQ sends them.

TAG_VECTORS = [
    ('t', b't\x01', True),
    ('t', b't\x00', False),
    ('b', b'b\xff', -1),
    ('b', b'b\x7f', 127),
    ('B', b'B\xff', 255),
    ('s', b's\xff\xfe', -2),
    ('u', b'u\xff\xfe', 65534),
    ('I', b'I\xff\xff\xff\xfd', -3),
    ('i', b'i\xff\xff\xff\xfd', 4294967293),
    ('l', b'l\xff\xff\xff\xff\xff\xff\xff\xfc', -4),
    ('l', b'l\x7f\xff\xff\xff\xff\xff\xff\xff', 2 ** 63 - 1),
    # py-amqp writes every int beyond 32 bits as 'L' (signed)
    ('L', b'L\x00\x00\x01\x00\x00\x00\x00\x00', 2 ** 40),
    ('L', b'L\xff\xff\xff\xff\x7f\xff\xff\xff', -2 ** 31 - 1),
    ('U', b'U\xff\xfe', -2),
    ('f', b'f\x3f\xc0\x00\x00', 1.5),
    ('d', b'd\x40\x04\x00\x00\x00\x00\x00\x00', 2.5),
    ('D', b'D\x02\x00\x00\x04\xd2', Decimal('12.34')),
    ('D', b'D\x00\xff\xff\xff\xf9', Decimal('-7')),
    ('S', b'S\x00\x00\x00\x02hi', 'hi'),
    ('S', b'S\x00\x00\x00\x02\xc3\xa9', '\xe9'),
    ('S', b'S\x00\x00\x00\x00', ''),
    ('x', b'x\x00\x00\x00\x02\x00\xff', b'\x00\xff'),
    ('A', b'A\x00\x00\x00\x08' b'I\x00\x00\x00\x01' b't\x01' b'V',
     [1, True, None]),
    ('A', b'A\x00\x00\x00\x00', []),
    ('T', b'T\x00\x00\x00\x00\x65\x53\xf1\x00',
     datetime(2023, 11, 14, 22, 13, 20)),
    ('F', b'F\x00\x00\x00\x07' b'\x01bS\x00\x00\x00\x00', {'b': ''}),
    ('F', b'F\x00\x00\x00\x00', {}),
    ('V', b'V', None),
]


@pytest.mark.parametrize('tag, wire, value', TAG_VECTORS)
def test_table_value_tag_decodes(tag, wire, value):
    got, offset = decode_table(table(b'\x01a' + wire))
    assert got == {'a': value}
    assert type(got['a']) is type(value)
    assert offset == 4 + 2 + len(wire)


@pytest.mark.parametrize('tag, wire, value', TAG_VECTORS)
def test_table_value_tag_inside_an_array(tag, wire, value):
    got, _ = decode_table(table(b'\x01aA' + table(wire + wire)))
    assert got == {'a': [value, value]}


def test_longstr_that_is_not_utf8_decodes_as_bytes():
    # RabbitMQ uses 'S' for binary too; keep what cannot be text as bytes.
    got, _ = decode_table(table(b'\x01aS\x00\x00\x00\x02\xff\xfe'))
    assert got == {'a': b'\xff\xfe'}


def test_table_decodes_from_an_offset_and_from_bytearray():
    wire = b'junk' + table(b'\x01aI\x00\x00\x00\x01')
    assert decode_table(wire, 4) == ({'a': 1}, len(wire))
    assert decode_table(bytearray(wire), 4) == ({'a': 1}, len(wire))


def _x_death(count_wire):
    # One dead-lettering event, laid out the way RabbitMQ's
    # rabbit_dead_letter builds it: count as signed 64-bit 'l', names as
    # longstr 'S', time as 'T', routing-keys as an array of 'S'.
    event = (
        b'\x05count' + count_wire +
        b'\x06reason' b'S\x00\x00\x00\x08rejected'
        b'\x05queue' b'S\x00\x00\x00\x05tasks'
        b'\x04time' b'T\x00\x00\x00\x00\x65\x53\xf1\x00'
        b'\x08exchange' b'S\x00\x00\x00\x00'
        b'\x0crouting-keys' b'A' + table(b'S\x00\x00\x00\x05tasks'
                                         b'S\x00\x00\x00\x03cc1')
    )
    return table(
        b'\x07x-death' b'A' + table(b'F' + table(event)) +
        b'\x13x-first-death-queue' b'S\x00\x00\x00\x05tasks'
    )


X_DEATH = {
    'x-death': [{
        'count': 1,
        'reason': 'rejected',
        'queue': 'tasks',
        'time': datetime(2023, 11, 14, 22, 13, 20),
        'exchange': '',
        'routing-keys': ['tasks', 'cc1'],
    }],
    'x-first-death-queue': 'tasks',
}


def test_x_death_header_as_rabbitmq_writes_it():
    wire = _x_death(b'l\x00\x00\x00\x00\x00\x00\x00\x01')
    assert decode_table(wire) == (X_DEATH, len(wire))
    assert type(decode_table(wire)[0]['x-death'][0]['count']) is int


def test_x_death_header_re_encoded():
    # Republished (kombu does so on retry) the small count becomes 'I';
    # everything else is byte-identical to what RabbitMQ sent.
    assert encode_table(X_DEATH) == _x_death(b'I\x00\x00\x00\x01')


def test_nested_arrays():
    value = {'a': [[1, [2, []]], ['x']]}
    wire = table(
        b'\x01aA' + table(
            b'A' + table(b'I\x00\x00\x00\x01' +
                         b'A' + table(b'I\x00\x00\x00\x02' +
                                      b'A\x00\x00\x00\x00')) +
            b'A' + table(b'S\x00\x00\x00\x01x')))
    assert encode_table(value) == wire
    assert decode_table(wire) == (value, len(wire))


# ---------------------------------------------------------------------------
# Which tag a Python value is given.

ENCODING_CHOICES = [
    ('v', b'S\x00\x00\x00\x01v'),
    ('\u20ac', b'S\x00\x00\x00\x03\xe2\x82\xac'),
    # bytes as a longstr, as py-amqp sends them; bytearray/memoryview
    # (which py-amqp refuses) are the way to send a byte array 'x'
    (b'\x00v', b'S\x00\x00\x00\x02\x00v'),
    (bytearray(b'v'), b'x\x00\x00\x00\x01v'),
    (memoryview(b'vw'), b'x\x00\x00\x00\x02vw'),
    (True, b't\x01'),
    (False, b't\x00'),
    (0, b'I\x00\x00\x00\x00'),
    (2 ** 31 - 1, b'I\x7f\xff\xff\xff'),
    (-2 ** 31, b'I\x80\x00\x00\x00'),
    (2 ** 31, b'l\x00\x00\x00\x00\x80\x00\x00\x00'),
    (-2 ** 31 - 1, b'l\xff\xff\xff\xff\x7f\xff\xff\xff'),
    (2 ** 63 - 1, b'l\x7f\xff\xff\xff\xff\xff\xff\xff'),
    (-2 ** 63, b'l\x80\x00\x00\x00\x00\x00\x00\x00'),
    (1.5, b'd\x3f\xf8\x00\x00\x00\x00\x00\x00'),
    (Decimal('1.23'), b'D\x02\x00\x00\x00\x7b'),
    (Decimal('-5'), b'D\x00\xff\xff\xff\xfb'),
    (Decimal('1E+2'), b'D\x00\x00\x00\x00\x64'),
    (datetime(2023, 11, 14, 22, 13, 20),
     b'T\x00\x00\x00\x00\x65\x53\xf1\x00'),
    (None, b'V'),
    ({}, b'F\x00\x00\x00\x00'),
    ({'k': 1}, b'F\x00\x00\x00\x07\x01kI\x00\x00\x00\x01'),
    ([], b'A\x00\x00\x00\x00'),
    ((1, None), b'A\x00\x00\x00\x06I\x00\x00\x00\x01V'),
]


@pytest.mark.parametrize('value, wire', ENCODING_CHOICES)
def test_encoding_choice(value, wire):
    assert encode_table({'key': value}) == table(b'\x03key' + wire)


def test_int_subclasses_and_str_subclasses_encode_like_their_base():
    class MyInt(int):
        pass

    class MyStr(str):
        pass

    assert encode_table({'a': MyInt(3), 'b': MyStr('x')}) == table(
        b'\x01aI\x00\x00\x00\x03' b'\x01bS\x00\x00\x00\x01x')


def test_str_and_int_enums_encode_their_value():
    # str() of a str-mixin Enum is 'Colour.RED'; the wire carries 'red'
    # (py-amqp encodes the string itself), keys included
    import enum

    class Colour(str, enum.Enum):
        RED = 'red'

    class Level(enum.IntEnum):
        HIGH = 7

    class MyBytes(bytes):
        pass

    assert encode_table({Colour.RED: Colour.RED, 'l': Level.HIGH,
                         'b': MyBytes(b'z')}) == table(
        b'\x03redS\x00\x00\x00\x03red' b'\x01lI\x00\x00\x00\x07'
        b'\x01bS\x00\x00\x00\x01z')


@pytest.mark.parametrize('value', [2 ** 63, -2 ** 63 - 1, 10 ** 30])
def test_int_beyond_int64_names_the_key(value):
    with pytest.raises(ValueError, match='x-too-big'):
        encode_table({'x-too-big': value})
    with pytest.raises(ValueError, match='x-too-big'):
        encode_table({'outer': {'x-too-big': value}})
    with pytest.raises(ValueError, match='x-too-big'):
        dumps('F', ({'x-too-big': value},))


@pytest.mark.parametrize('value', [object(), {1, 2}, 1j, type])
def test_value_no_tag_can_carry_names_the_key(value):
    with pytest.raises(TypeError, match='x-odd'):
        encode_table({'x-odd': value})
    with pytest.raises(TypeError, match='x-odd'):
        encode_table({'a': [{'x-odd': value}]})


@pytest.mark.parametrize('value, where', [
    ({'x-key': '\ud800'}, 'x-key'),
    ({'x-key': ['ok', '\ud800']}, 'x-key'),
    ({'outer': {'x-key': '\ud800'}}, 'x-key'),
    ({'\ud800': 1}, 'key'),
])
def test_text_that_is_not_encodable_names_the_key(value, where):
    # Lone surrogates (other than surrogateescape's) have no UTF-8 form.
    with pytest.raises(ValueError, match=where) as info:
        encode_table(value)
    assert not isinstance(info.value, UnicodeError)


def test_timestamp_must_be_finite():
    for value in (float('inf'), float('nan')):
        with pytest.raises(ValueError, match='expires_at'):
            tables.enc_timestamp(value, 'expires_at')
        with pytest.raises(ValueError, match='timestamp'):
            encode_properties_basic({'timestamp': value})
    with pytest.raises(ValueError, match='when'):
        encode_table({'when': datetime(1969, 12, 31)})


def test_table_key_must_be_a_string():
    with pytest.raises(TypeError, match='key'):
        encode_table({1: 'one'})


def test_bytes_table_key_is_decoded():
    assert encode_table({b'k': 1}) == table(b'\x01kI\x00\x00\x00\x01')


def test_table_key_longer_than_255_bytes():
    assert decode_table(encode_table({'k' * 255: 1}))[0] == {'k' * 255: 1}
    with pytest.raises(ValueError, match='255'):
        encode_table({'k' * 256: 1})
    with pytest.raises(ValueError, match='255'):
        encode_table({'\u20ac' * 86: 1})  # 258 bytes of UTF-8


def test_decimal_that_does_not_fit():
    with pytest.raises(ValueError, match='dec'):
        encode_table({'dec': Decimal(2 ** 31)})
    with pytest.raises(ValueError, match='dec'):
        encode_table({'dec': Decimal('NaN')})
    with pytest.raises(ValueError, match='dec'):
        encode_table({'dec': Decimal('Infinity')})


def test_encode_table_none_and_pairs():
    assert encode_table(None) == EMPTY_TABLE
    assert encode_table([('a', 1)]) == table(b'\x01aI\x00\x00\x00\x01')
    with pytest.raises(TypeError, match='arguments'):
        encode_table('nope', 'arguments')


def test_tables_nested_too_deep_to_encode():
    deep = {}
    inner = deep
    for _ in range(serialization.MAX_NESTING + 5):
        inner['n'] = {}
        inner = inner['n']
    with pytest.raises(ValueError, match='nested'):
        encode_table(deep)
    lst = []
    inner = lst
    for _ in range(serialization.MAX_NESTING + 5):
        inner.append([])
        inner = inner[0]
    with pytest.raises(ValueError, match='nested'):
        encode_table({'a': lst})


def test_self_referencing_table_raises_value_error_not_recursion_error():
    d = {}
    d['self'] = d
    with pytest.raises(ValueError):
        encode_table(d)


# ---------------------------------------------------------------------------
# Bad method arguments raise before anything is sent, naming the field.

def test_shortstr_longer_than_255_bytes_names_the_field():
    assert dumps('Bssbb', (0, 'e' * 255, '', False, False))[2] == 255
    with pytest.raises(ValueError, match='exchange'):
        dumps(spec.METHODS_BY_NAME['basic.publish'].args,
              (0, 'e' * 256, 'rk', False, False))
    with pytest.raises(ValueError, match='routing_key'):
        dumps(spec.METHODS_BY_NAME['basic.publish'].args,
              (0, 'ex', '\u00e9' * 128, False, False))


@pytest.mark.parametrize('name, nbytes', [
    ('\U0001F600' * 63, 252),     # 4-byte characters: fits
    ('\U0001F600' * 64, 256),     # 64 characters, 256 bytes: too long
    ('\U0001F600' * 70, 280),
    ('\u00e9' * 128, 256),        # 2-byte characters
    ('a' * 254 + '\u00e9', 256),
])
def test_name_length_is_counted_in_utf8_bytes(name, nbytes):
    method = spec.METHODS_BY_NAME['queue.declare']
    values = (0, name, False, False, False, False, False, {})
    if nbytes <= 255:
        assert dumps_method(method.sig, method.args, values)[2] == nbytes
        return
    with pytest.raises(ValueError, match=r'queue is %d bytes' % nbytes):
        dumps_method(method.sig, method.args, values)


@pytest.mark.parametrize('name', ['\ud800', 'abc\udbff', 'x\ud83d'])
def test_unencodable_name_is_a_value_error_naming_the_field(name):
    method = spec.METHODS_BY_NAME['queue.declare']
    with pytest.raises(ValueError, match='queue'):
        dumps_method(method.sig, method.args,
                     (0, name, False, False, False, False, False, {}))


def test_method_encoder_names_its_own_fields():
    # queue.bind shares its format with exchange.bind; the method's own
    # encoder names only its field
    method = spec.METHODS_BY_NAME['queue.bind']
    with pytest.raises(ValueError) as info:
        dumps_method(method.sig, method.args,
                     (0, 'q' * 300, 'ex', 'rk', False, {}))
    assert str(info.value).startswith('queue is 300 bytes')


@pytest.mark.parametrize('value', ['yes', 1.5, [], object()])
def test_flags_must_be_bool_or_int(value):
    method = spec.METHODS_BY_NAME['queue.declare']
    with pytest.raises(TypeError, match='durable must be a bool'):
        dumps_method(method.sig, method.args,
                     (0, 'q', False, value, False, False, False, {}))
    # py-amqp accepted ints and None for flags
    for ok in (0, 1, None, True):
        dumps_method(method.sig, method.args,
                     (0, 'q', False, ok, False, False, False, {}))


def test_generated_codecs_show_their_source_in_tracebacks():
    import traceback
    with pytest.raises(FrameSyntaxError) as info:
        loads('BsbL', b'\x00\x01\x05abc')
    frames = traceback.extract_tb(info.value.__traceback__)
    generated = [f for f in frames if 'amqp.serialization' in f.filename]
    assert generated, [f.filename for f in frames]
    assert generated[-1].filename == '<amqp.serialization: decoder BsbL>'
    assert generated[-1].line    # the source line, not None
    with pytest.raises(TypeError) as info:
        dumps('Bssbb', (0, 'ex', 'rk', 'yes', False))
    lines = traceback.format_tb(info.value.__traceback__)
    assert any('encoder Bssbb' in line and '_check_bit' in line
               for line in lines), lines


def test_shared_format_names_every_candidate_field():
    # exchange.bind and queue.bind share 'BsssbF'; an error for a queue
    # name must not talk only about an exchange "destination".
    with pytest.raises(ValueError, match='queue'):
        dumps(spec.METHODS_BY_NAME['queue.bind'].args,
              (0, 'q' * 300, 'ex', 'rk', False, {}))


@pytest.mark.parametrize('fmt, value', [
    ('o', -1), ('o', 256),
    ('B', -1), ('B', 65536),
    ('l', -1), ('l', 2 ** 32),
    ('L', -1), ('L', 2 ** 64),
])
def test_integer_out_of_range(fmt, value):
    with pytest.raises(ValueError, match='out of range'):
        dumps(fmt, (value,))


@pytest.mark.parametrize('fmt, value', [
    ('o', 2 ** 8 - 1), ('B', 2 ** 16 - 1), ('l', 2 ** 32 - 1),
    ('L', 2 ** 64 - 1), ('o', 0), ('L', 0),
])
def test_integer_limits_accepted(fmt, value):
    assert loads(fmt, dumps(fmt, (value,)))[0] == [value]


def test_integer_errors_name_the_field():
    with pytest.raises(ValueError, match='prefetch_count'):
        dumps(spec.METHODS_BY_NAME['basic.qos'].args, (0, 70000, False))
    with pytest.raises(ValueError, match='delivery_tag'):
        dumps(spec.METHODS_BY_NAME['basic.ack'].args, (-1, False))
    with pytest.raises(TypeError, match='delivery_tag'):
        dumps(spec.METHODS_BY_NAME['basic.ack'].args, ('1', False))


@pytest.mark.parametrize('fmt, value', [
    ('o', '1'), ('B', 1.0), ('l', b'1'), ('L', [1]),
    ('s', 1), ('s', 1.5), ('S', 12), ('S', object()),
    ('F', 'not a table'), ('F', 5),
    ('T', 'yesterday'),
    ('f', 'x'), ('f', None),
])
def test_wrong_types_raise_type_error(fmt, value):
    with pytest.raises(TypeError):
        dumps(fmt, (value,))


def test_int_like_values_are_accepted():
    class Tag(int):
        pass

    assert dumps('L', (Tag(5),)) == b'\x00\x00\x00\x00\x00\x00\x00\x05'


def test_wrong_number_of_values():
    with pytest.raises(TypeError):
        dumps('Lb', (1,))
    with pytest.raises(TypeError):
        dumps('Lb', (1, True, 3))


def test_unknown_format_letter():
    with pytest.raises(ValueError):
        dumps('Q', (1,))


# ---------------------------------------------------------------------------
# Decoding failures are always amqp.exceptions errors.

VALID_TABLES = [
    table(b'\x01aS\x00\x00\x00\x02hi' b'\x01bI\x00\x00\x00\x01'),
    table(b'\x01aF' + table(b'\x01bA' + table(b'I\x00\x00\x00\x01'
                                               b'S\x00\x00\x00\x01x'))),
    table(b'\x01aT\x00\x00\x00\x00\x65\x53\xf1\x00' b'\x01bD\x02\x00\x00\x04'
          b'\xd2' b'\x01cd\x40\x04\x00\x00\x00\x00\x00\x00' b'\x01dt\x01'
          b'\x01eV' b'\x01fx\x00\x00\x00\x01z' b'\x01gl' + b'\x00' * 8),
] + [table(b'\x01a' + wire) for _, wire, _ in TAG_VECTORS]


@pytest.mark.parametrize('wire', VALID_TABLES)
def test_truncated_table_at_every_cut_point(wire):
    decode_table(wire)
    for cut in range(len(wire)):
        with pytest.raises(FrameSyntaxError):
            decode_table(wire[:cut])


@pytest.mark.parametrize('wire', VALID_TABLES)
def test_table_length_one_short_or_one_long(wire):
    n, = struct.unpack_from('>I', wire)
    if n == 0:
        return
    for delta in (-1, 1):
        bad = struct.pack('>I', n + delta) + wire[4:]
        with pytest.raises(FrameSyntaxError):
            decode_table(bad + b'\x00' * 16)[0]


@pytest.mark.parametrize('wire', [
    table(b'\x01aS\x00\x00\x00\x09hi'),          # string past its table
    table(b'\x01aS\x00\x00\x00\x09hi') + b'x' * 20,
    table(b'\x01ax\xff\xff\xff\xffhi'),          # 4 GiB byte array
    table(b'\x01aA\x00\x00\x00\x09I\x00\x00\x00\x01'),
    table(b'\x01aF\x00\x00\x00\x09\x01bV'),
    table(b'\x09aV'),                            # key past the table
    table(b'\x01a'),                             # key without a value
    b'\x00\x00\x01\x00' + b'\x01aV',             # table past the buffer
    table(b'\x01aI\x00\x00'),                    # int past the table
    table(b'\x01aI\x00\x00') + b'\x00\x00',
    table(b'\x01aS\x00\x00') + b'\x00\x00',
    table(b'\x01aT\xff\xff\xff\xff\xff\xff\xff\xff'),  # year > 9999
])
def test_lengths_running_past_the_buffer(wire):
    with pytest.raises(FrameSyntaxError):
        decode_table(wire)


@pytest.mark.parametrize('tag', [b'Z', b'\x00', b'\xff', b'c', b'e'])
def test_unknown_tag(tag):
    with pytest.raises(FrameSyntaxError, match='tag'):
        decode_table(table(b'\x01a' + tag + b'\x00' * 8))


def _nested_tables(depth):
    wire = b'\x00\x00\x00\x00'
    for _ in range(depth):
        wire = table(b'\x01nF' + wire)
    return wire


def _nested_arrays(depth):
    wire = b'A\x00\x00\x00\x00'
    for _ in range(depth):
        wire = b'A' + table(wire)
    return table(b'\x01a' + wire)


def test_nesting_up_to_the_limit_decodes():
    decode_table(_nested_tables(serialization.MAX_NESTING - 1))
    decode_table(_nested_arrays(serialization.MAX_NESTING - 2))


@pytest.mark.parametrize('depth', [serialization.MAX_NESTING + 1, 5000])
def test_nesting_beyond_the_limit_is_a_syntax_error(depth):
    with pytest.raises(FrameSyntaxError, match='nested'):
        decode_table(_nested_tables(depth))
    with pytest.raises(FrameSyntaxError, match='nested'):
        decode_table(_nested_arrays(depth))
    with pytest.raises(FrameSyntaxError):
        loads('BsF', b'\x00\x00\x00' + _nested_tables(depth))


@pytest.mark.parametrize('fmt, wire', [
    ('s', b'\x05abc'),
    ('S', b'\x00\x00\x00\x05abc'),
    ('S', b'\xff\xff\xff\xffabc'),
    ('x', b'\x00\x00\x00\x05abc'),
    ('F', b'\x00\x00\x00\x05abc'),
    ('A', b'\x00\x00\x00\x05abc'),
    ('A', b'\x00\x00\x00\x01Q'),
    ('T', b'\xff' * 8),
    ('b', b''),
    ('L', b'\x00' * 7),
])
def test_method_argument_errors(fmt, wire):
    with pytest.raises(FrameSyntaxError):
        loads(fmt, wire)


def test_decode_errors_are_connection_errors_with_syntax_error_code():
    with pytest.raises(FrameSyntaxError) as info:
        decode_table(b'\x00\x00')
    assert info.value.reply_code == 502
    assert isinstance(info.value, AMQPError)


# ---------------------------------------------------------------------------
# Basic content properties.

# testkit.ALL_PROPERTIES, written out by hand
ALL_PROPERTIES_WIRE = (
    b'\xff\xfc'
    b'\x10application/json'
    b'\x05utf-8'
    + table(b'\x09x-retriesI\x00\x00\x00\x02' b'\x05traceS\x00\x00\x00\x03abc')
    + b'\x02'
    b'\x09'
    b'\x03c-1'
    b'\x15amq.rabbitmq.reply-to'
    b'\x0560000'
    b'\x03m-1'
    b'\x00\x00\x00\x00\x65\x53\xf1\x00'
    b'\x04task'
    b'\x05guest'
    b'\x06celery'
    b'\x01c'
)


def test_all_fourteen_properties_exact_bytes():
    assert encode_properties_basic(ALL_PROPERTIES) == ALL_PROPERTIES_WIRE
    props, offset = decode_properties_basic(ALL_PROPERTIES_WIRE)
    assert props == ALL_PROPERTIES
    assert offset == len(ALL_PROPERTIES_WIRE)


@pytest.mark.parametrize('name, value, flags, wire', [
    ('content_type', 'a', 0x8000, b'\x01a'),
    ('content_encoding', 'a', 0x4000, b'\x01a'),
    ('application_headers', {}, 0x2000, EMPTY_TABLE),
    ('delivery_mode', 2, 0x1000, b'\x02'),
    ('priority', 0, 0x0800, b'\x00'),
    ('correlation_id', 'a', 0x0400, b'\x01a'),
    ('reply_to', 'a', 0x0200, b'\x01a'),
    ('expiration', 'a', 0x0100, b'\x01a'),
    ('message_id', 'a', 0x0080, b'\x01a'),
    ('timestamp', 1, 0x0040, b'\x00\x00\x00\x00\x00\x00\x00\x01'),
    ('type', 'a', 0x0020, b'\x01a'),
    ('user_id', 'a', 0x0010, b'\x01a'),
    ('app_id', 'a', 0x0008, b'\x01a'),
    ('cluster_id', 'a', 0x0004, b'\x01a'),
])
def test_property_flag_bits(name, value, flags, wire):
    encoded = encode_properties_basic({name: value})
    assert encoded == struct.pack('>H', flags) + wire
    assert decode_properties_basic(encoded) == ({name: value}, len(encoded))


def test_no_properties():
    assert encode_properties_basic({}) == b'\x00\x00'
    assert encode_properties_basic(None) == b'\x00\x00'
    assert decode_properties_basic(b'\x00\x00') == ({}, 2)


def test_none_and_unknown_properties_are_skipped():
    assert encode_properties_basic(
        {'content_type': None, 'x-unknown': 'v', 'priority': 1}) == \
        b'\x08\x00\x01'


def test_timestamp_property_given_as_datetime_comes_back_as_int_seconds():
    encoded = encode_properties_basic(
        {'timestamp': datetime(2023, 11, 14, 22, 13, 20)})
    assert encoded == b'\x00\x40\x00\x00\x00\x00\x65\x53\xf1\x00'
    assert decode_properties_basic(encoded)[0] == {'timestamp': 1700000000}


def test_continuation_flag_words_are_skipped():
    wire = b'\x80\x01' b'\x00\x01' b'\x00\x00' b'\x01a'
    assert decode_properties_basic(wire) == ({'content_type': 'a'}, 8)


def test_unknown_property_flags_are_syntax_errors():
    with pytest.raises(FrameSyntaxError):
        decode_properties_basic(b'\x00\x02')
    with pytest.raises(FrameSyntaxError):
        decode_properties_basic(b'\x00\x01\x80\x00')


def test_truncated_properties_at_every_cut_point():
    for cut in range(len(ALL_PROPERTIES_WIRE)):
        with pytest.raises(FrameSyntaxError):
            decode_properties_basic(ALL_PROPERTIES_WIRE[:cut])


@pytest.mark.parametrize('name, value, exc', [
    ('content_type', 'x' * 256, ValueError),
    ('content_type', 5, TypeError),
    ('delivery_mode', 256, ValueError),
    ('priority', -1, ValueError),
    ('priority', 'high', TypeError),
    ('application_headers', 'nope', TypeError),
    ('application_headers', {'k': object()}, TypeError),
    ('timestamp', 'now', TypeError),
    ('timestamp', -1, ValueError),
])
def test_bad_properties_name_the_property(name, value, exc):
    with pytest.raises(exc, match=name if name != 'application_headers'
                       else '(application_headers|k)'):
        encode_properties_basic({name: value})


def test_header_frame_payload():
    payload = serialization.encode_header_frame_payload(
        5, {'delivery_mode': 2})
    assert payload == (b'\x00\x3c' b'\x00\x00'
                       b'\x00\x00\x00\x00\x00\x00\x00\x05'
                       b'\x10\x00' b'\x02')
    assert serialization.decode_header_frame_payload(payload) == (
        60, 5, {'delivery_mode': 2})
    for cut in range(len(payload)):
        with pytest.raises(FrameSyntaxError):
            serialization.decode_header_frame_payload(payload[:cut])
    with pytest.raises(FrameSyntaxError, match='class'):
        serialization.decode_header_frame_payload(
            b'\x00\x32' + payload[2:])


# ---------------------------------------------------------------------------
# The encoders' caches stay bounded and never change what is encoded.

def test_key_cache_is_bounded_and_transparent():
    for i in range(tables._KEY_CACHE_MAX * 2 + 3):
        key = 'k%d' % i
        assert encode_table({key: 1}) == table(
            bytes((len(key),)) + key.encode() + b'I\x00\x00\x00\x01')
    assert len(tables._KEY_CACHE) <= tables._KEY_CACHE_MAX
    with pytest.raises(ValueError, match='255'):  # never cached
        encode_table({'k' * 256: 1})
    with pytest.raises(ValueError, match='255'):
        encode_table({'k' * 256: 1})


def test_property_shape_cache_is_bounded_and_transparent():
    for i in range(serialization._PROP_SHAPES_MAX + 20):
        props = {'content_type': 'a', 'x-extra-%d' % i: 1}
        assert encode_properties_basic(props) == b'\x80\x00\x01a'
    assert len(serialization._PROP_SHAPES) <= serialization._PROP_SHAPES_MAX


def test_same_property_names_with_different_none_values():
    assert encode_properties_basic({'content_type': 'a', 'priority': None}) \
        == b'\x80\x00\x01a'
    assert encode_properties_basic({'content_type': None, 'priority': 1}) \
        == b'\x08\x00\x01'
    assert encode_properties_basic({'content_type': None, 'priority': None}) \
        == b'\x00\x00'


def test_property_order_given_does_not_matter():
    a = encode_properties_basic({'priority': 1, 'content_type': 'a'})
    b = encode_properties_basic({'content_type': 'a', 'priority': 1})
    assert a == b == b'\x88\x00\x01a\x01'


def test_reserved_high_bits_of_a_bit_octet_are_ignored():
    assert loads('bb', b'\xfc') == ([False, False], 1)
    assert loads('b', b'\xff') == ([True], 1)


def test_surrogate_escaped_text_goes_out_as_it_came_in():
    # Undecodable bytes come in as U+DC80..U+DCFF and go out unchanged.
    got, _ = decode_properties_basic(b'\x80\x00\x02\xff\xfe')
    assert encode_properties_basic(got) == b'\x80\x00\x02\xff\xfe'
    key = b'\xffk'.decode('utf-8', 'surrogateescape')
    assert encode_table({key: 'v\udcff'}) == table(
        b'\x02\xffkS\x00\x00\x00\x02v\xff')
    assert dumps('s', (key,)) == b'\x02\xffk'


# ---------------------------------------------------------------------------
# Hypothesis: round trips and garbage.

@SETTINGS
@given(_tables)
def test_any_table_round_trips(value):
    wire = encode_table(value)
    assert decode_table(wire) == (value, len(wire))
    assert loads('F', dumps('F', (value,)))[0] == [value]


@SETTINGS
@given(_properties)
def test_any_properties_round_trip(props):
    wire = encode_properties_basic(props)
    assert decode_properties_basic(wire) == (props, len(wire))


_ALL_FORMATS = sorted({m.args for m in spec.METHODS.values()} | {'ATfx'})


@SETTINGS
@given(st.sampled_from(_ALL_FORMATS), st.binary(max_size=64))
def test_garbage_into_loads_raises_only_amqp_errors(fmt, data):
    try:
        loads(fmt, data)
    except AMQPError:
        pass


def _tagged_garbage():
    # Mostly-valid tags make the decoder go deeper than pure noise would.
    tags = [bytes([c]) for c in b'tbBsuUIilLfdDSxATFV']
    piece = st.one_of(st.sampled_from(tags), st.binary(min_size=1, max_size=4))
    return st.lists(piece, max_size=30).map(b''.join)


@SETTINGS
@given(st.one_of(st.binary(max_size=80), _tagged_garbage()
                 .map(lambda b: struct.pack('>I', len(b)) + b)))
def test_garbage_into_decode_table_raises_only_amqp_errors(data):
    try:
        decode_table(data)
    except AMQPError:
        pass


@SETTINGS
@given(st.binary(max_size=80))
def test_garbage_into_decode_properties_raises_only_amqp_errors(data):
    try:
        decode_properties_basic(data)
    except AMQPError:
        pass
    try:
        serialization.decode_header_frame_payload(b'\x00\x3c' + data)
    except AMQPError:
        pass


# ---------------------------------------------------------------------------
# Cross-implementation: pika 1.x reads and writes the same tables.

def _pika_encode(value):
    pieces = []
    pika_data.encode_table(pieces, value)
    return b''.join(pieces)


def test_tables_encoded_by_pika_decode_here():
    # pika writes bytes as a byte array 'x' (and cannot encode bytearray)
    value = dict(CROSS_TABLE, raw=b'\x00\xff')
    wire = _pika_encode(value)
    assert decode_table(wire) == (value, len(wire))


def test_bytes_reach_pika_as_py_amqp_sends_them():
    # 'S' like py-amqp: text when it is UTF-8, bytes when it is not
    wire = encode_table({'text': b'abc', 'binary': b'\xff\x00'})
    assert pika_data.decode_table(wire, 0)[0] == {'text': 'abc',
                                                  'binary': b'\xff\x00'}


def test_tables_encoded_here_decode_in_pika():
    wire = encode_table(CROSS_TABLE)
    theirs, offset = pika_data.decode_table(wire, 0)
    assert (naive_utc(theirs), offset) == (CROSS_TABLE, len(wire))


@pytest.mark.parametrize('tag, wire, value', TAG_VECTORS)
def test_every_tag_rabbitmq_sends_reads_as_pika_reads_it(tag, wire, value):
    # pika cannot write b B s u i f d, but it reads them all: a second
    # reading of the hand-written bytes of each tag.
    wire = table(b'\x01a' + wire)
    ours = decode_table(wire)[0]['a']
    theirs = naive_utc(pika_data.decode_table(wire, 0)[0]['a'])
    if tag in 'fd':
        ours = int(ours)        # pika 1.x truncates floats to int
    assert ours == theirs


def test_timestamps_cross_pika():
    when = datetime(2023, 11, 14, 22, 13, 20)
    ours = decode_table(_pika_encode({'t': when}))[0]['t']
    assert ours == when
    theirs = pika_data.decode_table(encode_table({'t': when}), 0)[0]['t']
    # pika 1.x returns an aware UTC datetime; ours is naive UTC (py-amqp's).
    assert theirs == when.replace(tzinfo=timezone.utc)


def test_floats_cross_pika():
    # pika cannot encode floats and truncates 'd'/'f' to int when decoding
    # (a pika bug), so only check that pika reads our bytes as a double.
    wire = encode_table({'f': 2.75, 'i': 1})
    assert pika_data.decode_table(wire, 0) == ({'f': 2, 'i': 1}, len(wire))
    wire = table(b'\x01fd' + struct.pack('>d', 2.75))
    assert decode_table(wire)[0] == {'f': 2.75}


# what pika can write: no floats; text pika can encode; no bytes (pika
# writes them as 'x', py-amqp and we as 'S': see test_bytes_reach_pika_*)
_pika_keys = st.text(st.characters(blacklist_categories=['Cs']), max_size=12)
_pika_tables = st.dictionaries(_pika_keys, st.recursive(
    st.one_of(st.none(), st.booleans(),
              st.text(st.characters(blacklist_categories=['Cs']),
                      max_size=10),
              st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1)),
    lambda c: st.one_of(st.lists(c, max_size=3),
                        st.dictionaries(_pika_keys, c, max_size=3)),
    max_leaves=10), max_size=5)


@SETTINGS
@given(_pika_tables)
def test_any_table_crosses_pika_both_ways(value):
    ours = encode_table(value)
    theirs = _pika_encode(value)
    assert ours == theirs
    assert pika_data.decode_table(ours, 0) == (value, len(ours))
    assert decode_table(theirs) == (value, len(theirs))


_pika_shortstr = st.text(st.characters(blacklist_categories=['Cs']),
                         max_size=40).filter(lambda t: len(t.encode()) < 256)


@SETTINGS
@given(st.fixed_dictionaries({}, optional={
    'content_type': _pika_shortstr,
    'application_headers': _pika_tables,
    'delivery_mode': st.integers(0, 255),
    'priority': st.integers(0, 255),
    'reply_to': _pika_shortstr,
    'timestamp': st.integers(0, 2 ** 64 - 1),
    'cluster_id': _pika_shortstr,
}))
def test_any_properties_cross_pika_both_ways(props):
    theirs = b''.join(basic_properties(props).encode())
    assert encode_properties_basic(props) == theirs
    assert decode_properties_basic(theirs) == (props, len(theirs))
