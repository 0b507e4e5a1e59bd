"""amqp.reader: threads sharing one connection, against a fake broker that
answers in the order a test chooses.  Each test is a rule of
docs/guide_threads.rst: whoever reads, a reply reaches the thread waiting
for it; callbacks run in the thread the rules name, in order, one at a
time per channel; a failure wakes every waiter; a wait keeps its own
deadline; no lock or read role is held while a callback runs."""
import socket
import sys
import threading
import time
from contextlib import contextmanager

import pytest
from pika.spec import Basic, Connection, Queue

from amqp.exceptions import (ConnectionForced, RecoverableConnectionError,
                             ReplyTimeout)
from amqp.transport import ConnectionLost
from testkit import message_frames, method_frame

from .servers import run_threads


@pytest.fixture
def server(many_channel_server):
    return many_channel_server


def _method_bytes(channel, method):
    return method_frame(method, channel)


def _deliver_bytes(channel, consumer_tag, delivery_tag, body):
    return message_frames(
        Basic.Deliver(consumer_tag, delivery_tag, False, '', 'rk'), body,
        channel)


@contextmanager
def _another_thread_reading(conn):
    """A thread in drain_events (short timeouts) for the block."""
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            try:
                conn.drain_events(timeout=0.01)
            except socket.timeout:
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop.set()
        reader.join(5)


