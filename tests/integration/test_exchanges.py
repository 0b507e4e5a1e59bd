"""Exchanges of every type, exchange-to-exchange bindings and the queue
methods (declare/bind/unbind/purge/delete), against RabbitMQ (AMQP 0-9-1
classes exchange and queue, RabbitMQ exchange.bind)."""

import pytest

from amqp import Message
from amqp.exceptions import NotFound, PreconditionFailed
from amqp.protocol import queue_declare_ok_t
from testkit import exclusive_queue, unique_name, wait_until


def _bodies(ch, queue):
    out = []
    while True:
        m = ch.basic_get(queue, no_ack=True)
        if m is None:
            return out
        out.append(m.body)


def test_fanout(ch):
    ex = unique_name('fan')
    ch.exchange_declare(ex, 'fanout')
    qs = [exclusive_queue(ch) for _ in range(3)]
    for q in qs:
        assert ch.queue_bind(q, ex) is None
    ch.basic_publish(Message('f'), ex, 'ignored')
    for q in qs:
        assert _bodies(ch, q) == ['f']
    ch.exchange_delete(ex)


def test_direct(ch):
    ex = unique_name('direct')
    ch.exchange_declare(ex, 'direct')
    a, b = exclusive_queue(ch), exclusive_queue(ch)
    ch.queue_bind(a, ex, 'a')
    ch.queue_bind(b, ex, 'b')
    ch.basic_publish(Message('1'), ex, 'a')
    ch.basic_publish(Message('2'), ex, 'b')
    ch.basic_publish(Message('3'), ex, 'c')
    assert _bodies(ch, a) == ['1'] and _bodies(ch, b) == ['2']


def test_topic(ch):
    ex = unique_name('topic')
    ch.exchange_declare(ex, 'topic', auto_delete=True)
    star, hash_ = exclusive_queue(ch), exclusive_queue(ch)
    ch.queue_bind(star, ex, 'stock.*.nyse')
    ch.queue_bind(hash_, ex, 'stock.#')
    for rk in ('stock.ibm.nyse', 'stock.ibm.nasdaq', 'stock', 'other.x'):
        ch.basic_publish(Message(rk), ex, rk)
    assert _bodies(ch, star) == ['stock.ibm.nyse']
    assert _bodies(ch, hash_) == ['stock.ibm.nyse', 'stock.ibm.nasdaq',
                                  'stock']


def test_headers_all_and_any(ch):
    ex = unique_name('hdr')
    ch.exchange_declare(ex, 'headers')
    q_all, q_any = exclusive_queue(ch), exclusive_queue(ch)
    ch.queue_bind(q_all, ex, arguments={'x-match': 'all', 'a': 1, 'b': 'x'})
    ch.queue_bind(q_any, ex, arguments={'x-match': 'any', 'a': 1, 'b': 'x'})
    ch.basic_publish(Message('both', application_headers={'a': 1, 'b': 'x'}),
                     ex)
    ch.basic_publish(Message('one', application_headers={'a': 1}), ex)
    ch.basic_publish(Message('none', application_headers={'a': 2}), ex)
    assert _bodies(ch, q_all) == ['both']
    assert _bodies(ch, q_any) == ['both', 'one']


def test_exchange_to_exchange_bind_unbind(ch):
    src, dst = unique_name('src'), unique_name('dst')
    # not auto_delete: unbinding would delete the source exchange
    ch.exchange_declare(src, 'topic', auto_delete=False)
    ch.exchange_declare(dst, 'fanout', auto_delete=False)
    q = exclusive_queue(ch)
    ch.queue_bind(q, dst)
    assert ch.exchange_bind(dst, src, 'a.*') is None
    ch.basic_publish(Message('routed'), src, 'a.b')
    ch.basic_publish(Message('dropped'), src, 'b.b')
    assert _bodies(ch, q) == ['routed']
    ch.exchange_unbind(dst, src, 'a.*')
    ch.basic_publish(Message('after'), src, 'a.b')
    assert _bodies(ch, q) == []
    ch.exchange_delete(src)
    ch.exchange_delete(dst)


def test_exchange_nowait_and_passive(conn, ch):
    ex = unique_name('nowait')
    assert ch.exchange_declare(ex, 'direct', nowait=True) is None
    ch.exchange_declare(ex, 'direct', passive=True)
    ch.exchange_bind(ex, 'amq.direct', 'k', nowait=True)
    ch.exchange_delete(ex, nowait=True)
    with pytest.raises(NotFound):
        ch.exchange_declare(ex, 'direct', passive=True)


