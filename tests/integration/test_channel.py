"""Channel lifecycle, attributes, broker channel errors and bad input,
end to end against the session's RabbitMQ (AMQP 0-9-1 class channel and
section 1.5; RabbitMQ error codes)."""

import pytest

from amqp import Message
from amqp.channel import Channel
from amqp.exceptions import (AccessRefused, ChannelNotOpen, NotFound,
                             PreconditionFailed, RecoverableConnectionError,
                             ResourceLocked)
from amqp.protocol import queue_declare_ok_t
from testkit import unique_name


# -- lifecycle and attributes --------------------------------------------

def test_open_attributes(conn):
    opened = []
    ch = Channel(conn, on_open=opened.append)
    assert not ch.is_open
    ch.open()
    assert ch.is_open and opened == [ch]
    assert isinstance(ch.channel_id, int) and ch.channel_id > 0
    assert ch.connection is conn
    assert conn.channels[ch.channel_id] is ch
    assert set(ch.events) == set() or isinstance(ch.events, dict)
    for name in ('basic_return', 'basic_ack', 'basic_nack'):
        assert ch.events[name] == set()
    assert ch.callbacks == {} and ch.cancel_callbacks == {}
    assert ch.no_ack_consumers == set()


def test_explicit_channel_id_and_then(conn):
    ch = conn.channel(7)
    assert ch.channel_id == 7 and conn.channel(7) is ch
    seen = []
    ch.then(seen.append)
    assert seen == [ch]


def test_close_clears_connection_and_id_is_reused(conn):
    ch = conn.channel()
    cid = ch.channel_id
    assert ch.close() is None
    assert ch.connection is None and not ch.is_open
    assert cid not in conn.channels
    ch.close()  # harmless twice
    assert conn.channel().channel_id == cid


def test_context_manager_closes(conn):
    with conn.channel() as ch:
        ch.queue_declare(unique_name('cm'), exclusive=True)
    assert ch.connection is None


@pytest.mark.parametrize('call', [
    lambda ch: ch.queue_declare('x'),
    lambda ch: ch.basic_publish(Message(b'x'), '', 'x'),
    lambda ch: ch.basic_get('x'),
    lambda ch: ch.basic_ack(1),
    lambda ch: ch.basic_qos(0, 1, False),
    lambda ch: ch.exchange_declare('x', 'direct'),
    lambda ch: ch.tx_select(),
    lambda ch: ch.confirm_select(),
    lambda ch: ch.flow(True),
])
def test_calls_on_closed_channel_raise_not_attribute_error(conn, call):
    ch = conn.channel()
    ch.close()
    with pytest.raises((ChannelNotOpen, RecoverableConnectionError)):
        call(ch)


def test_basic_cancel_on_closed_channel_is_harmless(conn):
    ch = conn.channel()
    ch.close()
    assert ch.basic_cancel('nope') is None


def test_calls_after_connection_closed(broker):
    c = broker.connect()
    ch = c.channel()
    c.close()
    assert ch.connection is None
    with pytest.raises((ChannelNotOpen, RecoverableConnectionError)):
        ch.queue_declare('x')


def test_flow_true(ch):
    assert ch.flow(True) is True
    assert ch.is_open


# -- broker channel errors -------------------------------------------------

def _assert_usable(conn):
    ch = conn.channel()
    assert isinstance(ch.queue_declare('', exclusive=True),
                      queue_declare_ok_t)


def _assert_closed_by_broker(ch, code):
    # Closed by the broker, and reopened (same id) on its next use, as
    # py-amqp does: kombu keeps using its default_channel after an error.
    assert not ch.is_open and ch.connection is not None
    channel_id = ch.channel_id
    assert isinstance(ch.queue_declare('', exclusive=True),
                      queue_declare_ok_t)
    assert ch.is_open and ch.channel_id == channel_id
    assert ch.connection.channels[channel_id] is ch


def test_strict_channel_stays_closed_after_broker_error(conn, ch):
    ch.auto_revive = False
    with pytest.raises(NotFound):
        ch.queue_declare(unique_name('missing'), passive=True)
    assert ch.connection is None and not ch.is_open
    with pytest.raises(ChannelNotOpen) as info:
        ch.queue_declare('anything')
    assert info.value.reply_code == 404
    _assert_usable(conn)


