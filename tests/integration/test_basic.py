"""Basic class end to end against RabbitMQ: qos, consume/cancel, get,
publish, ack/nack/reject, recover, decoding, server-sent cancel, returns,
transactions, dead-lettering, TTL, priorities, direct reply-to and bodies
of every size (AMQP 0-9-1 classes basic and tx; RabbitMQ extensions)."""
import select
import socket
import time

import pytest

from amqp import Message
from amqp.exceptions import ConsumerCancelled, NoRoute
from testkit import (drain_for, drain_until, exclusive_queue, get_eventually,
                     unique_name, wait_until)


# -- consume, deliver, cancel ---------------------------------------------

def test_consume_delivery_info_and_cancel(conn, ch):
    q = exclusive_queue(ch)
    got = []
    tag = ch.basic_consume(q, callback=got.append)
    assert isinstance(tag, str) and tag.startswith('amq.ctag')
    assert ch.callbacks[tag] == got.append
    ch.basic_publish(Message('hello', content_type='text/plain'), '', q)
    drain_until(conn, lambda: got)
    m = got[0]
    assert m.body == 'hello' and m.channel is ch
    assert m.delivery_info == {'consumer_tag': tag, 'delivery_tag': 1,
                               'redelivered': False, 'exchange': '',
                               'routing_key': q}
    assert m.properties['content_type'] == 'text/plain'
    assert m.content_type == 'text/plain'
    m.ack()
    assert ch.basic_cancel(tag) == tag
    assert tag not in ch.callbacks
    ch.basic_publish(Message('later'), '', q)
    assert ch.basic_get(q, no_ack=True).body == 'later'


def test_deliveries_behind_consume_ok_wait_for_drain_events(conn, ch):
    # kombu's "consume(); drain_events(timeout=1)" needs the queued
    # messages to arrive from drain_events, and an event loop needs the
    # socket still readable: the wait for consume-ok reads no further.
    queue = exclusive_queue(ch)
    for n in range(3):
        ch.basic_publish(Message(b'%d' % n), routing_key=queue)
    wait_until(lambda: ch.queue_declare(queue, passive=True)
               .message_count >= 3)
    got = []
    ch.basic_consume(queue, callback=got.append, no_ack=True)
    assert got == []
    assert select.select([conn.sock], [], [], 5)[0] == [conn.sock]
    conn.drain_events(timeout=5)
    assert got
    drain_until(conn, lambda: len(got) == 3)
    assert [m.body for m in got] == [b'0', b'1', b'2']


def test_consume_explicit_tag_nowait_no_ack(conn, ch):
    q = exclusive_queue(ch)
    got = []
    ch.basic_consume(q, 'my-tag', no_ack=True, nowait=True,
                     callback=got.append)
    assert 'my-tag' in ch.no_ack_consumers
    ch.basic_publish(Message(b'x'), '', q)
    drain_until(conn, lambda: got)
    assert got[0].delivery_info['consumer_tag'] == 'my-tag'
    ch.basic_cancel('my-tag', nowait=True)
    assert 'my-tag' not in ch.no_ack_consumers
    assert ch.queue_declare(q, passive=True).consumer_count == 0


def test_get_empty_and_message_count(ch):
    q = exclusive_queue(ch)
    assert ch.basic_get(q) is None
    for i in range(3):
        ch.basic_publish(Message(str(i)), '', q)
    m = get_eventually(ch, q)
    assert m.delivery_info['message_count'] == 2
    assert set(m.delivery_info) == {'delivery_tag', 'redelivered',
                                    'exchange', 'routing_key',
                                    'message_count'}
    assert m.body == '0'
    m.ack()


def test_qos_prefetch_limits_unacked(conn, ch):
    q = exclusive_queue(ch)
    assert ch.basic_qos(0, 2, False) is None
    for i in range(5):
        ch.basic_publish(Message(str(i)), '', q)
    got = []
    ch.basic_consume(q, callback=got.append)
    drain_until(conn, lambda: len(got) >= 2)
    drain_for(conn, 0.3)
    assert len(got) == 2                      # the limit holds
    got[1].ack(multiple=True)
    drain_until(conn, lambda: len(got) >= 4)
    drain_for(conn, 0.3)
    assert len(got) == 4
    ch.basic_ack(got[-1].delivery_tag)
    drain_until(conn, lambda: len(got) == 5)
    assert [m.body for m in got] == ['0', '1', '2', '3', '4']


