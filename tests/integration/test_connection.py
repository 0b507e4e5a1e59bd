"""Connection against the session's real RabbitMQ: handshake, auth
errors, tuning, channel_max, blocked/unblocked, server close,
update-secret and the heartbeat thread."""
import socket
import time

import pytest

from amqp import Connection, Message
from amqp.exceptions import (AccessRefused, ConnectionForced, NotAllowed,
                             RecoverableConnectionError, ResourceError)
from testkit import assert_writes_refused, drain_until, unique_name

TIMEOUT = 10


@pytest.fixture
def vhost(broker):
    """A fresh vhost (so closing 'all' connections closes only ours)."""
    name = unique_name('vh')
    broker.ctl('add_vhost', name)
    broker.ctl('set_permissions', '-p', name, 'guest', '.*', '.*', '.*')
    yield name
    broker.ctl('delete_vhost', name)


def test_plain_connect(broker):
    with broker.connect() as conn:
        assert conn.connected and conn.is_alive()
        assert conn.server_properties['product'] == 'RabbitMQ'
        caps = conn.server_capabilities
        assert caps['publisher_confirms'] and caps['connection.blocked']
        assert conn.version_major == 0 and conn.version_minor == 9
        ch = conn.channel()
        q = ch.queue_declare('', exclusive=True).queue
        ch.basic_publish(Message(b'hi'), routing_key=q)
        assert ch.basic_get(q, no_ack=True).body == b'hi'
    assert not conn.connected


def test_url_connect(broker):
    conn = Connection.from_url(broker.url, connect_timeout=TIMEOUT)
    conn.connect()
    assert conn.connected
    conn.close()


def test_wrong_password_is_access_refused(broker):
    with pytest.raises(AccessRefused) as info:
        broker.connect(password='not-the-password')
    assert 'not-the-password' not in str(info.value)
    assert info.value.reply_code == 403


def test_wrong_password_with_each_mechanism(broker):
    for method in ('PLAIN', 'AMQPLAIN'):
        with pytest.raises(AccessRefused):
            broker.connect(password='wrong', login_method=method)


def test_unknown_vhost_is_not_allowed(broker):
    conn = Connection('%s:%s' % (broker.host, broker.port),
                      virtual_host='no-such-vhost', connect_timeout=TIMEOUT)
    with pytest.raises(NotAllowed) as info:
        conn.connect()
    assert info.value.reply_code == 530
    assert not conn.connected


@pytest.mark.parametrize('client, expected', [(0, 0), (5, 5), (600, 60)])
def test_heartbeat_negotiation(broker, client, expected):
    with broker.connect(heartbeat=client) as conn:
        assert conn.server_heartbeat == 60   # RabbitMQ's default
        assert conn.heartbeat == expected


def test_channel_max_exhaustion(broker):
    with broker.connect(channel_max=2) as conn:
        assert conn.channel_max == 2
        one, two = conn.channel(), conn.channel()
        assert {one.channel_id, two.channel_id} == {1, 2}
        with pytest.raises(ResourceError):
            conn.channel()
        one.close()
        three = conn.channel()          # the id is free again
        assert three.channel_id == 1


def test_connect_timeout_replaced_by_read_timeout(broker):
    with broker.connect(connect_timeout=3, read_timeout=0.4,
                  write_timeout=4) as conn:
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            conn.blocking_read()     # nothing comes: read_timeout, not 3 s
        assert 0.35 <= time.monotonic() - start < 1.5
        assert conn.connected
        assert conn.sock.getsockopt(socket.SOL_TCP, socket.TCP_NODELAY)
        assert conn.channel().queue_declare('', exclusive=True).queue


def test_server_close_all_connections(broker, vhost):
    closed = []
    conn = broker.connect(virtual_host=vhost, on_close=closed.append)
    ch = conn.channel()
    broker.ctl('close_all_connections', '--vhost', vhost, 'test shutdown')
    with pytest.raises(ConnectionForced) as info:
        conn.drain_events(timeout=TIMEOUT)
    assert info.value.reply_code == 320
    assert 'test shutdown' in str(info.value)
    assert not conn.connected
    assert len(closed) == 1 and isinstance(closed[0], ConnectionForced)
    with pytest.raises(RecoverableConnectionError):
        conn.channel()
    with pytest.raises(RecoverableConnectionError):
        ch.queue_declare('', exclusive=True)
    with pytest.raises(RecoverableConnectionError):
        ch.basic_publish(Message(b'x'), routing_key='q')
    conn.close()
    conn.close()