def test_revived_channel_has_no_consumers_or_confirms(conn, ch):
    q = ch.queue_declare('', exclusive=True, auto_delete=False).queue
    ch.confirm_select()
    tag = ch.basic_consume(q, callback=lambda m: None)
    with pytest.raises(NotFound):
        ch.queue_declare(unique_name('missing'), passive=True)
    assert ch.callbacks == {} and tag not in ch.callbacks
    # the next publish reopens the channel; tags restart after confirm.select
    ch.confirm_select()
    assert ch.basic_publish(Message('x'), '', q) == 1
    assert ch.wait_for_confirms(5) is True
    assert ch.queue_declare(q, passive=True).message_count == 1


def test_404_passive_queue(conn, ch):
    with pytest.raises(NotFound) as info:
        ch.queue_declare(unique_name('missing'), passive=True)
    assert info.value.reply_code == 404
    assert info.value.method_sig == (50, 10)
    _assert_closed_by_broker(ch, 404)
    _assert_usable(conn)


def test_404_publish_to_missing_exchange_raised_by_next_call(conn, ch):
    ch.basic_publish(Message(b'x'), unique_name('noexchange'), 'rk')
    with pytest.raises(NotFound):
        ch.queue_declare('', exclusive=True)
    _assert_usable(conn)


def test_403_reserved_exchange_name(conn, ch):
    with pytest.raises(AccessRefused) as info:
        ch.exchange_declare('amq.' + unique_name('x'), 'direct')
    assert info.value.reply_code == 403
    _assert_closed_by_broker(ch, 403)
    _assert_usable(conn)


def test_405_exclusive_queue_from_other_connection(broker, conn, ch):
    q = ch.queue_declare(unique_name('excl'), exclusive=True).queue
    other = broker.connect()
    try:
        och = other.channel()
        with pytest.raises(ResourceLocked) as info:
            och.queue_declare(q, passive=True)
        assert info.value.reply_code == 405
        _assert_usable(other)
    finally:
        other.close()
    assert ch.queue_declare(q, passive=True).queue == q


def test_406_redeclare_with_different_args(conn, ch):
    q = unique_name('redeclare')
    ch.queue_declare(q, exclusive=True, arguments={'x-max-length': 1})
    with pytest.raises(PreconditionFailed) as info:
        ch.queue_declare(q, exclusive=True, arguments={'x-max-length': 2})
    assert info.value.reply_code == 406
    _assert_usable(conn)


def test_exclusive_consumer_conflict(conn, ch):
    q = ch.queue_declare(unique_name('xc'), exclusive=True).queue
    ch.basic_consume(q, exclusive=True, callback=lambda m: None)
    ch2 = conn.channel()
    with pytest.raises(AccessRefused) as info:
        ch2.basic_consume(q, callback=lambda m: None)
    assert info.value.reply_code == 403
    # only ch2 was closed
    assert ch.is_open and ch.queue_declare(q, passive=True).consumer_count == 1
    _assert_usable(conn)


def test_error_on_one_channel_leaves_others_open(conn):
    a, b = conn.channel(), conn.channel()
    q = b.queue_declare('', exclusive=True).queue
    with pytest.raises(NotFound):
        a.queue_declare(unique_name('gone'), passive=True)
    assert b.is_open
    b.basic_publish(Message(b'still'), '', q)
    assert b.basic_get(q).body == b'still'


# -- bad input: raise before sending, channel stays usable ---------------

LONG = 'x' * 256