def _data_segments_sent(sock):
    """tcpi_data_segs_out (Linux): TCP segments sent carrying data."""
    import struct
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from('=I', info, 156)[0]


@pytest.mark.parametrize('prefetch', [10, 200])
def test_acks_of_deliveries_received_together_share_segments(
        conn, ch, prefetch, monkeypatch):
    """A consumer acking each message as RabbitMQ streams them: every ack
    reaches the broker (none lost or doubled: the queue ends empty and
    the channel open), nothing stalls waiting for a held ack, and acks of
    deliveries received together leave in shared TCP segments."""
    import amqp.reader
    # (batches are cut at HOLD_LIMIT, 1 ms; a loaded machine's callbacks
    # may reach it at any delivery: what is counted here is the batching)
    monkeypatch.setattr(amqp.reader, 'HOLD_LIMIT', 1.0)
    n = 2000
    q = exclusive_queue(ch)
    for i in range(n):
        ch.basic_publish(Message(b'x'), '', q)
    wait_until(lambda: ch.queue_declare(q, passive=True)[1] == n)
    got = []

    def on_message(message):
        got.append(message.delivery_tag)
        message.channel.basic_ack(message.delivery_tag)

    sock = conn.transport.sock
    before = _data_segments_sent(sock) if conn.transport.can_hold else 0
    started = time.monotonic()
    ch.basic_qos(0, prefetch, False)
    ch.basic_consume(q, callback=on_message)
    drain_until(conn, lambda: len(got) == n, timeout=20)
    # (a batch kept to the kernel's 200 ms would take n / prefetch times
    # that: 40 s at a prefetch of 10)
    assert time.monotonic() - started < 10
    assert got == list(range(1, n + 1))
    other = conn.channel()
    wait_until(lambda: other.queue_declare(q, passive=True)[1] == 0)
    ch.close()                # unacked messages would go back to the queue
    assert other.queue_declare(q, passive=True)[1] == 0
    if conn.transport.can_hold:
        # one segment per ack without holding; about 150-350 with it
        assert _data_segments_sent(sock) - before < n // 2
    other.close()


def test_reject_and_nack_requeue_sets_redelivered(ch):
    q = exclusive_queue(ch)
    ch.basic_publish(Message('a'), '', q)
    m = get_eventually(ch, q)
    assert m.delivery_info['redelivered'] is False
    m.reject(requeue=True)
    m = get_eventually(ch, q)
    assert m.delivery_info['redelivered'] is True
    ch.basic_nack(m.delivery_tag, requeue=True)
    m = get_eventually(ch, q)
    assert m.delivery_info['redelivered'] is True and m.body == 'a'
    ch.basic_nack(m.delivery_tag, requeue=False)
    assert ch.basic_get(q) is None


def test_reject_without_requeue_drops(ch):
    q = exclusive_queue(ch)
    ch.basic_publish(Message('a'), '', q)
    m = get_eventually(ch, q)
    ch.basic_reject(m.delivery_tag, False)
    assert ch.basic_get(q) is None


def test_nack_multiple(ch):
    q = exclusive_queue(ch)
    for i in range(3):
        ch.basic_publish(Message(str(i)), '', q)
    last = None
    for _ in range(3):
        last = get_eventually(ch, q)
    ch.basic_nack(last.delivery_tag, multiple=True, requeue=True)
    bodies = [get_eventually(ch, q, no_ack=True).body for _ in range(3)]
    assert bodies == ['0', '1', '2']


def test_recover_requeue(conn, ch):
    q = exclusive_queue(ch)
    ch.basic_publish(Message('r'), '', q)
    m = get_eventually(ch, q)
    assert ch.basic_recover(requeue=True) is None
    m = get_eventually(ch, q, no_ack=True)
    assert m.body == 'r' and m.delivery_info['redelivered'] is True


@pytest.mark.parametrize('recover', ['basic_recover',
                                     'basic_recover_async'])