def test_update_secret(broker):
    with broker.connect(login_method='PLAIN') as conn:
        conn.update_secret('guest', 'same password, new secret')
        ch = conn.channel()
        ch.queue_declare('', exclusive=True)


@pytest.mark.slow
def test_blocked_and_unblocked(broker):
    events = []
    conn = broker.connect(on_blocked=lambda r: events.append(('b', r)),
                    on_unblocked=lambda: events.append('u'),
                    blocked_timeout=0.5)
    other = broker.connect()
    try:
        ch = conn.channel()
        q = ch.queue_declare('', exclusive=True).queue
        broker.ctl('set_vm_memory_high_watermark', '0.0000001')
        try:
            ch.basic_publish(Message(b'x'), routing_key=q)
            drain_until(conn, lambda: events, TIMEOUT,
                        what='connection.blocked')
            assert events[0][0] == 'b' and 'memory' in events[0][1].lower()
            assert conn.blocked
            start = time.monotonic()
            with pytest.raises(RecoverableConnectionError,
                               match='blocked'):
                ch.basic_publish(Message(b'y'), routing_key=q)
            assert time.monotonic() - start < 2
        finally:
            broker.ctl('set_vm_memory_high_watermark', '0.4')
        drain_until(conn, lambda: 'u' in events, TIMEOUT,
                    what='connection.unblocked')
        assert conn.blocked is None
        ch.basic_publish(Message(b'z'), routing_key=q)
    finally:
        conn.close()
        other.close()


@pytest.mark.slow
def test_heartbeat_thread_keeps_a_busy_connection_alive(broker):
    with_thread = broker.connect(heartbeat=1, heartbeat_thread=True)
    without = broker.connect(heartbeat=1)
    time.sleep(5)   # busy: nobody drains either connection
    ch = with_thread.channel()
    ch.queue_declare('', exclusive=True)
    assert with_thread.connected
    # the control: RabbitMQ gave up on the silent one
    with pytest.raises((ConnectionForced, OSError)):
        without.channel()
        without.drain_events(timeout=1)
    with_thread.close()
    without.close()


def test_dropped_connections_do_not_live_on_in_heartbeat_threads(broker,
                                                                   vhost):
    """20 connections with heartbeat threads, dropped without close():
    once collected, their threads end and the broker sees them go."""
    import gc
    import threading

    def heartbeat_threads():
        return sum(1 for t in threading.enumerate()
                   if t.name == 'amqp-heartbeat')

    before = heartbeat_threads()
    conns = [broker.connect(virtual_host=vhost, heartbeat=2,
                            heartbeat_thread=True) for _ in range(20)]
    assert heartbeat_threads() == before + 20

    def open_on_broker():
        out = broker.ctl('list_connections', '-q', 'vhost')
        return sum(1 for line in out.splitlines() if line.strip() == vhost)

    assert open_on_broker() == 20
    del conns
    gc.collect()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
            heartbeat_threads() > before or open_on_broker()):
        time.sleep(0.2)
    assert heartbeat_threads() == before
    assert open_on_broker() == 0


def test_a_used_connection_is_collected_once_dropped(broker):
    """After deliveries, acks and publishes (through the compiled frame
    handler, writer and publish where they are built, which hold the
    connection and the channel), a closed and dropped connection and its
    channel are garbage: nothing keeps them alive."""
    import gc
    import weakref
    conn = broker.connect()
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    got = []
    ch.basic_consume(q, callback=lambda m: (
        got.append(m.body), m.channel.basic_ack(m.delivery_tag)))
    for i in range(3):
        ch.basic_publish(Message(b'%d' % i), routing_key=q)
    while len(got) < 3:
        conn.drain_events(timeout=5)
    assert got == [b'0', b'1', b'2']
    conn.close()
    ref, channel_ref = weakref.ref(conn), weakref.ref(ch)
    del conn, ch
    gc.collect()
    # (the channel's basic_publish, compiled or bound, holds the channel)
    assert ref() is None and channel_ref() is None


