"""Broken peers: each case ends in a typed amqp exception or an OSError
(socket.timeout included) within the configured timeout, never a hang
or a raw struct.error/IndexError."""
import socket
import time

import pytest

from pika.spec import Connection as Conn

from amqp import Connection
from amqp.exceptions import AMQPError, FrameError
from testkit import HEARTBEAT, frame, method_frame

from .fakebroker import DEFAULT_PROPERTIES, OPEN_OK, start_frame, tune_frame

TIMEOUT = 1.0
ALLOWED = (AMQPError, OSError)
BAD_FRAME_END = HEARTBEAT[:-1] + b'\xff'


def _assert_fails_fast(broker, **kwargs):
    kwargs.setdefault('connect_timeout', TIMEOUT)
    kwargs.setdefault('read_timeout', TIMEOUT)
    conn = Connection(broker.host, **kwargs)
    start = time.monotonic()
    with pytest.raises(ALLOWED) as info:
        conn.connect()
        # a handshake that succeeded must fail on the next read
        conn.drain_events(timeout=TIMEOUT)
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT + 1.0, elapsed
    assert not conn.connected
    return info.value


def _script(opening, send):
    """``opening(peer)``, ``send(peer)``, then read until the client
    hangs up."""
    def script(peer):
        opening(peer)
        send(peer)
        peer.wait_closed(timeout=3)
    return script


def _after_header(send):
    return _script(lambda peer: peer.expect_header(), send)


def _after_handshake(send):
    return _script(lambda peer: peer.handshake(), send)


def test_garbage_instead_of_a_frame(fake_broker):
    broker = fake_broker(_after_header(
        lambda p: p.send(b'HTTP/1.1 400 Bad Request\r\n\r\n' * 4)))
    exc = _assert_fails_fast(broker)
    assert isinstance(exc, FrameError)


def test_garbage_after_handshake(fake_broker):
    broker = fake_broker(_after_handshake(
        lambda p: p.send(b'\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x33XX')))
    _assert_fails_fast(broker)


def test_truncated_frame_then_close(fake_broker):
    def send(peer):
        peer.send(start_frame()[:20])
        peer.sock.shutdown(socket.SHUT_WR)
    broker = fake_broker(_after_header(send))
    exc = _assert_fails_fast(broker)
    assert isinstance(exc, (ConnectionResetError, AMQPError))


def test_close_mid_handshake(fake_broker):
    def script(peer):
        peer.expect_header()
        peer.send(start_frame())
        peer.expect_method(Conn.StartOk)
        peer.sock.close()
    broker = fake_broker(script)
    _assert_fails_fast(broker)


def test_frame_larger_than_4096_before_tune(fake_broker):
    big = dict(DEFAULT_PROPERTIES, padding='x' * 5000)
    broker = fake_broker(_after_header(
        lambda p: p.send(start_frame(properties=big))))
    exc = _assert_fails_fast(broker)
    assert isinstance(exc, FrameError)
    assert '4088' in str(exc) or '4096' in str(exc)


def test_frame_larger_than_frame_max(fake_broker):
    # the header alone announces 1 MB; nothing more is sent
    broker = fake_broker(_after_handshake(
        lambda p: p.send(b'\x01\x00\x00\x00\x10\x00\x00')))
    exc = _assert_fails_fast(broker, frame_max=8192)
    assert isinstance(exc, FrameError)


def test_unknown_frame_type(fake_broker):
    broker = fake_broker(_after_handshake(
        lambda p: p.send(frame(7, 0, b'abc'))))
    exc = _assert_fails_fast(broker)
    assert isinstance(exc, FrameError)


def test_bad_frame_end(fake_broker):
    broker = fake_broker(_after_handshake(
        lambda p: p.send(BAD_FRAME_END)))
    exc = _assert_fails_fast(broker)
    assert isinstance(exc, FrameError)


def test_unknown_method(fake_broker):
    broker = fake_broker(_after_handshake(
        lambda p: p.send(frame(1, 0, b'\x00\x0a\x00\x63'))))
    _assert_fails_fast(broker)


def test_unknown_method_during_handshake(fake_broker):
    broker = fake_broker(_after_header(
        lambda p: p.send(frame(1, 0, b'\x12\x34\x56\x78'))))
    _assert_fails_fast(broker)


def test_method_frame_too_short(fake_broker):
    broker = fake_broker(_after_header(lambda p: p.send(frame(1, 0, b'\x00'))))
    _assert_fails_fast(broker)


