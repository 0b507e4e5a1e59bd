"""Acks held while the deliveries received with them are dispatched
(``Transport.write_held``, the reader's ``HOLD_LIMIT``): they leave in one
TCP segment once the deliveries already received are handed out, never
later than the limit between callbacks, and are pushed when a callback
raises.  Both the compiled writer and the pure one.

The fake broker is used because it decides exactly which deliveries the
client has received at once, and records when each ack arrives; the
segments are counted by the kernel (``TCP_INFO``).
"""
import socket
import struct
import threading
import time

import pytest
from pika.spec import Basic, Connection

import amqp.reader

from testkit import make_certificates, message_frames

from .fakebroker import CLOSE_OK
from .test_publish_twin import _Pure, compiled

PATHS = [pytest.param(True, id='pure'),
         pytest.param(False, id='compiled', marks=compiled)]

held = pytest.mark.skipif(not hasattr(socket, 'MSG_MORE') or
                          not hasattr(socket, 'TCP_INFO'),
                          reason='MSG_MORE and TCP_INFO are Linux\'s')


def data_segments_sent(sock):
    """tcpi_data_segs_out of ``sock``: the TCP segments it sent carrying
    data (Linux 4.6+)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from('=I', info, 156)[0]


class AckRecorder:
    """A script: consume-ok, then ``n`` deliveries written at once; then
    it records each ack (its delivery tag and when it came) until the
    client closes."""

    def __init__(self, n):
        self.n = n
        self.acks = []              # (delivery tag, monotonic time)
        self.got = threading.Condition()

    def __call__(self, peer):
        peer.handshake(heartbeat=0)
        peer.serve_channel_open()
        peer.expect_method(Basic.Consume)
        peer.send_method(Basic.ConsumeOk('ctag'), 1)
        time.sleep(0.05)            # (consume-ok read on its own)
        peer.send(b''.join(
            message_frames(Basic.Deliver('ctag', tag, False, '', 'q'),
                           b'm%d' % tag, channel=1)
            for tag in range(1, self.n + 1)))
        while True:
            method = peer.recv_method()
            if isinstance(method, Connection.Close):
                peer.send(CLOSE_OK)
                return
            assert isinstance(method, Basic.Ack), method
            with self.got:
                self.acks.append((method.delivery_tag, time.monotonic()))
                self.got.notify_all()

    def wait_for(self, count, timeout):
        """Whether ``count`` acks arrived within ``timeout`` seconds."""
        with self.got:
            return self.got.wait_for(lambda: len(self.acks) >= count,
                                     timeout)


def _connect(broker, pure, **options):
    """A connection to ``broker`` (pure or not) and a channel on it."""
    if not pure:
        conn = broker.connect(**options)
        return conn, conn.channel()
    with _Pure():
        conn = broker.connect(**options)
        return conn, conn.channel()


def _consume(fake_broker, pure, n, callback):
    recorder = AckRecorder(n)
    conn, ch = _connect(fake_broker(recorder), pure)
    ch.basic_consume('q', consumer_tag='ctag', callback=callback)
    time.sleep(0.2)                 # all n deliveries are received
    return recorder, conn, ch


@held
@pytest.mark.parametrize('pure', PATHS)
def test_acks_for_deliveries_received_together_leave_in_one_segment(
        fake_broker, pure, monkeypatch):
    # (a limit no batch here reaches, however loaded the machine: the
    # default, 1 ms, may end a batch early, and the next test checks it)
    monkeypatch.setattr(amqp.reader, 'HOLD_LIMIT', 10.0)
    n = 20
    got = []

    def on_message(message):
        got.append(message.body)
        message.channel.basic_ack(message.delivery_tag)

    recorder, conn, ch = _consume(fake_broker, pure, n, on_message)
    assert conn.transport.can_hold
    sock = conn.transport.sock
    before = data_segments_sent(sock)
    conn.drain_events(timeout=2)
    assert got == [b'm%d' % tag for tag in range(1, n + 1)]
    # all n acks went to the kernel, and out of it as one segment
    assert recorder.wait_for(n, 1.0)
    assert [tag for tag, _ in recorder.acks] == list(range(1, n + 1))
    assert data_segments_sent(sock) - before == 1
    assert not conn.transport.holding
    conn.close()


@held
@pytest.mark.parametrize('pure', PATHS)
def test_held_acks_are_pushed_when_the_last_callback_sends_nothing(
        fake_broker, pure):
    """The last delivery received is not acked in its callback (acked
    later, as celery does): the acks held before it leave when the
    deliveries are dispatched, not 200 ms later."""
    last = []

    def on_message(message):
        if message.delivery_tag == 5:
            last.append(message)
        else:
            message.channel.basic_ack(message.delivery_tag)

    recorder, conn, ch = _consume(fake_broker, pure, 5, on_message)
    conn.drain_events(timeout=2)
    assert recorder.wait_for(4, 0.15)
    last[0].channel.basic_ack(last[0].delivery_tag)
    assert recorder.wait_for(5, 0.15)
    conn.close()


@held
@pytest.mark.parametrize('pure', PATHS)
def test_a_hold_limit_of_zero_sends_each_ack_as_made(fake_broker, pure,
                                                     monkeypatch):
    monkeypatch.setattr(amqp.reader, 'HOLD_LIMIT', 0)
    n = 10

    def on_message(message):
        message.channel.basic_ack(message.delivery_tag)

    recorder, conn, ch = _consume(fake_broker, pure, n, on_message)
    sock = conn.transport.sock
    before = data_segments_sent(sock)
    conn.drain_events(timeout=2)
    assert recorder.wait_for(n, 1.0)
    # n segments (Linux's autocorking may merge a few, as it does
    # py-amqp's acks on a busy machine); held, they would be one
    assert data_segments_sent(sock) - before > 1
    conn.close()


@held
@pytest.mark.parametrize('pure', PATHS)
def test_held_acks_leave_once_the_hold_limit_has_passed(fake_broker, pure,
                                                        monkeypatch):
    monkeypatch.setattr(amqp.reader, 'HOLD_LIMIT', 0.001)   # the default
    """Callbacks slower than HOLD_LIMIT: the acks made so far are pushed
    before the next callback runs, not kept for the kernel's 200 ms."""
    seen_by_broker = []

    def on_message(message):
        tag = message.delivery_tag
        if tag == 3:
            # (the last one: its own ack would push the rest anyway)
            seen_by_broker.append(recorder.wait_for(2, 0.15))
        message.channel.basic_ack(tag)
        time.sleep(0.01)

    recorder, conn, ch = _consume(fake_broker, pure, 3, on_message)
    conn.drain_events(timeout=2)
    assert seen_by_broker == [True]
    assert recorder.wait_for(3, 1.0)
    conn.close()