@pytest.mark.parametrize('first_use', [
    lambda c: c.channel(),
    lambda c: c.transport,
    lambda c: c.frame_writer,
    lambda c: c.on_inbound_frame,
    lambda c: c.send_heartbeat(),
    lambda c: pytest.raises(socket.timeout, c.drain_events, timeout=0.1),
])
def test_a_connection_used_before_connect_connects_with_a_warning(
        broker, first_use):
    """py-amqp connects on first use (with AMQPDeprecationWarning); many
    scripts rely on it."""
    from amqp.exceptions import AMQPDeprecationWarning
    conn = Connection('%s:%s' % (broker.host, broker.port))
    with pytest.warns(AMQPDeprecationWarning, match='before connect'):
        first_use(conn)
    try:
        assert conn.connected
        ch = conn.channel()
        q = ch.queue_declare('', exclusive=True).queue
        ch.basic_publish(Message(b'lazy'), '', q)
        assert ch.basic_get(q, no_ack=True).body == b'lazy'
    finally:
        conn.close()
    # a closed connection stays closed: no silent reconnect
    with pytest.raises(RecoverableConnectionError):
        conn.channel()
    assert not conn.connected


class _SocketWith:
    """The connection's socket, with ``send`` replaced (the OS boundary):
    everything else goes to the real socket."""

    def __init__(self, sock, send):
        self._sock, self.send = sock, send

    def __getattr__(self, name):
        return getattr(self._sock, name)


@pytest.mark.parametrize('n', [1, 9, 40])
def test_a_short_send_is_finished_and_the_message_arrives_whole(broker, n):
    # a blocking send may return after part of the bytes (a signal): the
    # rest follows before anything else is written, on the compiled
    # writer's own send as on the pure one
    conn = broker.connect()
    try:
        ch = conn.channel()
        q = ch.queue_declare('', exclusive=True).queue
        real = conn.transport.sock
        shorts = []

        def send_short(data, flags=0):
            if not shorts:
                shorts.append(len(data))
                return real.send(bytes(data)[:n])
            return real.send(data)
        conn.transport.sock = _SocketWith(real, send_short)
        ch.basic_publish(Message(b'whole', content_type='text/plain'),
                         routing_key=q)
        ch.basic_publish(Message(b'next'), routing_key=q)
        conn.transport.sock = real
        assert shorts and shorts[0] > n
        got = [ch.basic_get(q, no_ack=True) for _ in range(2)]
        assert [m.body for m in got] == [b'whole', b'next']
        assert got[0].properties == {'content_type': 'text/plain'}
    finally:
        conn.close()


def test_a_failed_send_loses_the_connection_and_nothing_waits(broker):
    conn = broker.connect()
    try:
        ch = conn.channel()
        real = conn.transport.sock

        def send_fails(data, flags=0):
            raise ConnectionResetError(104, 'reset by the test')
        conn.transport.sock = _SocketWith(real, send_fails)
        with pytest.raises(ConnectionResetError, match='reset by the test'):
            ch.basic_publish(Message(b'x'), routing_key='q')
        assert_writes_refused(conn, ch, 'lost')
        conn.transport.sock = real
    finally:
        conn.close()


def test_a_write_replaced_on_the_transport_gets_every_frame(broker):
    # py-amqp-style instrumentation: a transport whose write is replaced
    # (here by a subclass) sees every frame written
    from amqp.transport import TCPTransport

    seen = []

    class Counting(TCPTransport):
        def write(self, s):
            seen.append(bytes(s))
            super().write(s)

    class Instrumented(Connection):
        def Transport(self, host, connect_timeout, ssl=False,
                      read_timeout=None, write_timeout=None, **kwargs):
            return Counting(host, connect_timeout=connect_timeout,
                            read_timeout=read_timeout,
                            write_timeout=write_timeout, **kwargs)

    conn = Instrumented('%s:%s' % (broker.host, broker.port))
    conn.connect()
    try:
        ch = conn.channel()
        q = ch.queue_declare('', exclusive=True).queue
        before = len(seen)
        ch.basic_publish(Message(b'counted'), routing_key=q)
        assert any(b'counted' in s for s in seen[before:])
    finally:
        conn.close()