@pytest.mark.parametrize('table', [
    b'\x00\x00\x00\x10\x03keyS\x00\x00\xff\xff',     # longstr past the end
    b'\x00\x00\x00\x05\x03keyZ',                      # unknown value tag
    b'\xff\xff\xff\xff',                              # table past the frame
    b'\x00\x00\x00\x04\x09ab',                        # key past the table
])
def test_malformed_table_in_start(fake_broker, table):
    payload = (b'\x00\x0a\x00\x0a\x00\x09' + table +
               b'\x00\x00\x00\x05PLAIN\x00\x00\x00\x05en_US')
    broker = fake_broker(_after_header(lambda p: p.send(frame(1, 0, payload))))
    _assert_fails_fast(broker)


def test_truncated_start_arguments(fake_broker):
    payload = b'\x00\x0a\x00\x0a\x00\x09\x00\x00\x00\x00\x00\x00'
    broker = fake_broker(_after_header(lambda p: p.send(frame(1, 0, payload))))
    _assert_fails_fast(broker)


def _assert_connect_times_out(broker, **kwargs):
    """connect_timeout=0.5 ends connect() with socket.timeout in time."""
    conn = Connection(broker.host, connect_timeout=0.5, **kwargs)
    start = time.monotonic()
    with pytest.raises(socket.timeout):
        conn.connect()
    assert time.monotonic() - start < 1.0
    assert not conn.connected


def test_silence_during_handshake_hits_connect_timeout(fake_broker):
    broker = fake_broker(_after_header(lambda p: time.sleep(TIMEOUT + 0.5)))
    _assert_connect_times_out(broker)


def test_silence_after_start_hits_connect_timeout(fake_broker):
    """connect_timeout covers the whole handshake, not each read."""
    def script(peer):
        peer.expect_header()
        # keep trickling bytes of start so no single read times out
        data = start_frame()
        for i in range(len(data) - 1):
            peer.send(data[i:i + 1])
            time.sleep(0.05)
    _assert_connect_times_out(fake_broker(script))


def test_one_byte_reads(fake_broker):
    """The whole handshake and a method after it, one byte per send."""
    seen = {}

    def script(peer):
        peer.expect_header()
        peer.send_slowly(start_frame())
        seen['start_ok'] = peer.expect_method(Conn.StartOk)
        peer.send_slowly(tune_frame(heartbeat=0))
        peer.expect_method(Conn.TuneOk)
        peer.expect_method(Conn.Open)
        peer.send_slowly(OPEN_OK)
        peer.send_slowly(method_frame(Conn.Blocked('mem')))
        peer.expect_method(Conn.Close)
        peer.send_slowly(method_frame(Conn.CloseOk()))

    broker = fake_broker(script)
    reasons = []
    conn = Connection(broker.host, connect_timeout=5,
                      on_blocked=reasons.append)
    conn.connect()
    conn.drain_events(timeout=5)
    assert reasons == ['mem']
    conn.close()
    broker.finish()


def test_frame_error_sends_close_501_on_the_wire(fake_broker):
    seen = {}

    def script(peer):
        peer.handshake()
        peer.send(BAD_FRAME_END)
        seen['close'] = peer.expect_method(Conn.Close)
        peer.wait_closed(timeout=3)

    broker = fake_broker(script)
    conn = Connection(broker.host, connect_timeout=TIMEOUT)
    conn.connect()
    with pytest.raises(FrameError):
        conn.drain_events(timeout=TIMEOUT)
    broker.finish()
    assert seen['close'].reply_code == 501
    assert not conn.connected
    with pytest.raises(AMQPError):
        conn.channel()


def test_silent_tls_handshake_hits_connect_timeout(fake_broker):
    """connect_timeout bounds the TLS handshake too (a plain-TCP server
    that never answers the ClientHello)."""
    _assert_connect_times_out(fake_broker(lambda peer: time.sleep(1.5)),
                              ssl=True)


def test_tls_to_a_plain_amqp_server_fails_typed(fake_broker):
    def script(peer):
        peer.recv_exactly(5)     # the ClientHello's record header
        peer.send(b'AMQP\x00\x00\x09\x01')
        peer.wait_closed(timeout=2)
    broker = fake_broker(script)
    conn = Connection(broker.host, ssl=True, connect_timeout=TIMEOUT)
    with pytest.raises(OSError):     # ssl.SSLError is an OSError
        conn.connect()


def test_blocking_read_closes_on_garbage(fake_broker):
    broker = fake_broker(_after_handshake(
        lambda p: p.send(BAD_FRAME_END)))
    conn = Connection(broker.host, connect_timeout=TIMEOUT)
    conn.connect()
    with pytest.raises(FrameError):
        conn.blocking_read(timeout=TIMEOUT)
    assert not conn.connected