def test_recover_redelivers_to_consumer(conn, ch, recover):
    q = exclusive_queue(ch)
    got = []
    ch.basic_consume(q, callback=got.append)
    ch.basic_publish(Message('r'), '', q)
    drain_until(conn, lambda: got)
    # recover waits for recover-ok; recover_async has no reply
    getattr(ch, recover)(requeue=True)
    drain_until(conn, lambda: len(got) == 2)
    assert got[1].delivery_info['redelivered'] is True
    got[1].ack()


def test_auto_decode(conn, ch):
    q = exclusive_queue(ch)
    ch.basic_publish(Message('ünïcode'), '', q)
    ch.basic_publish(Message('ünïcode'.encode('latin-1'),
                             content_encoding='latin-1'), '', q)
    ch.basic_publish(Message(b'\xff\xfe', content_encoding='utf-8'), '', q)
    ch.basic_publish(Message(b'raw', content_encoding='no-such-codec'), '', q)
    ch.basic_publish(Message(b'plain'), '', q)
    bodies = [get_eventually(ch, q, no_ack=True).body for _ in range(5)]
    assert bodies == ['ünïcode', 'ünïcode', b'\xff\xfe', b'raw', b'plain']
    raw = conn.channel(auto_decode=False) if False else None
    from amqp.channel import Channel
    raw = Channel(conn, auto_decode=False)
    raw.open()
    raw.basic_publish(Message('text'), '', q)
    m = get_eventually(raw, q, no_ack=True)
    assert m.body == b'text' and m.content_encoding == 'utf-8'


def test_message_ack_and_reject_helpers(conn, ch):
    q = exclusive_queue(ch)
    got = []
    ch.basic_consume(q, callback=got.append)
    ch.basic_publish(Message('1'), '', q)
    ch.basic_publish(Message('2'), '', q)
    drain_until(conn, lambda: len(got) == 2)
    got[0].ack()
    got[1].reject(requeue=False)
    assert ch.queue_declare(q, passive=True).message_count == 0
    with pytest.raises(ValueError):
        Message('not received').ack()


# -- server-sent basic.cancel ---------------------------------------------

def test_server_cancel_calls_on_cancel(conn, ch):
    q = ch.queue_declare(unique_name('cancelme'), auto_delete=False).queue
    other = exclusive_queue(ch)
    cancelled, got = [], []
    tag = ch.basic_consume(q, callback=got.append, on_cancel=cancelled.append)
    tag2 = ch.basic_consume(other, callback=got.append)
    conn.channel().queue_delete(q)
    drain_until(conn, lambda: cancelled)
    assert cancelled == [tag]
    assert tag not in ch.callbacks and tag2 in ch.callbacks
    ch.basic_publish(Message('other'), '', other)
    drain_until(conn, lambda: got)
    assert got[0].body == 'other'


def test_server_cancel_without_on_cancel_raises(broker, conn, ch):
    q = ch.queue_declare(unique_name('cancelme'), auto_delete=False).queue
    other = exclusive_queue(ch)
    got = []
    tag = ch.basic_consume(q, callback=got.append)
    ch.basic_consume(other, callback=got.append)
    deleter = broker.connect()   # the cancel arrives during drain_events
    deleter.channel().queue_delete(q)
    deleter.close()
    with pytest.raises(ConsumerCancelled) as info:
        drain_until(conn, lambda: False)
    assert tag in str(info.value)
    assert ch.is_open and tag not in ch.callbacks
    ch.basic_publish(Message('other'), '', other)
    drain_until(conn, lambda: got)


def test_server_cancel_during_other_channels_wait_is_deferred(conn, ch):
    q = ch.queue_declare(unique_name('cancelme'), auto_delete=False).queue
    tag = ch.basic_consume(q, callback=lambda m: None)
    # The cancel for ch arrives while ch2 waits for delete-ok: ch2's call
    # must still return its own reply; ch raises from its next call.
    ch2 = conn.channel()
    assert ch2.queue_delete(q) == 0
    with pytest.raises(ConsumerCancelled) as info:
        ch.basic_qos(0, 10, False)
    assert tag in str(info.value)
    assert ch.basic_qos(0, 10, False) is None  # raised once, still usable


