"""Bounded waits, channel ids and secrets, against the scripted fake
broker (what a real RabbitMQ will not do on demand: stay silent, answer
late)."""
import socket
import threading
import time

import pytest

from pika.spec import Basic, Channel, Queue
from pika.spec import Connection as PikaConnection

from amqp import Connection
from amqp.exceptions import RecoverableConnectionError, ReplyTimeout
from testkit import HEARTBEAT, frame, method_frame

from .fakebroker import TIMEOUT, start_frame


def _open_ok(channel):
    return method_frame(Channel.OpenOk(), channel)


def _connect(broker, **kwargs):
    return broker.connect(**kwargs)


def test_reply_wait_is_bounded_and_a_late_reply_reaches_no_one(fake_broker):
    """queue.declare with no answer: ReplyTimeout after reply_timeout; the
    channel is closed and its id stays taken until close-ok, so the late
    declare-ok cannot be taken for a newer call's reply."""
    late = threading.Event()
    seen = {}

    def script(peer):
        peer.handshake()
        peer.serve_channel_open(1)
        peer.expect_method(Queue.Declare)     # no answer...
        peer.expect_method(Channel.Close)     # the client gives up
        peer.expect_method(Channel.Open)      # a new channel: id 2
        seen['second_open'] = peer.frames[-1].channel_number
        peer.send(_open_ok(2))
        late.wait(TIMEOUT)
        # ...the late reply and the close-ok, on channel 1
        peer.send(method_frame(Queue.DeclareOk('old', 0, 0), 1) +
                  method_frame(Channel.CloseOk(), 1))
        peer.expect_method(Queue.Declare)
        peer.send(method_frame(Queue.DeclareOk('new', 5, 0), 2))
        peer.expect_method(Channel.Open)      # id 1 is free again
        seen['third_open'] = peer.frames[-1].channel_number
        peer.send(_open_ok(1))
        peer.serve_close()

    broker = fake_broker(script)
    conn = _connect(broker, reply_timeout=0.5)
    ch = conn.channel()
    start = time.monotonic()
    with pytest.raises(ReplyTimeout) as info:
        ch.queue_declare('q')
    assert 0.45 <= time.monotonic() - start < 2
    assert isinstance(info.value, socket.timeout)
    assert 'queue.declare-ok' in str(info.value)
    assert not ch.is_open and conn.connected
    with pytest.raises(RecoverableConnectionError):
        ch.queue_declare('q')
    other = conn.channel()
    assert other.channel_id == 2
    late.set()
    assert other.queue_declare('q').queue == 'new'
    third = conn.channel()
    assert third.channel_id == 1
    conn.close()
    broker.finish()
    assert seen == {'second_open': 2, 'third_open': 1}


def test_channel_close_is_bounded_and_keeps_its_id_until_close_ok(
        fake_broker):
    late = threading.Event()

    def script(peer):
        peer.handshake()
        peer.serve_channel_open(1)
        peer.expect_method(Channel.Close)     # no close-ok yet
        peer.serve_channel_open(2)
        late.wait(TIMEOUT)
        peer.send(method_frame(Channel.CloseOk(), 1))
        peer.serve_channel_open(1)
        peer.serve_close()

    broker = fake_broker(script)
    conn = _connect(broker, connect_timeout=0.5)
    ch = conn.channel()
    start = time.monotonic()
    ch.close()
    assert 0.45 <= time.monotonic() - start < 2
    assert conn.channel().channel_id == 2     # 1 is still closing
    late.set()
    deadline = time.monotonic() + TIMEOUT
    while 1 in conn.channel_ids.used and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=0.1)
        except socket.timeout:
            pass
    assert conn.channel().channel_id == 1
    conn.close()
    broker.finish()


def test_connection_level_reply_timeout_closes_the_connection(fake_broker):
    closed = []

    def script(peer):
        peer.handshake()
        peer.expect_method(PikaConnection.UpdateSecret)
        peer.wait_closed()

    broker = fake_broker(script)
    conn = _connect(broker, reply_timeout=0.3, on_close=closed.append)
    with pytest.raises(ReplyTimeout):
        conn.update_secret('token')
    assert not conn.connected
    assert len(closed) == 1 and isinstance(closed[0], ReplyTimeout)
    broker.finish()