@held
@pytest.mark.parametrize('pure', PATHS)
def test_an_ack_before_a_long_callback_is_not_kept_by_it(fake_broker, pure):
    """A callback that runs long (no ack or write of its own yet): the
    ack before it leaves within the kernel's limit of 200 ms."""
    started = []

    def on_message(message):
        message.channel.basic_ack(message.delivery_tag)
        if message.delivery_tag == 1:
            return
        started.append(time.monotonic())
        time.sleep(0.6)

    recorder, conn, ch = _consume(fake_broker, pure, 3, on_message)
    conn.drain_events(timeout=3)
    assert recorder.wait_for(3, 1.0)
    (tag, when), = recorder.acks[:1]
    assert tag == 1 and when - started[0] < 0.45, when - started[0]
    conn.close()


@held
@pytest.mark.parametrize('pure', PATHS)
def test_acks_held_when_a_callback_raises_are_pushed(fake_broker, pure):
    def on_message(message):
        message.channel.basic_ack(message.delivery_tag)
        if message.delivery_tag == 2:
            raise KeyError('callback failed')

    recorder, conn, ch = _consume(fake_broker, pure, 4, on_message)
    with pytest.raises(KeyError):
        conn.drain_events(timeout=2)
    # the two acks made leave now, without waiting for another write
    assert recorder.wait_for(2, 0.15)
    assert not conn.transport.holding
    assert [tag for tag, _ in recorder.acks] == [1, 2]
    conn.drain_events(timeout=2)    # the rest, and their acks
    assert recorder.wait_for(4, 1.0)
    conn.close()


@held
@pytest.mark.parametrize('pure', PATHS)
def test_no_holding_on_a_socket_with_nagle_on(fake_broker, pure):
    """TCP_NODELAY turned off by the application: acks go out as made
    (holding assumes a push sends at once)."""
    n = 5

    def on_message(message):
        message.channel.basic_ack(message.delivery_tag)

    recorder = AckRecorder(n)
    conn, ch = _connect(fake_broker(recorder), pure,
                        socket_settings={socket.TCP_NODELAY: 0})
    ch.basic_consume('q', consumer_tag='ctag', callback=on_message)
    time.sleep(0.2)
    assert not conn.transport.can_hold
    conn.drain_events(timeout=2)
    assert recorder.wait_for(n, 1.0)
    conn.close()


def test_no_holding_over_tls(fake_broker, tmp_path):
    """TLS records are written whole by the ssl module: acks are sent as
    made, and every one arrives."""
    import ssl
    certs = make_certificates(str(tmp_path))
    recorder = AckRecorder(3)

    def script(peer):
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(certs['server_cert'], certs['server_key'])
        peer.sock = server.wrap_socket(peer.sock, server_side=True)
        recorder(peer)

    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    conn = fake_broker(script).connect(ssl=client)
    ch = conn.channel()
    ch.basic_consume('q', consumer_tag='ctag', callback=lambda m:
                     m.channel.basic_ack(m.delivery_tag))
    time.sleep(0.2)
    assert not conn.transport.can_hold
    conn.drain_events(timeout=2)
    assert recorder.wait_for(3, 1.0)
    conn.close()