@pytest.mark.parametrize('call, exc, argname', [
    (lambda ch: ch.queue_declare(LONG), ValueError, 'queue'),
    (lambda ch: ch.queue_declare('é' * 128), ValueError, 'queue'),
    (lambda ch: ch.queue_declare(123), TypeError, 'queue'),
    (lambda ch: ch.exchange_declare(LONG, 'direct'), ValueError, 'exchange'),
    (lambda ch: ch.exchange_declare('e', 7), TypeError, 'type'),
    (lambda ch: ch.exchange_declare(['e'], 'direct'), TypeError, 'exchange'),
    (lambda ch: ch.queue_bind('q', 'amq.direct', LONG), ValueError,
     'routing_key'),
    # 70 four-byte characters: 280 bytes, though under 255 characters
    (lambda ch: ch.queue_declare('\U0001F600' * 70), ValueError, 'queue'),
    (lambda ch: ch.exchange_declare('\u00e9' * 128, 'direct'), ValueError,
     'exchange'),
    (lambda ch: ch.basic_publish(Message(b''), '', 'k\u6f22' * 64),
     ValueError, 'routing_key'),
    # a lone surrogate cannot be encoded as UTF-8 at all
    (lambda ch: ch.queue_declare('bad\ud800name'), ValueError, 'queue'),
    (lambda ch: ch.queue_bind('q', 'amq.direct', '\udfffx'), ValueError,
     'routing_key'),
    (lambda ch: ch.basic_consume('q', consumer_tag='\ud83d'), ValueError,
     'consumer_tag'),
    (lambda ch: ch.basic_publish(Message(b''), '', LONG), ValueError,
     'routing_key'),
    (lambda ch: ch.basic_publish(Message(b''), 5, 'q'), TypeError,
     'exchange'),
    (lambda ch: ch.basic_publish('not a message', '', 'q'), TypeError,
     'msg'),
    (lambda ch: ch.queue_declare('q', passive='yes'), TypeError, 'passive'),
    (lambda ch: ch.queue_declare('q', durable=[]), TypeError, 'durable'),
    (lambda ch: ch.basic_consume('q', no_ack='no'), TypeError, 'no_ack'),
    (lambda ch: ch.basic_consume('q', callback=42), TypeError, 'callback'),
    (lambda ch: ch.basic_consume('q', callback=lambda m: 0, on_cancel=1),
     TypeError, 'on_cancel'),
    (lambda ch: ch.basic_qos(0, '10', False), TypeError, 'prefetch_count'),
    (lambda ch: ch.basic_qos(0, 70000, False), ValueError, 'prefetch_count'),
    (lambda ch: ch.basic_qos(-1, 1, False), ValueError, 'prefetch_size'),
    (lambda ch: ch.basic_qos(0, 1, 'x'), TypeError, 'a_global'),
    (lambda ch: ch.basic_ack('1'), TypeError, 'delivery_tag'),
    (lambda ch: ch.basic_ack(1.0), TypeError, 'delivery_tag'),
    (lambda ch: ch.basic_ack(-1), ValueError, 'delivery_tag'),
    (lambda ch: ch.basic_nack(None), TypeError, 'delivery_tag'),
    (lambda ch: ch.basic_reject('x', True), TypeError, 'delivery_tag'),
    (lambda ch: ch.queue_declare('q', arguments=['x']), TypeError,
     'arguments'),
    (lambda ch: ch.basic_publish(Message(b'x', priority='high'), '', 'q'),
     TypeError, 'priority'),
    (lambda ch: ch.basic_publish(Message(b'x', delivery_mode='2'), '', 'q'),
     TypeError, 'delivery_mode'),
    (lambda ch: ch.basic_publish(Message(b'x', content_type=3), '', 'q'),
     TypeError, 'content_type'),
    (lambda ch: ch.basic_publish(
        Message(b'x', application_headers={'k': object()}), '', 'q'),
     TypeError, 'application_headers'),
    (lambda ch: ch.basic_publish(Message(b'x', priority=300), '', 'q'),
     ValueError, 'priority'),
    (lambda ch: ch.basic_publish(Message(12345), '', 'q'), TypeError,
     'body'),
])
def test_bad_input_raises_before_sending(conn, ch, call, exc, argname):
    q = ch.queue_declare('', exclusive=True).queue
    sent_before = conn.bytes_sent
    with pytest.raises(exc) as info:
        call(ch)
    assert argname in str(info.value)
    assert conn.bytes_sent == sent_before
    # the channel is still usable: a synchronous round trip succeeds
    assert ch.is_open
    ch.basic_publish(Message(b'ok'), '', q)
    assert ch.basic_get(q, no_ack=True).body == b'ok'