def test_deferred_cancel_surfaces_from_drain_events(conn, ch):
    q = ch.queue_declare(unique_name('cancelme'), auto_delete=False).queue
    tag = ch.basic_consume(q, callback=lambda m: None)
    ch2 = conn.channel()
    assert ch2.queue_delete(q) == 0  # the cancel for ch arrives meanwhile
    # ch receives nothing more; a plain event loop must still see it,
    # whether the cancel came in during ch2's wait (deferred) or after.
    with pytest.raises(ConsumerCancelled) as info:
        drain_for(conn, 5)
    assert tag in str(info.value)
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0)   # raised once only


def test_server_cancel_during_own_wait_raises_after_reply(conn, ch):
    q = ch.queue_declare(unique_name('cancelme'), auto_delete=False).queue
    tag = ch.basic_consume(q, callback=lambda m: None)
    # RabbitMQ usually sends the cancel before delete-ok, but may send it
    # after: then the next drain raises it.  Either way it is raised once,
    # after delete-ok has been consumed.
    with pytest.raises(ConsumerCancelled) as info:
        ch.queue_delete(q)
        drain_for(conn, 5)
    assert tag in str(info.value)
    assert ch.is_open and ch.basic_qos(0, 1, False) is None
    assert not ch._pending   # delete-ok was consumed, nothing left over


# -- basic.return ---------------------------------------------------------

def test_return_calls_events_handlers(conn, ch):
    returned = []
    ch.events['basic_return'].add(
        lambda *args: returned.append(args))
    rk = unique_name('nowhere')
    ch.basic_publish(Message('lost', message_id='m1'), 'amq.direct', rk,
                     mandatory=True)
    drain_until(conn, lambda: returned)
    exc, exchange, routing_key, message = returned[0]
    assert isinstance(exc, NoRoute) and exc.reply_code == 312
    assert (exchange, routing_key) == ('amq.direct', rk)
    # returned bodies are not decoded (as in py-amqp)
    assert message.body == b'lost' and message.message_id == 'm1'


def test_return_without_handler_raises_from_next_wait(conn, ch):
    ch.basic_publish(Message('lost'), '', unique_name('nowhere'),
                     mandatory=True)
    with pytest.raises(NoRoute) as info:
        drain_until(conn, lambda: False)
    assert info.value.reply_code == 312
    assert ch.is_open
    assert ch.queue_declare('', exclusive=True)


def test_non_mandatory_unroutable_is_dropped(conn, ch):
    ch.basic_publish(Message('lost'), '', unique_name('nowhere'))
    assert ch.queue_declare('', exclusive=True)


# -- transactions ---------------------------------------------------------

def test_tx_commit_and_rollback_visible_to_other_connection(broker, ch):
    q = ch.queue_declare(unique_name('tx'), auto_delete=False).queue
    other = broker.connect()
    try:
        och = other.channel()
        assert ch.tx_select() is None
        ch.basic_publish(Message('rolled back'), '', q)
        time.sleep(0.1)
        assert och.basic_get(q) is None
        assert ch.tx_rollback() is None
        ch.basic_publish(Message('committed'), '', q)
        time.sleep(0.1)
        assert och.basic_get(q) is None
        assert ch.tx_commit() is None
        m = och.basic_get(q, no_ack=True)
        assert m.body == 'committed'
        assert och.basic_get(q) is None
        # acks are transactional too
        och.basic_publish(Message('to ack'), '', q)
        m = get_eventually(ch, q)
        ch.basic_ack(m.delivery_tag)
        ch.tx_rollback()
        assert och.queue_declare(q, passive=True).message_count == 0
        ch.basic_recover(requeue=True)
        ch.tx_commit()
        assert get_eventually(och, q, no_ack=True).body == 'to ack'
    finally:
        och.queue_delete(q)
        other.close()


# -- queue arguments: dead-lettering, TTL, priority -----------------------

def test_dead_letter_x_death_header(ch):
    dlq = exclusive_queue(ch)
    q = exclusive_queue(ch, arguments={'x-dead-letter-exchange': '',
                              'x-dead-letter-routing-key': dlq})
    ch.basic_publish(Message('dead'), '', q)
    m = get_eventually(ch, q)
    m.reject(requeue=False)
    dead = get_eventually(ch, dlq, no_ack=True)
    assert dead.body == 'dead'
    death = dead.headers['x-death']
    assert isinstance(death, list) and isinstance(death[0], dict)
    entry = death[0]
    assert entry['reason'] == 'rejected' and entry['queue'] == q
    assert entry['count'] == 1 and entry['exchange'] == ''
    assert entry['routing-keys'] == [q]
    assert dead.headers['x-first-death-reason'] == 'rejected'


