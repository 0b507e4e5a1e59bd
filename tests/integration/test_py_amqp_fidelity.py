"""py-amqp behaviours programs rely on, against RabbitMQ (issue 9):
nameko polls ``returned_messages``; celery's tests and user code wrap
``basic_publish_confirm``; messages go in sets and carry attributes of
their own; a Message subclass publishes its own raw properties; a channel
never opened is refused by the broker, not by the client; ``bytes`` header
values arrive as py-amqp's would (tests/compat/test_differential.py runs
the same on py-amqp 5.4.2)."""
import queue
import socket
import struct
import time
import uuid

import pytest

import amqp
from amqp import Message
from amqp.exceptions import ChannelNotOpen, NoRoute


def _name(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:10])


def _get(ch, q, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = ch.basic_get(q, no_ack=True)
        if msg is not None:
            return msg
        time.sleep(0.02)
    raise AssertionError('nothing arrived on %s' % q)


def test_returned_messages_is_a_queue_nameko_can_poll(conn, ch):
    assert isinstance(ch.returned_messages, queue.Queue)
    returned = []
    ch.events['basic_return'].add(
        lambda exc, exchange, routing_key, message: returned.append(exc))
    ch.basic_publish(Message(b'lost'), routing_key=_name('nowhere'),
                     mandatory=True)
    deadline = time.monotonic() + 5
    while not returned and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=0.2)
        except socket.timeout:
            pass
    assert isinstance(returned[0], NoRoute)
    # returns go to the event handlers; like py-amqp, nothing is queued
    with pytest.raises(queue.Empty):
        ch.returned_messages.get_nowait()


class _Recording(amqp.Channel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def basic_publish_confirm(self, *args, **kwargs):
        self.calls.append((args, dict(kwargs)))
        return super().basic_publish_confirm(*args, **kwargs)


class _RecordingConnection(amqp.Connection):
    Channel = _Recording


def test_confirm_publish_hands_the_callers_arguments_to_the_confirm(broker):
    conn = _RecordingConnection('%s:%s' % (broker.host, broker.port),
                                confirm_publish=True)
    with conn:
        ch = conn.channel()
        q = ch.queue_declare('', exclusive=True).queue
        msg1, msg2 = Message(b'1'), Message(b'2')
        ch.basic_publish(msg1, exchange='', routing_key=q, mandatory=False)
        ch.basic_publish(msg2, '', q, False, False, None, 5)
        assert ch.calls == [
            ((msg1,), {'exchange': '', 'routing_key': q,
                       'mandatory': False}),
            ((msg2, '', q, False, False, None, 5), {}),
        ]
        assert ch.calls[0][1]['routing_key'] == q     # celery's assertion
        assert ch.queue_declare(q, passive=True).message_count == 2


def test_messages_in_sets_and_with_attributes_of_their_own(ch):
    q = ch.queue_declare('', exclusive=True).queue
    for n in range(3):
        ch.basic_publish(Message(b'same'), routing_key=q)
    got = [_get(ch, q) for _ in range(3)]
    pending = set(got)             # identical bodies, three messages
    assert len(pending) == 3
    for msg in got:
        msg.attempts = 1
        assert msg.ready and msg.body_received == msg.body_size == 4
    pending.discard(got[0])
    assert got[0] not in pending and got[1] in pending


class RawTypes(Message):
    """Headers with table types the encoder never picks ('s' short, 'b'
    signed octet, 'u' unsigned short), as py-amqp's own tests send them."""

    def _serialize_properties(self):
        table = (b'\x05shortsU\xff' b'\x04byteb\xfe' b'\x03ushu\x01\x00')
        return b'\x20\x00' + struct.pack('>I', len(table)) + table


def test_message_subclass_publishes_its_own_raw_properties(ch):
    q = ch.queue_declare('', exclusive=True).queue
    ch.basic_publish(RawTypes(b'raw'), routing_key=q)
    msg = _get(ch, q)
    assert msg.body == b'raw'
    assert msg.headers == {'short': 0x55ff, 'byte': -2, 'ush': 256}


def test_channel_never_opened_is_refused_by_the_broker(conn):
    channel = amqp.Channel(conn)          # constructed, not opened
    with pytest.raises(ChannelNotOpen) as info:
        channel.queue_declare(_name('never'))
    # RabbitMQ closes the whole connection: 504 CHANNEL_ERROR
    assert info.value.reply_code == 504
    assert 'channel.open' in info.value.reply_text
    assert not conn.connected


def test_bytes_header_arrives_as_py_amqp_sends_it(ch):
    q = ch.queue_declare('', exclusive=True).queue
    ch.basic_publish(Message(b'x', application_headers={
        'text': b'caf\xc3\xa9', 'binary': b'\xff\x00',
        'array': bytearray(b'\xff'), 'big': 2 ** 40}), routing_key=q)
    assert _get(ch, q).headers == {'text': 'caf\xe9', 'binary': b'\xff\x00',
                                   'array': b'\xff', 'big': 2 ** 40}


@pytest.mark.parametrize('where', ['instance', 'class'])
def test_a_wrapped_send_method_or_wait_sees_basic_get(conn, monkeypatch,
                                                      where):
    """Tracing tools wrap ``send_method`` and ``wait`` (celery's compat
    worker here wraps ``Channel.wait``): ``basic_get``'s short path must
    not go around them."""
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    ch.basic_publish(Message(b'one'), routing_key=q)
    ch.basic_publish(Message(b'two'), routing_key=q)
    sent, waited = [], []
    original_send, original_wait = amqp.Channel.send_method, \
        amqp.Channel.wait

    def send_method(self, sig, *args, **kwargs):
        sent.append(sig)
        return original_send(self, sig, *args, **kwargs)

    def wait(self, method, *args, **kwargs):
        waited.append(method)
        return original_wait(self, method, *args, **kwargs)

    target = ch if where == 'instance' else amqp.Channel
    if where == 'instance':
        monkeypatch.setattr(ch, 'send_method',
                            send_method.__get__(ch, amqp.Channel))
    else:
        monkeypatch.setattr(amqp.Channel, 'send_method', send_method)
    msg = _get(ch, q)
    assert msg.body == b'one'
    assert sent == [amqp.spec.Basic.Get]
    monkeypatch.undo()
    if where == 'instance':
        monkeypatch.setattr(ch, 'wait', wait.__get__(ch, amqp.Channel))
    else:
        monkeypatch.setattr(target, 'wait', wait)
    msg = _get(ch, q)
    assert msg.body == b'two'
    assert waited == [[amqp.spec.Basic.GetOk, amqp.spec.Basic.GetEmpty]]
    monkeypatch.undo()
    assert ch.basic_get(q) is None   # and the short path once more
    ch.close()
