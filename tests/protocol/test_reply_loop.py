"""The reply loop (``Reader._pump``; where the compiled module is built,
its common case runs in one compiled call, ``_speedups.Pump``, which
receives from the socket itself): a reply wait with no read bound, against
a fake broker that splits, delays, garbles or drops what it sends.  The
suite runs on both paths (CI runs it again with ``AMQP_NO_SPEEDUPS=1``)."""
import random
import socket
import struct
import time

import pytest
from pika.spec import Basic, Confirm, Queue
from pika.spec import Connection as PikaConnection

import amqp
from amqp.exceptions import FrameError, RecoverableConnectionError
from amqp.transport import ConnectionLost
from testkit import HEARTBEAT, message_frames, method_frame

from .fakebroker import TIMEOUT

BODY = bytes(range(256)) * 40    # 10 KiB: header and body in many pieces


def _get_ok(body=BODY):
    return message_frames(Basic.GetOk(7, False, 'ex', 'rk', 0), body, 1)


def _serving(then):
    """Handshake, channel 1, then ``then(peer)`` once basic.get came."""
    def script(peer):
        peer.handshake()
        peer.serve_channel_open(1)
        peer.expect_method(Basic.Get)
        then(peer)
    return script


def _reset(peer):
    """Drop the connection with a TCP reset (SO_LINGER 0)."""
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack('ii', 1, 0))
    peer.sock.close()


def _connect(broker, **kwargs):
    kwargs.setdefault('reply_timeout', 10 * TIMEOUT)
    conn = broker.connect(**kwargs)
    assert conn.transport.read_bound() is None   # (no bound: the loop's
    return conn                                  # common case)


def _assert_lost(conn, ch, broker):
    """The connection is marked lost: the next call fails at once,
    sending nothing."""
    assert not conn.connected
    sent = len(broker.received)
    with pytest.raises(RecoverableConnectionError):
        ch.basic_get('q')
    assert len(broker.received) == sent


def test_the_compiled_loop_serves_reply_waits_where_it_is_built(
        fake_broker):
    broker = fake_broker(_serving(lambda peer: (peer.send(_get_ok()),
                                                peer.serve_close())))
    conn = _connect(broker)
    reader = conn._reader
    if amqp.SPEEDUPS:
        assert reader._c_pump is not None
        assert conn.transport.plain_sock() is conn.transport.sock
    else:
        assert reader._c_pump is None
    ch = conn.channel()
    assert ch.basic_get('q').body == BODY
    conn.close()
    broker.finish()


def test_a_reply_sent_a_byte_at_a_time_arrives_whole(fake_broker):
    broker = fake_broker(_serving(
        lambda peer: (peer.send_slowly(_get_ok()), peer.serve_close())))
    conn = _connect(broker)
    ch = conn.channel()
    msg = ch.basic_get('q')
    assert msg.body == BODY and msg.delivery_tag == 7
    assert msg.delivery_info['exchange'] == 'ex'
    conn.close()
    broker.finish()


def _close_after(cut):
    return lambda peer: peer.send(_get_ok()[:cut])


@pytest.mark.parametrize('then, error', [
    (_close_after(0), ConnectionLost),     # EOF before the reply
    (_close_after(5), ConnectionLost),     # inside a frame header
    (_close_after(300), ConnectionLost),   # inside the body
    (_reset, ConnectionResetError),        # a TCP reset
], ids=['closed', 'closed-in-header', 'closed-in-body', 'reset'])
def test_the_peer_gone_in_a_reply_wait_loses_the_connection(
        fake_broker, then, error):
    """The wait raises, and the connection is marked lost (nothing more is
    sent)."""
    broker = fake_broker(_serving(then))
    conn = _connect(broker)
    ch = conn.channel()
    with pytest.raises(error):
        ch.basic_get('q')
    _assert_lost(conn, ch, broker)


def test_garbage_in_a_reply_wait_is_a_frame_error(fake_broker):
    seen = {}

    def then(peer):
        peer.send(b'\x01\x00\x01\x00\x00\x00\x04abcd\xff')  # bad frame end
        seen['close'] = peer.recv_method()   # connection.close, 501

    broker = fake_broker(_serving(then))
    conn = _connect(broker)
    ch = conn.channel()
    with pytest.raises(FrameError):
        ch.basic_get('q')
    broker.finish()
    assert seen['close'].reply_code == 501
    _assert_lost(conn, ch, broker)


def _beats_while_heard(peer, seconds, got):
    """Send a heartbeat every 0.2 s for ``seconds``; count the client's."""
    peer.sock.settimeout(0.2)
    beats = 0
    while seconds > 0:
        try:
            frame = peer.recv_frame(skip_heartbeats=False)
        except socket.timeout:
            seconds -= 0.2
            peer.send(HEARTBEAT)
            continue
        beats += frame.frame_type == 8
    got['beats'] = beats
    peer.sock.settimeout(10)