def test_exchange_delete_if_unused(conn, ch):
    ex = unique_name('inuse')
    ch.exchange_declare(ex, 'direct')
    ch.queue_bind(exclusive_queue(ch), ex, 'k')
    with pytest.raises(PreconditionFailed):
        ch.exchange_delete(ex, if_unused=True)
    ch2 = conn.channel()
    ch2.exchange_delete(ex)


def test_exchange_redeclare_other_type_is_406(conn, ch):
    ex = unique_name('retype')
    ch.exchange_declare(ex, 'direct')
    with pytest.raises(PreconditionFailed):
        ch.exchange_declare(ex, 'fanout')
    conn.channel().exchange_delete(ex)


def test_queue_declare_counts_and_passive(conn, ch):
    q = unique_name('counts')
    ok = ch.queue_declare(q, exclusive=True)
    assert ok == queue_declare_ok_t(q, 0, 0)
    assert ok.queue == q and ok.message_count == 0
    for i in range(3):
        ch.basic_publish(Message(str(i)), '', q)
    # publishes reach the queue asynchronously: poll for the count
    wait_until(lambda: ch.queue_declare(q, passive=True).message_count >= 3)
    ok = ch.queue_declare(q, passive=True)
    assert (ok.message_count, ok.consumer_count) == (3, 0)
    other = conn.channel()
    other.basic_consume(q, callback=lambda m: None)
    assert ch.queue_declare(q, passive=True).consumer_count == 1
    assert ch.queue_declare(q, nowait=True, exclusive=True) is None


def test_empty_name_means_last_declared_queue(ch):
    q = ch.queue_declare('', exclusive=True).queue
    ch.queue_bind('', 'amq.direct', q)          # queue '' = last declared
    ch.basic_publish(Message('x'), 'amq.direct', q)
    ch.basic_publish(Message('y'), '', q)
    assert ch.basic_get('', no_ack=True).body == 'x'
    assert ch.queue_purge('') == 1
    ch.basic_publish(Message('z'), '', q)
    assert ch.queue_delete('') == 1
    with pytest.raises(NotFound):
        ch.queue_declare(q, passive=True)


def test_queue_bind_unbind(ch):
    q = exclusive_queue(ch)
    ch.queue_bind(q, 'amq.direct', 'k1')
    ch.basic_publish(Message('a'), 'amq.direct', 'k1')
    assert ch.queue_unbind(q, 'amq.direct', 'k1') is None
    ch.basic_publish(Message('b'), 'amq.direct', 'k1')
    assert _bodies(ch, q) == ['a']


def test_purge_and_delete_counts(conn, ch):
    q = unique_name('purge')
    ch.queue_declare(q, auto_delete=False)
    for i in range(5):
        ch.basic_publish(Message(b'x'), '', q)
    ch.basic_get(q).ack()  # a round trip through the queue: all 5 arrived
    assert ch.queue_purge(q) == 4
    assert ch.queue_purge(q) == 0
    ch.confirm_select()
    for i in range(4):
        ch.basic_publish(Message(b'x'), '', q)
    ch.wait_for_confirms(5)
    with pytest.raises(PreconditionFailed):
        ch.queue_delete(q, if_empty=True)
    ch = conn.channel()
    assert ch.queue_delete(q) == 4
    # nowait: returns nothing to wait on
    ch.queue_purge(exclusive_queue(ch), nowait=True)
    assert ch.queue_declare('', exclusive=True).message_count == 0


def test_queue_delete_if_unused(conn, ch):
    q = exclusive_queue(ch)
    ch.basic_consume(q, callback=lambda m: None)
    with pytest.raises(PreconditionFailed):
        ch.queue_delete(q, if_unused=True)


def test_durable_queue_and_exchange(conn, ch):
    ex, q = unique_name('dex'), unique_name('dq')
    ch.exchange_declare(ex, 'direct', durable=True, auto_delete=False)
    ch.queue_declare(q, durable=True, auto_delete=False)
    ch.queue_bind(q, ex, 'k')
    ch.basic_publish(Message(b'p', delivery_mode=2), ex, 'k')
    assert ch.queue_delete(q) == 1
    ch.exchange_delete(ex)