def test_connect_is_bounded_by_default():
    assert Connection().connect_timeout == 30
    assert Connection().reply_timeout == 60
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)        # accepts, never speaks
    try:
        conn = Connection('127.0.0.1:%d' % listener.getsockname()[1],
                          connect_timeout=0.5)
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            conn.connect()
        assert time.monotonic() - start < 1.5
    finally:
        listener.close()


def test_dns_resolution_counts_against_connect_timeout(monkeypatch):
    def slow_lookup(*args, **kwargs):   # the resolver (OS boundary)
        time.sleep(3)
        raise socket.gaierror(-2, 'Name or service not known')

    monkeypatch.setattr(socket, 'getaddrinfo', slow_lookup)
    conn = Connection('broker.invalid:5672', connect_timeout=0.4)
    start = time.monotonic()
    with pytest.raises(socket.timeout, match='resolving'):
        conn.connect()
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize('url', [
    'amqp://guest:Hunter2Secret/x@host/',
    'amqp://guest:Hunter2#Secret@host/',
    'amqp://guest:Hunter2?Secret@host/',
    'amqp://guest:12345/x@host/',
    'amqp://guest:123#Hunter2Secret@host/',
])
def test_url_errors_never_quote_the_password(url):
    with pytest.raises(ValueError) as info:
        Connection.from_url(url)
    text = str(info.value)
    assert 'Hunter2' not in text and 'Secret' not in text and \
        '12345' not in text and 'percent-encoded' in text


@pytest.mark.parametrize('login_method', ['PLAIN', 'AMQPLAIN'])
def test_unencodable_password_is_not_quoted(login_method, fake_broker):
    def script(peer):
        peer.expect_header()
        peer.send(start_frame())
        peer.wait_closed()

    broker = fake_broker(script)
    secret = 'Hunter2\ud800Secret'
    conn = Connection(broker.host, password=secret,
                      login_method=login_method, connect_timeout=TIMEOUT)
    with pytest.raises(ValueError) as info:
        conn.connect()
    text = str(info.value)
    assert 'Hunter2' not in text and 'Secret' not in text
    assert 'password' in text
    assert 'Hunter2' not in repr(info.value)


def _deliver(channel, tag, body, ctag='ctag', body_size=None, chunk=None):
    """basic.deliver with its header and body frames, as bytes (the
    header may announce another size than the body sent)."""
    import struct
    frames = method_frame(Basic.Deliver(ctag, tag, False, '', 'q'), channel)
    size = len(body) if body_size is None else body_size
    frames += frame(2, channel, struct.pack('>HHQH', 60, 0, size, 0))
    chunk = chunk or max(len(body), 1)
    for i in range(0, len(body), chunk):
        frames += frame(3, channel, body[i:i + chunk])
    return frames


def _consume(peer, channel, ctag='ctag'):
    peer.serve_channel_open(channel)
    peer.expect_method(Basic.Consume)
    peer.send(method_frame(Basic.ConsumeOk(ctag), channel))


@pytest.mark.parametrize('size, chunk', [(5000, 4000), (3000, None)],
                         ids=['in-two-frames', 'in-one-frame'])
def test_oversized_message_is_skipped_rejected_and_reported(fake_broker,
                                                            size, chunk):
    # in one frame, the whole content is buffered and taken in one call
    seen = {}

    def script(peer):
        peer.handshake(frame_max=4096)
        _consume(peer, 1)
        peer.send(_deliver(1, 1, b'x' * size, chunk=chunk) +
                  _deliver(1, 2, b'small'))
        seen['reject'] = peer.expect_method(Basic.Reject)
        peer.serve_close()

    broker = fake_broker(script)
    conn = _connect(broker, max_message_size=1000, frame_max=4096)
    ch = conn.channel()
    got = []
    ch.basic_consume('q', consumer_tag='ctag', callback=got.append)
    with pytest.raises(Exception) as info:
        conn.drain_events(timeout=TIMEOUT)
    from amqp.exceptions import ContentTooLarge
    assert isinstance(info.value, ContentTooLarge)
    assert '%d bytes' % size in str(info.value)
    assert '1000' in str(info.value)
    conn.drain_events(timeout=TIMEOUT)          # nothing else was lost
    assert [m.body for m in got] == [b'small']
    assert conn.connected
    conn.close()
    broker.finish()
    reject = seen['reject']
    assert (reject.delivery_tag, reject.requeue) == (1, False)