def test_per_message_and_queue_ttl_dead_letter(ch):
    dlq = exclusive_queue(ch)
    q = exclusive_queue(ch, arguments={'x-dead-letter-exchange': '',
                              'x-dead-letter-routing-key': dlq})
    ch.basic_publish(Message('short', expiration='50'), '', q)
    dead = get_eventually(ch, dlq, no_ack=True)
    assert dead.body == 'short'
    assert dead.headers['x-death'][0]['reason'] == 'expired'
    assert ch.basic_get(q) is None

    ttl_q = exclusive_queue(ch, arguments={'x-message-ttl': 50})
    ch.basic_publish(Message('gone'), '', ttl_q)
    time.sleep(0.3)
    assert ch.basic_get(ttl_q) is None
    ch.basic_publish(Message('kept', expiration='60000'), '', dlq)
    assert get_eventually(ch, dlq, no_ack=True).expiration == '60000'


def test_queue_expires(conn, ch):
    q = ch.queue_declare(unique_name('expires'), auto_delete=False,
                         arguments={'x-expires': 200}).queue
    time.sleep(0.8)
    from amqp.exceptions import NotFound
    with pytest.raises(NotFound):
        ch.queue_declare(q, passive=True)


def test_priority_queue(ch):
    q = exclusive_queue(ch, arguments={'x-max-priority': 10})
    ch.basic_qos(0, 1, False)
    for p in (1, 9, 5, 0):
        ch.basic_publish(Message(str(p), priority=p), '', q)
    time.sleep(0.1)
    got = [get_eventually(ch, q, no_ack=True) for _ in range(4)]
    assert [m.body for m in got] == ['9', '5', '1', '0']
    assert got[0].priority == 9


def test_direct_reply_to(broker, conn, ch):
    server_conn = broker.connect()
    try:
        server = server_conn.channel()
        rpc_q = server.queue_declare('', exclusive=True).queue
        replies = []
        ch.basic_consume('amq.rabbitmq.reply-to', no_ack=True,
                         callback=replies.append)
        ch.basic_publish(Message('ping', reply_to='amq.rabbitmq.reply-to',
                                 correlation_id='c1'), '', rpc_q)
        req = get_eventually(server, rpc_q, no_ack=True)
        assert req.reply_to.startswith('amq.rabbitmq.reply-to.')
        server.basic_publish(Message('pong',
                                     correlation_id=req.correlation_id),
                             '', req.reply_to)
        drain_until(conn, lambda: replies)
        assert replies[0].body == 'pong'
        assert replies[0].correlation_id == 'c1'
    finally:
        server_conn.close()


# -- bodies ---------------------------------------------------------------

def _sizes(frame_max):
    return [0, 1, frame_max - 1, frame_max, frame_max + 1, 10 * 2 ** 20]