@pytest.fixture
def fast_switching():
    """Switch threads every microsecond: races that need luck on a quiet
    machine happen every run."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def _declares_held(srv, n):
    """Hold queue.declare-ok until ``n`` declares arrived, then answer
    them newest first: each reply is read by whichever thread reads."""
    held = []

    def on_declare(s, channel, method):
        held.append((channel, method.queue))
        if len(held) == n:
            for ch, name in reversed(held):
                s.reply(ch, Queue.DeclareOk(name, len(name), 0))
            held.clear()
    srv.on(Queue.Declare, on_declare)


def test_replies_answered_out_of_order_reach_their_threads(server):
    srv = server()
    _declares_held(srv, 8)
    conn = srv.connect()
    channels = [conn.channel() for _ in range(8)]
    results = run_threads(*[
        (lambda ch=ch, i=i: ch.queue_declare('q%d' % i))
        for i, ch in enumerate(channels)])
    for i, result in enumerate(results):
        assert not isinstance(result, BaseException), result
        assert result.queue == 'q%d' % i
        assert result.message_count == len('q%d' % i)
    conn.close()


def test_many_threads_many_rounds(server, fast_switching):
    srv = server()
    _declares_held(srv, 6)
    conn = srv.connect()
    channels = [conn.channel() for _ in range(6)]

    def rounds(i, ch):
        for n in range(40):
            name = 'q%d-%d' % (i, n)
            assert ch.queue_declare(name).queue == name
        return 'done'
    results = run_threads(*[(lambda i=i, ch=ch: rounds(i, ch))
                            for i, ch in enumerate(channels)], timeout=30)
    assert results == ['done'] * 6
    conn.close()


def test_channels_opened_by_many_threads_get_distinct_ids(server,
                                                          fast_switching):
    srv = server()
    conn = srv.connect()
    results = run_threads(*[conn.channel for _ in range(24)])
    ids = [ch.channel_id for ch in results]
    assert sorted(ids) == list(range(1, 25))
    conn.close()


def test_a_slow_callback_does_not_delay_another_threads_reply(server):
    """The consumer thread runs a callback that takes 1.5 s; meanwhile a
    reply for another thread arrives and must reach it at once (the
    callback does not hold the read role)."""
    srv = server()
    conn = srv.connect()
    consumer, other = conn.channel(), conn.channel()
    in_callback = threading.Event()

    def slow(message):
        in_callback.set()
        time.sleep(1.5)

    consumer.basic_consume('q', consumer_tag='c', callback=slow)
    srv.deliver(1, 'c', 1, b'slow')

    def drain():
        conn.drain_events(timeout=5)

    def declare():
        in_callback.wait(5)
        started = time.monotonic()
        other.queue_declare('fast')
        return time.monotonic() - started

    took = run_threads(drain, declare)[1]
    assert not isinstance(took, BaseException), took
    assert took < 0.5, took
    conn.close()


def test_deliveries_read_while_waiting_run_in_the_consumer_thread(server):
    """A thread waiting for its reply reads a delivery first: the
    delivery's callback runs in the consumer thread (the one in
    drain_events), not in the waiting thread."""
    srv = server()
    conn = srv.connect()
    consumer, other = conn.channel(), conn.channel()
    ran_in = []
    consumer.basic_consume('q', consumer_tag='c',
                           callback=lambda m: ran_in.append(
                               threading.get_ident()))

    def on_declare(s, channel, method):
        # the delivery and the reply in one write, the delivery first
        s.send(b''.join([
            _deliver_bytes(1, 'c', 1, b'x'),
            _method_bytes(channel, Queue.DeclareOk(method.queue, 0, 0))]))
    srv.on(Queue.Declare, on_declare)
    idents = {}
    started = threading.Event()

    def drain():
        idents['drain'] = threading.get_ident()
        started.set()
        conn.drain_events(timeout=5)

    def declare():
        idents['declare'] = threading.get_ident()
        started.wait(5)
        time.sleep(0.1)      # the consumer thread is in drain_events
        return other.queue_declare('q2').queue

    results = run_threads(drain, declare)
    assert results[1] == 'q2'
    assert ran_in == [idents['drain']]
    conn.close()


def test_alone_a_thread_runs_callbacks_inside_any_call_that_reads(server):
    """py-amqp's behaviour, kept for programs with one thread: a
    delivery read while waiting for a reply runs its callback there."""
    srv = server()
    conn = srv.connect()
    consumer, other = conn.channel(), conn.channel()
    seen = []
    consumer.basic_consume('q', consumer_tag='c',
                           callback=lambda m: seen.append(m.body))

    def on_declare(s, channel, method):
        s.send(_deliver_bytes(1, 'c', 1, b'first') + _method_bytes(
            channel, Queue.DeclareOk(method.queue, 0, 0)))
    srv.on(Queue.Declare, on_declare)
    other.queue_declare('q2')
    assert seen == [b'first']
    conn.close()


def test_one_channel_never_runs_two_callbacks_at_once(server,
                                                      fast_switching):
    """Two threads drain the same connection while 300 deliveries arrive
    for one channel: callbacks never overlap and keep the broker's
    order."""
    srv = server()
    conn = srv.connect()
    ch = conn.channel()
    tags, active, overlaps = [], [0], []
    lock = threading.Lock()

    def callback(message):
        with lock:
            active[0] += 1
            if active[0] > 1:
                overlaps.append(message.delivery_tag)
        time.sleep(0.0005)
        tags.append(message.delivery_tag)
        with lock:
            active[0] -= 1

    ch.basic_consume('q', consumer_tag='c', callback=callback)
    for burst in range(30):
        srv.send(b''.join(_deliver_bytes(1, 'c', burst * 10 + i + 1, b'm')
                          for i in range(10)))

    def drain():
        while len(tags) < 300:
            try:
                conn.drain_events(timeout=0.05)
            except socket.timeout:
                pass
        return 'ok'

    assert run_threads(drain, drain, timeout=30) == ['ok', 'ok']
    assert overlaps == []
    assert tags == list(range(1, 301))
    conn.close()


def test_a_dropped_connection_wakes_every_waiting_thread(server):
    srv = server()
    waiting = []

    def on_declare(s, channel, method):
        waiting.append(channel)
        if len(waiting) == 3:
            s.hang_up()

    srv.on(Queue.Declare, on_declare)
    conn = srv.connect()
    channels = [conn.channel() for _ in range(3)]
    started = time.monotonic()
    results = run_threads(*[(lambda ch=ch: ch.queue_declare('q'))
                            for ch in channels], conn.drain_events)
    assert time.monotonic() - started < 2
    for result in results:
        assert isinstance(result, (ConnectionLost,
                                   RecoverableConnectionError)), result
    assert any(isinstance(r, ConnectionLost) for r in results)
    assert not conn.connected


def test_the_broker_closing_the_connection_reaches_every_thread(server):
    srv = server()
    waiting = []

    def on_declare(s, channel, method):
        waiting.append(channel)
        if len(waiting) == 3:
            s.reply(0, Connection.Close(320, 'CONNECTION_FORCED - shutdown',
                                        0, 0))

    srv.on(Queue.Declare, on_declare)
    srv.on(Connection.CloseOk, lambda s, ch, m: False)
    conn = srv.connect()
    channels = [conn.channel() for _ in range(3)]
    results = run_threads(*[(lambda ch=ch: ch.queue_declare('q'))
                            for ch in channels])
    for result in results:
        assert isinstance(result, ConnectionForced), result
        assert 'shutdown' in str(result)
    assert not conn.connected


def test_each_wait_keeps_its_own_deadline(server):
    """One thread reads with no deadline; another's reply never comes:
    it times out at its own bound, and the reader goes on."""
    srv = server()
    srv.on(Queue.Declare, lambda s, ch, m: None)     # never answered
    conn = srv.connect(reply_timeout=0.5)
    ch = conn.channel()
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            try:
                conn.drain_events(timeout=0.2)
            except socket.timeout:
                pass
        return 'drained'

    def declare():
        started = time.monotonic()
        try:
            ch.queue_declare('never')
        except ReplyTimeout:
            return time.monotonic() - started
        return None

    def later():
        time.sleep(1.5)
        stop.set()
        return 'stopped'

    drained, took, _ = run_threads(drain, declare, later)
    assert drained == 'drained'
    assert took is not None and 0.45 < took < 1.0, took
    # the connection is still good for others
    assert conn.channel().queue_declare is not None
    conn.close()


@pytest.mark.parametrize('end, timeout', [
    ('close', None), ('collect', None), ('collect', 10)])
def test_closing_the_connection_ends_drain_events_in_another_thread(
        server, end, timeout):
    # close(), or collect() (kombu's on a connection error: the socket
    # closed without I/O), while another thread reads, blocked in recv or
    # in poll: its consume loop ends at once with a typed error, never
    # AssertionError or EBADF.  (One drain_events may return first: the
    # one that read close-ok before close() waited for it and dispatched
    # it, as a drain_events call does.)
    srv = server()
    conn = srv.connect()
    entered = threading.Event()

    def drain():
        entered.set()
        while True:
            conn.drain_events(timeout=timeout)

    def close():
        entered.wait(5)
        time.sleep(0.2)
        getattr(conn, end)()
        return 'closed'

    started = time.monotonic()
    results = run_threads(drain, close)
    assert results[1] == 'closed'
    assert isinstance(results[0], RecoverableConnectionError), results[0]
    assert time.monotonic() - started < 2
    assert not conn.connected


def test_a_callback_may_make_synchronous_calls(server):
    """Re-entrancy: a consumer callback declares queues on its own
    channel and on another one, from inside drain_events."""
    srv = server()
    conn = srv.connect()
    consumer, other = conn.channel(), conn.channel()
    names = []

    def callback(message):
        names.append(consumer.queue_declare('own').queue)
        names.append(other.queue_declare('other').queue)

    consumer.basic_consume('q', consumer_tag='c', callback=callback)
    srv.deliver(1, 'c', 1, b'x')
    conn.drain_events(timeout=5)
    assert names == ['own', 'other']
    conn.close()


def test_confirms_read_by_another_thread_settle_the_publisher(server,
                                                              fast_switching):
    """A publisher thread publishes with confirms while a consumer thread
    reads everything, acks included: every publish is settled exactly
    once, whoever read its ack."""
    srv = server()
    conn = srv.connect()
    publisher, consumer = conn.channel(), conn.channel()
    consumer.basic_consume('q', consumer_tag='c', callback=lambda m: None)
    outcomes = {}
    lock = threading.Lock()

    def on_confirm(tag, outcome):
        with lock:
            assert tag not in outcomes, 'settled twice: %d' % tag
            outcomes[tag] = outcome

    stop = threading.Event()

    def drain():
        while not stop.is_set():
            try:
                conn.drain_events(timeout=0.02)
            except socket.timeout:
                pass
        return 'drained'

    def publish():
        from amqp import Message
        publisher.confirm_select()
        for i in range(300):
            publisher.basic_publish(Message(b'%d' % i), routing_key='q',
                                    on_confirm=on_confirm)
        publisher.wait_for_confirms(timeout=10)
        stop.set()
        return 'published'

    assert run_threads(drain, publish, timeout=30) == ['drained',
                                                       'published']
    assert outcomes == {tag: 'ack' for tag in range(1, 301)}
    conn.close()


def test_a_reply_that_comes_back_fast_is_never_missed(server,
                                                      fast_switching):
    """Another thread is reading when the reply comes, before the calling
    thread started to wait: the reply was expected before the request
    was written, so it is handed over all the same."""
    srv = server()
    conn = srv.connect()
    with _another_thread_reading(conn):
        for i in range(100):
            ch = conn.channel()
            assert ch.queue_declare('q%d' % i).queue == 'q%d' % i
            ch.close()
    conn.close()


def test_closing_a_channel_while_its_reply_is_being_run_elsewhere(
        server, fast_switching):
    """close-ok handled by another thread: close() returns normally, the
    channel is closed and its id is free again."""
    srv = server()
    conn = srv.connect()
    with _another_thread_reading(conn):
        for _ in range(100):
            ch = conn.channel()
            ch.close()
            assert ch.connection is None
        assert sorted(conn.channels) == [0]
    conn.close()


def test_drain_events_inside_a_callback_runs_that_channels_next_delivery(
        server):
    """A callback that calls drain_events gets the next delivery of its own
    channel dispatched inside it, as in py-amqp (the lane is already this
    thread's, further up its stack)."""
    srv = server()
    conn = srv.connect()
    ch = conn.channel()
    seen = []

    def callback(message):
        seen.append(message.body)
        if message.body == b'first':
            srv.deliver(1, 'c', 2, b'second')
            conn.drain_events(timeout=2)
            seen.append('inner drain returned')

    ch.basic_consume('q', consumer_tag='c', callback=callback)
    srv.deliver(1, 'c', 1, b'first')
    conn.drain_events(timeout=2)
    assert seen == [b'first', b'second', 'inner drain returned']
    conn.close()