def test_a_body_of_2_to_the_62_is_never_accumulated(fake_broker):
    """The default limit (128 MiB) refuses a header announcing 2**62 bytes
    before any body arrives; other channels keep working meanwhile."""
    def script(peer):
        peer.handshake()
        _consume(peer, 1, 'big')
        _consume(peer, 2, 'other')
        peer.send(_deliver(1, 1, b'y' * 60000, body_size=2 ** 62,
                           ctag='big', chunk=30000))
        peer.send(_deliver(2, 1, b'fine', ctag='other'))
        peer.expect_method(Basic.Reject)
        peer.serve_close()

    broker = fake_broker(script)
    conn = _connect(broker)
    assert conn.max_message_size == 128 * 1024 * 1024
    got = []
    big = conn.channel()
    big.basic_consume('q', consumer_tag='big', callback=got.append)
    other = conn.channel()
    other.basic_consume('q', consumer_tag='other', callback=got.append)
    conn.drain_events(timeout=TIMEOUT)
    assert [m.body for m in got] == [b'fine']
    # the skipped body is counted, not stored
    assert conn.connected and len(conn._reader.frames) < 70000
    big.basic_reject(1, requeue=False)     # what the app may do meanwhile
    conn.close()
    broker.finish()


@pytest.mark.parametrize('flood', ['heartbeats', 'body frames'])
def test_drain_deadline_holds_against_a_flood(fake_broker, flood):
    """A peer streaming heartbeats (or the body frames of a huge message)
    as fast as it can: drain_events(timeout=1) still returns after ~1 s."""
    stop = threading.Event()

    def script(peer):
        peer.handshake(heartbeat=0)
        if flood == 'heartbeats':
            chunk = HEARTBEAT * 512
        else:
            _consume(peer, 1)
            peer.send(_deliver(1, 1, b'', body_size=2 ** 40))
            chunk = frame(3, 1, b'z' * 4000) * 8
        peer.sock.settimeout(5)
        try:
            while not stop.is_set():
                peer.send(chunk)
        except OSError:
            pass

    broker = fake_broker(script)
    conn = _connect(broker)     # the huge body is skipped as it streams
    if flood != 'heartbeats':
        conn.channel().basic_consume('q', consumer_tag='ctag',
                                     callback=lambda m: None)
    start = time.monotonic()
    try:
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=1)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        conn.collect()
    assert 0.95 <= elapsed < 1.5, elapsed
    broker.finish()


@pytest.mark.parametrize('encoding', [
    b'utf\x00-8',        # codecs.lookup: ValueError (embedded null)
    b'\x93atin-1',       # not UTF-8: a surrogate, UnicodeEncodeError
    b'no-such-codec',    # LookupError
])
def test_unusable_content_encoding_leaves_the_body_as_bytes(
        fake_broker, encoding):
    """Found by tests/protocol/test_fuzz.py: a content_encoding that no
    codec lookup can take raised ValueError out of drain_events."""
    import struct

    def script(peer):
        peer.handshake()
        _consume(peer, 1)
        header = struct.pack('>HHQH', 60, 0, 3, 0x4000) + \
            bytes([len(encoding)]) + encoding
        peer.send(method_frame(Basic.Deliver('ctag', 1, False, '', 'q'), 1) +
                  frame(2, 1, header) + frame(3, 1, b'abc'))
        peer.serve_close()

    broker = fake_broker(script)
    conn = _connect(broker)
    ch = conn.channel()
    got = []
    ch.basic_consume('q', consumer_tag='ctag', callback=got.append)
    conn.drain_events(timeout=TIMEOUT)
    assert got[0].body == b'abc'
    assert got[0].properties['content_encoding'] == encoding.decode(
        'utf-8', 'surrogateescape')
    conn.close()
    broker.finish()