@pytest.mark.parametrize('which', range(6))
def test_body_sizes_round_trip(conn, ch, which):
    size = _sizes(conn.frame_max)[which]
    body = bytes((i * 7 + 3) % 256 for i in range(size)) if size < 2 ** 20 \
        else (b'0123456789abcdef' * (size // 16 + 1))[:size]
    q = exclusive_queue(ch)
    ch.basic_publish(Message(body), '', q)
    got = []
    ch.basic_consume(q, callback=got.append, no_ack=True)
    drain_until(conn, lambda: got, timeout=20)
    assert len(got[0].body) == size and got[0].body == body
    ch.basic_publish(Message(body), '', q)  # and through basic.get
    ch.basic_cancel(got[0].delivery_info['consumer_tag'])

    def second_copy():
        if len(got) < 2:
            m = ch.basic_get(q, no_ack=True)
            if m is not None:
                return m
            # the consumer may have taken it before the cancel
            drain_for(conn, 0.05)
        return got[1] if len(got) == 2 else None

    assert wait_until(second_copy, timeout=20).body == body


def test_str_and_bytes_bodies(ch):
    q = exclusive_queue(ch)
    ch.basic_publish(Message('strbody'), '', q)
    ch.basic_publish(Message(b'bytesbody'), '', q)
    ch.basic_publish(Message(bytearray(b'ba')), '', q)
    a = get_eventually(ch, q, no_ack=True)
    b = get_eventually(ch, q, no_ack=True)
    c = get_eventually(ch, q, no_ack=True)
    assert a.body == 'strbody' and a.content_encoding == 'utf-8'
    assert b.body == b'bytesbody' and c.body == b'ba'


# -- publish argument reuse (hot path) --------------------------------------

def test_publish_alternating_destinations_route_correctly(conn, ch):
    q1 = ch.queue_declare('', exclusive=True).queue
    q2 = ch.queue_declare('', exclusive=True).queue
    for i in range(6):
        ch.basic_publish(Message(str(i)), '', q1 if i % 2 == 0 else q2)
    ch.basic_publish(Message('again'), '', q1)
    bodies = {q: [] for q in (q1, q2)}
    for q in (q1, q2):
        while True:
            m = ch.basic_get(q, no_ack=True)
            if m is None:
                break
            bodies[q].append(m.body)
    assert bodies == {q1: ['0', '2', '4', 'again'], q2: ['1', '3', '5']}


def test_publish_bad_arguments_after_good_ones_still_refused(conn, ch):
    q = ch.queue_declare('', exclusive=True).queue
    ch.basic_publish(Message('ok'), '', q)
    sent = conn.bytes_sent
    with pytest.raises(ValueError, match='routing_key'):
        ch.basic_publish(Message('x'), '', 'r' * 256)
    with pytest.raises(TypeError, match='mandatory'):
        ch.basic_publish(Message('x'), '', q, mandatory=1.5)
    with pytest.raises(TypeError, match='exchange'):
        ch.basic_publish(Message('x'), 7, q)
    assert conn.bytes_sent == sent
    ch.basic_publish(Message('ok2'), '', q)
    assert ch.basic_get(q, no_ack=True).body == 'ok'
    assert ch.basic_get(q, no_ack=True).body == 'ok2'


def test_publish_same_destination_mandatory_toggle(conn, ch):
    returned = []
    ch.events['basic_return'].add(lambda *a: returned.append(a))
    rk = unique_name('nowhere')
    ch.basic_publish(Message('a'), 'amq.direct', rk)               # dropped
    ch.basic_publish(Message('b'), 'amq.direct', rk, mandatory=True)
    drain_until(conn, lambda: returned)
    assert [r[3].body for r in returned] == [b'b']


def test_messages_over_max_message_size_are_refused_not_buffered(broker,
                                                                 ch):
    """A consumer with max_message_size=100 kB: a 300 kB delivery raises
    ContentTooLarge from drain_events, is rejected without requeue (so it
    is dead-lettered, here into a second queue), and the next message
    arrives as usual; basic.get raises the same."""
    from amqp.exceptions import ContentTooLarge
    dead = exclusive_queue(ch)
    # not exclusive: a second connection consumes from it
    q = ch.queue_declare(unique_name('big'), auto_delete=False,
                         arguments={'x-dead-letter-exchange': '',
                                    'x-dead-letter-routing-key': dead,
                                    'x-expires': 60000}).queue
    big = bytes(range(256)) * 1200          # 307,200 bytes
    ch.basic_publish(Message(big), '', q)
    ch.basic_publish(Message(b'after'), '', q)
    ch.basic_publish(Message(big), '', q)
    small = broker.connect(max_message_size=100000)
    try:
        sch = small.channel()
        got = []
        sch.basic_consume(q, callback=got.append)
        with pytest.raises(ContentTooLarge, match='307200 bytes'):
            small.drain_events(timeout=5)
        drain_until(small, lambda: got)
        assert [m.body for m in got] == [b'after']
        got[0].ack()
        with pytest.raises(ContentTooLarge):
            small.drain_events(timeout=5)
        assert small.connected
    finally:
        small.close()
    # both big ones were rejected without requeue: dead-lettered, intact
    for _ in range(2):
        deadline = time.monotonic() + 5
        msg = ch.basic_get(dead, no_ack=True)
        while msg is None and time.monotonic() < deadline:
            time.sleep(0.05)
            msg = ch.basic_get(dead, no_ack=True)
        assert msg is not None and msg.body == big
    assert ch.queue_declare(q, passive=True).message_count == 0
    ch.queue_delete(q)
