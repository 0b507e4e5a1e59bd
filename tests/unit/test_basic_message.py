"""amqp.basic_message.Message: py-amqp's message object (spec 1.8, basic)."""
import copy
import pickle

import pytest

from amqp import spec
from amqp.basic_message import Message
from amqp.serialization import (decode_properties_basic,
                                encode_properties_basic)
from testkit import (ALL_PROPERTIES, basic_properties, naive_utc,
                     properties_dict)

ALL = ALL_PROPERTIES


def test_defaults():
    msg = Message()
    assert msg.body == ''
    assert msg.properties == {}
    assert msg.channel is None
    assert msg.delivery_info is None
    assert msg.delivery_tag is None
    assert msg.headers is None
    assert msg.application_headers is None
    assert msg.body_size == 0


def test_properties_are_attributes():
    msg = Message(b'body', **ALL)
    for name, value in ALL.items():
        assert getattr(msg, name) == value
    assert msg.headers == ALL['application_headers']
    assert msg.properties == ALL


def test_unset_property_is_an_attribute_error():
    msg = Message(b'')
    with pytest.raises(AttributeError):
        msg.priority
    assert getattr(msg, 'priority', 'default') == 'default'
    assert not hasattr(msg, 'no_such_thing')
    with pytest.raises(AttributeError):
        msg.__no_dunder__


def test_positional_children_and_channel_like_py_amqp():
    channel = object()
    msg = Message(b'b', None, channel, content_type='x')
    assert msg.channel is channel
    assert msg.properties == {'content_type': 'x'}


def test_callers_may_set_their_own_attributes():
    # kombu/celery and user code hang their own state on messages, as
    # py-amqp allows; properties still read as attributes beside them.
    msg = Message(b'', content_type='x')
    msg.retries = 3
    assert msg.retries == 3 and msg.content_type == 'x'
    assert 'retries' not in msg.properties


def test_properties_table_lists_the_fourteen_with_their_types():
    assert [name for name, _ in Message.PROPERTIES] == [
        name for name, _ in spec.BASIC_PROPERTIES]
    types = dict(Message.PROPERTIES)
    assert types['application_headers'] == 'F'
    assert types['delivery_mode'] == 'o' and types['priority'] == 'o'
    assert types['content_type'] == 's'
    assert Message.CLASS_ID == 60


def test_properties_cross_a_content_header_both_ways():
    # each direction read by an independent codec (pika's)
    msg = Message(b'', **ALL)
    theirs = b''.join(basic_properties(msg.properties).encode())
    props, _ = decode_properties_basic(theirs)
    assert props == msg.properties
    ours = encode_properties_basic(msg.properties)
    assert ours == theirs
    back = basic_properties(None)
    back.decode(ours)
    assert naive_utc(properties_dict(back)) == msg.properties


def test_hashable_and_equal_by_identity_like_py_amqp():
    # sets and dict keys of messages (pending acks, in-flight tracking)
    a, b = Message(b'a', priority=1), Message(b'a', priority=1)
    assert a == a and a != b
    assert len({a, b, a}) == 2
    assert {a: 1}[a] == 1 and hash(a) == hash(a)


def test_serialize_and_load_properties():
    msg = Message(b'', **ALL)
    raw = msg._serialize_properties()
    assert raw == encode_properties_basic(ALL)
    other = Message()
    assert other._load_properties(60, b'xx' + raw, 2) == len(raw) + 2
    assert other.properties == ALL
    assert Message()._serialize_properties() == b'\x00\x00'


def test_inbound_header_and_body_assemble_the_body():
    raw = Message(content_type='text/plain')._serialize_properties()
    msg = Message()
    assert not msg.ready and msg.body_received == 0
    header = b'\x00\x3c\x00\x00' + (5).to_bytes(8, 'big') + raw
    assert msg.inbound_header(header) == 12
    assert msg.body_size == 5 and not msg.ready
    assert msg.properties == {'content_type': 'text/plain'}
    msg.inbound_body(b'ab')
    assert not msg.ready and msg.body_received == 2
    msg.inbound_body(b'cde')
    assert msg.ready and msg.body == b'abcde' and msg.body_received == 5


def test_empty_body_is_ready_after_its_header():
    msg = Message()
    msg.inbound_header(b'\x00\x3c\x00\x00' + bytes(8) + b'\x00\x00')
    assert msg.ready and msg.body_size == 0


def test_received_message_is_ready():
    from amqp.method_framing import frame_handler

    class Conn:
        bytes_recv = 0

    got = []
    on_frame = frame_handler(Conn(), lambda *a: got.append(a[3]))
    on_frame((1, 1, b'\x00\x3c\x00\x3c' + bytes(20)))
    on_frame((2, 1, b'\x00\x3c\x00\x00' + (3).to_bytes(8, 'big') +
              b'\x00\x00'))
    on_frame((3, 1, b'abc'))
    msg, = got
    assert msg.ready and msg.body_received == 3 and msg.body == b'abc'


def test_repr():
    assert 'hello' in repr(Message(b'hello', content_type='x'))
    long_repr = repr(Message(b'x' * 100))
    assert '100 bytes' in long_repr and len(long_repr) < 200


@pytest.mark.parametrize('dup', [
    lambda m: pickle.loads(pickle.dumps(m)),
    lambda m: pickle.loads(pickle.dumps(m, protocol=2)),
    copy.copy,
    copy.deepcopy,
])
def test_pickle_and_copy(dup):
    msg = Message(b'body', **ALL)
    msg.delivery_info = {'delivery_tag': 5, 'exchange': 'ex'}
    msg.retries = 2
    clone = dup(msg)
    assert (clone.body, clone.properties) == (msg.body, msg.properties)
    assert clone.retries == 2
    assert clone.delivery_info == msg.delivery_info
    assert clone.channel is None
    assert clone.headers == ALL['application_headers']


def test_delivery_tag_from_delivery_info():
    msg = Message(b'')
    msg.delivery_info = {'delivery_tag': 42}
    assert msg.delivery_tag == 42


@pytest.mark.parametrize('action', ['ack', 'reject', 'nack'])
def test_acking_a_message_that_was_not_received(action):
    with pytest.raises(ValueError, match=action):
        getattr(Message(b''), action)()
    msg = Message(b'', channel=object())
    with pytest.raises(ValueError, match=action):
        getattr(msg, action)()


def test_repr_shows_delivery_info_properties_and_a_body_preview():
    msg = Message(b'y' * 500, content_type='text/plain', priority=3,
                  application_headers={'k': 'v' * 200})
    msg.delivery_info = {'delivery_tag': 7, 'exchange': 'ex',
                         'routing_key': 'rk', 'redelivered': True,
                         'consumer_tag': 'ctag'}
    text = repr(msg)
    for part in ("delivery_tag=7", "exchange='ex'", "routing_key='rk'",
                 'redelivered=True', "consumer_tag='ctag'",
                 "content_type='text/plain'", 'priority=3',
                 '500 bytes', "body=b'" + 'y' * 40 + "'..."):
        assert part in text
    assert 'v' * 100 not in text   # long properties are cut short
    assert len(text) < 400


def test_repr_of_a_str_body_counts_characters():
    assert '50 characters' in repr(Message('é' * 50))
    assert repr(Message(b'')).endswith("body=b''>")