def test_a_long_reply_wait_keeps_heartbeats_going(fake_broker):
    """heartbeat=2: while the broker's own heartbeats keep coming, a reply
    2.6 s late (longer than the broker lets a silent client live) reaches
    the caller, and the client sent heartbeats meanwhile."""
    got = {}

    def script(peer):
        peer.handshake(heartbeat=2)
        peer.serve_channel_open(1)
        peer.expect_method(Queue.Declare)
        _beats_while_heard(peer, 2.6, got)
        peer.send(method_frame(Queue.DeclareOk('q', 3, 0), 1))
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(heartbeat=2, reply_timeout=10)
    ch = conn.channel()
    assert ch.queue_declare('q').message_count == 3
    conn.close()
    broker.finish()
    assert got['beats'] >= 1


def test_drain_events_keeps_heartbeats_going_while_the_broker_beats(
        fake_broker):
    """docs/guide_timeouts.rst: a consumer looping on drain_events needs
    nothing else -- even when the broker's heartbeats end no read."""
    got = {}

    def script(peer):
        peer.handshake(heartbeat=2)
        _beats_while_heard(peer, 2.6, got)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(heartbeat=2)
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=3.2)
    conn.close()
    broker.finish()
    assert got['beats'] >= 1


@pytest.mark.parametrize('with_callback', [False, True],
                         ids=['quiet', 'on_confirm'])
def test_a_confirm_wait_takes_acks_one_by_one_and_hands_over_the_rest(
        fake_broker, with_callback):
    """wait_for_confirms while the broker acks each publish on its own,
    with a connection.blocked among the acks: every publish is confirmed,
    in order, and the blocked callback has run when the wait returns.
    (Acks settled as they come keep the compiled loop reading within one
    turn; anything else ends the turn and is handed over.)"""
    n = 6

    def script(peer):
        peer.handshake()
        peer.serve_channel_open(1)
        peer.expect_method(Confirm.Select)
        peer.send(method_frame(Confirm.SelectOk(), 1))
        for _ in range(n):
            peer.expect_method(Basic.Publish)
            peer.recv_frame()   # content header
            peer.recv_frame()   # body
        for tag in range(1, n + 1):
            time.sleep(0.01)    # (each ack in a segment of its own)
            peer.send(method_frame(Basic.Ack(tag, False), 1))
            if tag == 3:
                time.sleep(0.01)
                peer.send(method_frame(PikaConnection.Blocked('low memory')))
        peer.serve_close()

    broker = fake_broker(script)
    reasons, confirmed = [], []
    conn = _connect(broker, on_blocked=reasons.append)
    ch = conn.channel()
    ch.confirm_select()
    for _ in range(n):
        ch.basic_publish(
            amqp.Message(b'x'), routing_key='q',
            on_confirm=(lambda tag, outcome: confirmed.append(
                (tag, outcome))) if with_callback else None)
    assert ch.wait_for_confirms(timeout=10 * TIMEOUT) is True
    assert reasons == ['low memory']
    if with_callback:
        assert confirmed == [(tag, 'ack') for tag in range(1, n + 1)]
    conn.close()
    broker.finish()


def _replies(seed, count):
    """``count`` basic.get replies (get-ok with content, or get-empty) of
    random sizes and properties: (expected, wire bytes)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if rng.random() < 0.2:
            out.append((None, method_frame(Basic.GetEmpty(), 1)))
            continue
        body = rng.randbytes(rng.choice([0, 1, 7, 300, 5000, 140000]))
        properties = {}
        if rng.random() < 0.5:
            properties['content_type'] = 'text/plain'
        if rng.random() < 0.5:
            properties['application_headers'] = {'n': i, 'k': 'v' * i}
        if rng.random() < 0.3:
            properties['priority'] = rng.randrange(10)
        wire = message_frames(Basic.GetOk(i + 1, False, 'ex', 'rk', 0), body,
                              1, properties)
        out.append(((i + 1, body, properties), wire))
    return out


@pytest.mark.parametrize('seed', range(4))
def test_replies_cut_at_random_points_arrive_whole(fake_broker, seed):
    """basic.get replies and get-empties (content up to 140 kB, more than
    one frame) sent in pieces cut at random points, some alone on the
    wire, some run together: every reply arrives whole, with its
    properties, on either path."""
    replies = _replies(seed, 40)
    rng = random.Random(seed + 100)

    def script(peer):
        peer.handshake()
        peer.serve_channel_open(1)
        for _, wire in replies:
            peer.expect_method(Basic.Get)
            at = 0
            while at < len(wire):
                step = rng.choice([1, 3, 8, 50, 700, 9000, 70000])
                peer.send(wire[at:at + step])
                at += step
                if rng.random() < 0.3:
                    time.sleep(0.001)
        peer.serve_close()

    broker = fake_broker(script)
    conn = _connect(broker)
    ch = conn.channel()
    for expected, _ in replies:
        msg = ch.basic_get('q')
        if expected is None:
            assert msg is None
            continue
        tag, body, properties = expected
        assert (msg.delivery_tag, msg.body) == (tag, body)
        for name, value in properties.items():
            assert msg.properties[name] == value, name
    conn.close()
    broker.finish()
