"""Faults between the client and the session's RabbitMQ, made by a proxy
the tests control: a connection cut mid-stream, a stalled link that cuts
a large publish off mid-frame, a link trickling one byte at a time, and a
link that drops one direction while heartbeats are on.

Every scenario has a time bound and checks the data on the broker."""
import contextlib
import socket
import time
import uuid
from time import monotonic

import pytest

from amqp import Connection, Message
from amqp.exceptions import RecoverableConnectionError

from .conftest import detect_silence
from .proxy import DROP, PASS, STALL, TRICKLE, method_sigs

BASIC_PUBLISH = (60, 40)


def _name(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:10])


def _through(proxy, **kwargs):
    kwargs.setdefault('connect_timeout', 10)
    conn = Connection(proxy.address, **kwargs)
    conn.connect()
    return conn


def _wait_count(ch, queue, n, timeout=10):
    """Wait until ``queue`` holds ``n`` messages (publishes are async)."""
    deadline = monotonic() + timeout
    while True:
        count = ch.queue_declare(queue, passive=True).message_count
        if count == n:
            return
        assert monotonic() < deadline, '%s holds %d, not %d' % (
            queue, count, n)
        time.sleep(0.05)


@pytest.fixture
def admin(broker):
    """A direct connection (not through the proxy) for set-up and data
    checks; deletes the queues it was asked to."""
    conn = broker.connect()
    ch = conn.channel()
    ch.to_delete = []
    yield ch
    for queue in ch.to_delete:
        ch.queue_delete(queue)
    conn.close()


def _queue(admin, prefix):
    queue = _name(prefix)
    admin.queue_declare(queue, auto_delete=False)
    admin.to_delete.append(queue)
    return queue


def test_consumer_cut_mid_stream_gets_unacked_messages_redelivered(
        admin, proxy):
    n, ack_first, stop_at = 100, 30, 35
    queue = _queue(admin, 'faults-cut')
    for i in range(n):
        admin.basic_publish(Message(b'%d' % i), routing_key=queue)
    _wait_count(admin, queue, n)

    conn = _through(proxy)
    ch = conn.channel()
    ch.basic_qos(0, 10, False)
    acked, unacked = [], []

    def on_message(message):
        i = int(message.body)
        if len(acked) < ack_first:
            ch.basic_ack(message.delivery_tag)
            acked.append(i)
        else:
            unacked.append(i)

    ch.basic_consume(queue, callback=on_message)
    while len(acked) + len(unacked) < stop_at:
        conn.drain_events(timeout=5)
    # A reply on the same channel: the broker has handled every ack.
    ch.queue_declare(queue, passive=True)

    proxy.cut()
    started = monotonic()
    with pytest.raises(RecoverableConnectionError):
        while True:
            conn.drain_events(timeout=5)
    detected = monotonic() - started
    assert detected < 1.0
    print('measured: cut consumer, detected after %.3f s' % detected)
    assert not conn.connected

    # Reconnect and take the rest.
    again = {}
    conn2 = _through(proxy)
    ch2 = conn2.channel()

    def collect(message):
        i = int(message.body)
        assert i not in again, 'delivered twice after the cut: %d' % i
        again[i] = message.delivery_info['redelivered']
        ch2.basic_ack(message.delivery_tag)

    ch2.basic_consume(queue, callback=collect)
    deadline = monotonic() + 10
    while len(again) < n - ack_first:
        assert monotonic() < deadline, 'lost: %s' % sorted(
            set(range(n)) - set(acked) - set(again))
        try:
            conn2.drain_events(timeout=1)
        except socket.timeout:
            pass
    conn2.close()
    # none lost, none twice
    assert sorted(acked + list(again)) == list(range(n))
    assert unacked and all(again[i] for i in unacked)      # seen: redelivered
    _wait_count(admin, queue, 0)


def test_publish_cut_off_by_a_stalled_link_writes_nothing_more(
        admin, proxy):
    queue = _queue(admin, 'faults-stall')
    conn = _through(proxy, write_timeout=1, frame_max=131072)
    ch = conn.channel()
    ch.queue_declare(queue, passive=True)   # a round trip: all flushed
    link = proxy.wait_links(1)
    before = len(link.upstream)
    frames_before = len(link.frames_up()[0])

    proxy.set(up=STALL)
    body = b'\xab' * (48 * 1024 * 1024)
    started = monotonic()
    with pytest.raises(socket.timeout):
        ch.basic_publish(Message(body), routing_key=queue)
    assert monotonic() - started < 2.5
    assert conn.transport.broken and not conn.connected

    started = monotonic()
    with pytest.raises(RecoverableConnectionError):
        ch.basic_publish(Message(b'second'), routing_key=queue)
    assert monotonic() - started < 0.1

    proxy.set(up=PASS)
    conn.close()
    assert link.client_eof.wait(10)
    frames, rest = link.frames_up()
    sent = len(link.upstream) - before
    # One publish, cut off inside its content: nothing after it.
    assert method_sigs(frames[frames_before:]) == [BASIC_PUBLISH]
    assert 0 < sent < len(body)
    assert all(f[0] == 3 for f in frames[frames_before + 2:])  # body frames
    assert rest or frames[-1][0] == 3

    # The broker stored nothing; a new connection works.
    time.sleep(0.2)
    _wait_count(admin, queue, 0)
    print('measured: stalled publish, %d of %d bytes sent, %d frames '
          'forwarded' % (sent, len(body), len(frames) - frames_before))
    conn2 = _through(proxy)
    conn2.channel().basic_publish(Message(b'after'), routing_key=queue)
    conn2.close()
    _wait_count(admin, queue, 1)
    assert admin.basic_get(queue, no_ack=True).body == b'after'


def test_trickled_connection_works_and_drain_timeout_holds(proxy):
    proxy.set(up=TRICKLE, down=TRICKLE, trickle_delay=0.0002)
    started = monotonic()
    conn = _through(proxy, connect_timeout=20)
    handshake = monotonic() - started
    assert handshake < 20
    link = proxy.wait_links(1)
    ch = conn.channel()
    queue = ch.queue_declare('', exclusive=True).queue
    body = bytes(range(256)) * 16
    got = []
    ch.basic_consume(queue, callback=got.append, no_ack=True)
    ch.basic_publish(Message(body), routing_key=queue)
    timeouts, worst = 0, 0.0
    deadline = monotonic() + 30
    while not got:
        assert monotonic() < deadline
        started = monotonic()
        try:
            conn.drain_events(timeout=0.1)
        except socket.timeout:
            timeouts += 1
        worst = max(worst, monotonic() - started)
    assert got[0].body == body
    print('measured: trickle, handshake %.2f s, %d drain timeouts, longest '
          'drain %.3f s' % (handshake, timeouts, worst))
    assert timeouts >= 3          # the delivery took several drains...
    assert worst < 0.1 + 0.2      # ...each bounded by its own timeout
    assert link.downstream > len(body)
    conn.close()


def test_silent_broker_detected_by_heartbeats_drain_and_reply_wait(proxy):
    """The broker's frames stop reaching us (the proxy drops them; ours
    still reach it): both a drain_events() without timeout and a
    synchronous call notice within the heartbeat bound instead of
    hanging."""
    hb = 1
    bound = 2 * hb + hb / 2 + 0.3   # heartbeat_tick(rate=2)'s limit + slack
    draining = _through(proxy, heartbeat=hb)
    calling = _through(proxy, heartbeat=hb)

    @contextlib.contextmanager
    def silence():
        proxy.set(down=DROP)
        yield

    detect_silence(draining, calling, 'silent broker', hb, bound, silence,
                   10)
    assert not draining.connected and not calling.connected
