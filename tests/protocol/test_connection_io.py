"""Blocking I/O, heartbeats and closing against the scripted fake broker."""
import logging
import socket
import struct
import threading
import time

import pika.frame
import pytest
from pika.spec import Basic, Channel, Connection, Queue

from amqp import Connection as AMQPConnection
from amqp.exceptions import (AMQPError, ConnectionForced,
                             RecoverableConnectionError)
from testkit import (HEARTBEAT, assert_writes_refused, frame,
                     make_certificates, message_frames, method_frame)

from .fakebroker import CLOSE_OK, TIMEOUT, handshake_then_close

BLOCKED = method_frame(Connection.Blocked('low memory'))
UNBLOCKED = method_frame(Connection.Unblocked())


def _then_close(body=None, heartbeat=0):
    return handshake_then_close(body, heartbeat=heartbeat)


def test_drain_timeout_is_total_despite_heartbeats(fake_broker):
    stop = threading.Event()

    def body(peer):
        while not stop.wait(0.1):
            peer.send(HEARTBEAT)

    broker = fake_broker(_then_close(body, heartbeat=60))
    conn = broker.connect(heartbeat=60)
    start = time.monotonic()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.5)
    elapsed = time.monotonic() - start
    stop.set()
    assert 0.45 <= elapsed < 0.65, elapsed
    assert conn.connected  # a timeout is not an error
    conn.close()


def test_drain_timeout_zero_never_blocks(fake_broker):
    broker = fake_broker(_then_close(lambda peer: time.sleep(0.5)))
    conn = broker.connect()
    start = time.monotonic()
    for _ in range(100):
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0)
    assert time.monotonic() - start < 0.2
    conn.close()


def test_drain_serves_buffered_frames_first(fake_broker):
    events = []
    sent = threading.Event()

    def body(peer):
        peer.send(BLOCKED + UNBLOCKED + BLOCKED)
        sent.set()

    broker = fake_broker(_then_close(body))
    conn = broker.connect(on_blocked=lambda r: events.append(('b', r)),
                   on_unblocked=lambda: events.append('u'))
    sent.wait(TIMEOUT)
    time.sleep(0.05)
    conn.drain_events(timeout=1)
    # all three arrived in one read; none waits for another read
    assert events == [('b', 'low memory'), 'u', ('b', 'low memory')]
    assert conn.blocked == 'low memory'
    conn.close()


def test_timeout_mid_frame_keeps_partial_frame(fake_broker):
    go_on = threading.Event()

    def body(peer):
        peer.send(BLOCKED[:9])
        go_on.wait(TIMEOUT)
        peer.send(BLOCKED[9:])

    broker = fake_broker(_then_close(body))
    reasons = []
    conn = broker.connect(on_blocked=reasons.append)
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.3)
    assert reasons == []
    go_on.set()
    conn.drain_events(timeout=TIMEOUT)
    assert reasons == ['low memory']
    conn.close()


def test_read_timeout_applies_after_connect_timeout(fake_broker):
    # connect_timeout bounds the handshake only; afterwards a read waits
    # read_timeout (or forever), whatever connect_timeout was.
    broker = fake_broker(_then_close())
    conn = broker.connect(connect_timeout=7, read_timeout=0.3)
    start = time.monotonic()
    with pytest.raises(socket.timeout):
        conn.blocking_read()
    assert 0.25 <= time.monotonic() - start < 1.0
    assert conn.connected
    conn.close()
    broker = fake_broker(_then_close())
    conn = broker.connect(connect_timeout=0.5)
    time.sleep(0.6)    # past the connect deadline: it no longer applies
    start = time.monotonic()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.3)
    assert 0.25 <= time.monotonic() - start < 1.0
    conn.close()


def test_socket_options(fake_broker):
    broker = fake_broker(_then_close())
    conn = broker.connect(socket_settings={socket.TCP_KEEPINTVL: 7,
                                            socket.TCP_KEEPCNT: 3})
    sock = conn.transport.sock
    assert sock.getsockopt(socket.SOL_TCP, socket.TCP_NODELAY) == 1
    assert sock.getsockopt(socket.SOL_TCP, socket.TCP_KEEPINTVL) == 7
    assert sock.getsockopt(socket.SOL_TCP, socket.TCP_KEEPCNT) == 3
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    conn.close()


def test_blocking_receives_end_within_the_receive_quantum(fake_broker):
    """A TCP receive with a deadline a second or more away blocks in the
    kernel: SO_RCVTIMEO ends it after RECV_QUANTUM.  A descriptor left
    non-blocking (as green socket libraries keep it) gets no quantum:
    receives there keep polling up to their deadlines."""
    import os

    from amqp.transport import _TIMEVAL, RECV_QUANTUM
    broker = fake_broker(_then_close())
    conn = broker.connect()
    sock = conn.transport.sock
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                          _TIMEVAL.size)
    assert _TIMEVAL.unpack(raw) == (int(RECV_QUANTUM), 0)
    assert conn.transport._quantum == RECV_QUANTUM
    os.set_blocking(sock.fileno(), False)
    try:
        assert conn.transport._set_quantum(sock) is None
    finally:
        os.set_blocking(sock.fileno(), True)
    conn.close()


def test_socket_settings_can_turn_nodelay_off(fake_broker):
    broker = fake_broker(_then_close())
    conn = broker.connect(socket_settings={socket.TCP_NODELAY: 0})
    assert conn.transport.sock.getsockopt(
        socket.SOL_TCP, socket.TCP_NODELAY) == 0
    conn.close()


def test_heartbeat_tick_sends_when_due_and_detects_silence(fake_broker):
    seen = {}

    def script(peer):
        peer.handshake(heartbeat=1)
        time.sleep(1.5)   # silent, but reads what the client sends
        peer.sock.settimeout(0.1)
        try:
            while True:
                peer.recv_frame(skip_heartbeats=False)
        except OSError:
            pass
        except EOFError:
            pass
        seen['heartbeats'] = sum(isinstance(f, pika.frame.Heartbeat)
                                 for f in peer.frames)
        peer.wait_closed(timeout=3)

    broker = fake_broker(script)
    conn = broker.connect(heartbeat=1)
    assert conn.heartbeat == 1
    conn.heartbeat_tick()          # nothing due yet
    time.sleep(0.6)
    conn.heartbeat_tick()          # half an interval: send one
    sent = conn.bytes_sent
    start = time.monotonic()
    with pytest.raises(ConnectionForced):
        while time.monotonic() - start < 5:
            conn.heartbeat_tick()
            time.sleep(0.1)
    # raised after 2.5 intervals of silence (from the handshake)
    assert time.monotonic() - start < 2.5
    assert sent >= 1
    assert not conn.connected
    broker.finish()
    assert seen['heartbeats'] >= 2


def test_heartbeats_waiting_unread_are_not_silence(fake_broker):
    """A program busy for several intervals reads nothing, while the
    broker's heartbeats pile up in the socket: heartbeat_tick must not
    call that silence (py-amqp does, and drops a live connection)."""
    from amqp.method_framing import HEARTBEAT_FRAME

    def script(peer):
        peer.handshake(heartbeat=1)
        for _ in range(12):      # 3.6 s of heartbeats, none read
            peer.send(HEARTBEAT_FRAME)
            time.sleep(0.3)
        peer.wait_closed(timeout=5)

    broker = fake_broker(script)
    conn = broker.connect(heartbeat=1)
    time.sleep(3.2)              # busy: 3.2 intervals, nothing read
    conn.heartbeat_tick()        # does not raise: the broker was heard
    assert conn.connected
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.5)   # reads the heartbeats
    assert conn.connected
    conn.collect()
    broker.finish()


@pytest.mark.parametrize('rate, send_after, dead_after', [
    (2, 1.0, 4.0 + 1.0),     # heartbeat 2 s: send after 1 s, dead at 5 s
    (4, 0.5, 4.0 + 0.5),
    (0, 1.0, 4.0 + 1.0),     # <= 0 means the default, 2
])
def test_heartbeat_tick_rate_sets_both_thresholds(fake_broker, rate,
                                                  send_after, dead_after):
    """heartbeat_tick(rate): send after heartbeat/rate of silence on our
    side, give up after 2 intervals plus heartbeat/rate of silence from
    the broker (py-amqp's documented meaning of rate)."""
    import amqp.heartbeats as connection_module
    broker = fake_broker(lambda peer: (peer.handshake(heartbeat=2),
                                       peer.wait_closed(timeout=10)))
    conn = broker.connect(heartbeat=2)
    clock = [time.monotonic()]
    real = connection_module.monotonic
    connection_module.monotonic = lambda: clock[0]   # OS boundary: time
    try:
        conn.last_heartbeat_sent = conn.last_heartbeat_received = clock[0]
        conn.heartbeat_tick(rate)           # records the byte counters
        sent = conn.bytes_sent
        clock[0] += send_after - 0.01
        conn.heartbeat_tick(rate)
        assert conn.bytes_sent == sent      # not yet
        clock[0] += 0.02
        conn.heartbeat_tick(rate)
        assert conn.bytes_sent == sent + 1  # a heartbeat went out
        start = conn.last_heartbeat_received
        clock[0] = start + dead_after - 0.01
        conn.heartbeat_tick(rate)           # still alive
        assert conn.connected
        clock[0] = start + dead_after + 0.01
        with pytest.raises(ConnectionForced):
            conn.heartbeat_tick(rate)
    finally:
        connection_module.monotonic = real
    assert not conn.connected
    broker.finish()


def test_drain_events_detects_missed_heartbeats(fake_broker):
    broker = fake_broker(lambda peer: (peer.handshake(heartbeat=1),
                                       peer.wait_closed(timeout=5)))
    conn = broker.connect(heartbeat=1)
    start = time.monotonic()
    with pytest.raises(ConnectionForced):
        conn.drain_events()     # no timeout: heartbeats bound the wait
    assert time.monotonic() - start < 2.5 + 0.3
    assert not conn.connected


def test_silence_counts_from_the_last_frame_read(fake_broker):
    """drain_events gives up 2.5 intervals after the broker's last frame
    arrived, not after the tick that noticed it (up to half an interval
    later) plus the next tick (another half)."""
    seen = {}

    def script(peer):
        peer.handshake(heartbeat=1)
        time.sleep(0.3)
        peer.send(HEARTBEAT)
        seen['last'] = time.monotonic()
        peer.wait_closed(timeout=6)

    broker = fake_broker(script)
    conn = broker.connect(heartbeat=1)
    with pytest.raises(ConnectionForced):
        conn.drain_events()
    silence = time.monotonic() - seen['last']
    assert 2.5 - 0.05 < silence < 2.5 + 0.25
    broker.finish()


def test_heartbeat_thread_keeps_sending_while_busy(fake_broker):
    seen = {}

    def script(peer):
        peer.handshake(heartbeat=1)
        start = time.monotonic()
        times = []
        while time.monotonic() - start < 2.5:
            received = peer.recv_frame(skip_heartbeats=False)
            if isinstance(received, pika.frame.Heartbeat):
                times.append(time.monotonic() - start)
        seen['times'] = times
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(heartbeat=1, heartbeat_thread=True)
    time.sleep(2.6)   # the application is busy; it never calls drain
    conn.close()
    broker.finish()
    assert len(seen['times']) >= 4, seen['times']


def test_server_close_raises_and_answers_close_ok(fake_broker):
    seen = {}

    def script(peer):
        peer.handshake()
        peer.send_method(Connection.Close(
            320, 'CONNECTION_FORCED - shutdown', 0, 0))
        seen['reply'] = peer.recv_method()
        peer.wait_closed()

    broker = fake_broker(script)
    closed = []
    conn = broker.connect(on_close=closed.append)
    with pytest.raises(ConnectionForced) as info:
        conn.drain_events(timeout=TIMEOUT)
    assert info.value.reply_code == 320
    broker.finish()
    assert isinstance(seen['reply'], Connection.CloseOk)
    assert not conn.connected
    assert len(closed) == 1 and isinstance(closed[0], ConnectionForced)
    with pytest.raises(RecoverableConnectionError, match='not open|closed'):
        conn.channel()
    with pytest.raises(AMQPError):
        conn.drain_events(timeout=0)
    for call in (conn.send_heartbeat, lambda: conn.update_secret('x'),
                 lambda: conn.blocking_read(0)):
        with pytest.raises(RecoverableConnectionError):
            call()
    conn.close()
    conn.close()


def test_client_close_waits_for_close_ok(fake_broker):
    seen = {}

    def script(peer):
        peer.handshake()
        seen['close'] = peer.expect_method(Connection.Close)
        time.sleep(0.3)
        seen['close_ok_at'] = time.monotonic()
        peer.send(CLOSE_OK)
        peer.wait_closed()

    broker = fake_broker(script)
    closed = []
    conn = broker.connect(on_close=closed.append)
    conn.close(reply_code=200, reply_text='bye')
    done = time.monotonic()
    broker.finish()
    assert (seen['close'].reply_code, seen['close'].reply_text) == \
        (200, 'bye')
    assert done >= seen['close_ok_at']   # it waited for close-ok
    assert not conn.connected
    assert closed == [None]
    conn.close()                        # harmless
    assert closed == [None]


def test_client_close_is_bounded_when_peer_never_answers(fake_broker):
    broker = fake_broker(lambda peer: (peer.handshake(),
                                       peer.wait_closed(timeout=5)))
    conn = broker.connect(connect_timeout=0.5)
    start = time.monotonic()
    conn.close()
    assert time.monotonic() - start < 1.0
    assert not conn.connected


def test_context_manager_closes(fake_broker):
    broker = fake_broker(_then_close())
    with AMQPConnection(broker.host, connect_timeout=TIMEOUT) as conn:
        assert conn.connected
    assert not conn.connected
    broker.finish()


def test_password_not_in_repr_or_debug_logs(fake_broker, caplog):
    broker = fake_broker(_then_close())
    caplog.set_level(logging.DEBUG, logger='amqp')
    conn = AMQPConnection(broker.host, userid='u', password='hunter2',
                          connect_timeout=TIMEOUT)
    assert 'hunter2' not in repr(conn)
    conn.connect()
    assert 'hunter2' not in repr(conn)
    assert all('hunter2' not in repr(a) for a in conn.authentication)
    conn.close()
    assert caplog.records  # DEBUG logging was on
    assert 'hunter2' not in caplog.text
    assert 'hunter2' not in repr(conn)


def test_update_secret_on_the_wire(fake_broker):
    seen = {}

    def body(peer):
        seen['update'] = peer.expect_method(Connection.UpdateSecret)
        peer.send_method(Connection.UpdateSecretOk())

    broker = fake_broker(_then_close(body))
    conn = broker.connect()
    conn.update_secret('new-token', 'refresh')
    conn.close()
    broker.finish()
    assert seen['update'].new_secret == b'new-token'
    assert seen['update'].reason == 'refresh'


def test_raise_on_initial_eintr(fake_broker):
    """An EINTR before any byte of a frame arrived is a timeout (py-amqp);
    with raise_on_initial_eintr=False the read is retried."""
    broker = fake_broker(_then_close(
        lambda peer: (time.sleep(0.2), peer.send(BLOCKED))))
    reasons = []
    conn = broker.connect(on_blocked=reasons.append)
    real = conn.transport.sock

    class Interrupting:
        """Stand-in socket whose next recv fails with EINTR (OS boundary)."""
        interrupts = 1

        def __getattr__(self, name):
            return getattr(real, name)

        def recv(self, n, flags=0):
            if self.interrupts:
                self.interrupts -= 1
                raise InterruptedError(4, 'Interrupted system call')
            return real.recv(n, flags)

    conn.transport.sock = Interrupting()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=TIMEOUT)
    conn.transport.raise_on_initial_eintr = False
    conn.transport.sock.interrupts = 1
    conn.drain_events(timeout=TIMEOUT)
    assert reasons == ['low memory']
    conn.transport.sock = real
    conn.close()


def test_large_publish_after_nonblocking_drain_is_not_cut(fake_broker):
    """drain_events(timeout=0) leaves the socket non-blocking for reads;
    a later write must still block (write_timeout) and send every byte."""
    body = bytes(range(256)) * (4 * 4096)     # 4 MiB
    seen = {}

    def script(peer):
        peer.handshake(frame_max=131072)
        peer.serve_channel_open(1)
        time.sleep(0.5)      # let the client's send buffer fill up
        peer.expect_method(Basic.Publish)
        header = peer.recv_frame()
        assert isinstance(header, pika.frame.Header)
        assert header.body_size == len(body)
        received = bytearray()
        while len(received) < len(body):
            chunk = peer.recv_frame()
            assert isinstance(chunk, pika.frame.Body)
            received += chunk.fragment
        seen['body'] = bytes(received)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect()
    ch = conn.channel()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0)
    from amqp import Message
    ch.basic_publish(Message(body), routing_key='q')
    conn.close()
    broker.finish()
    assert seen['body'] == body


@pytest.mark.parametrize('consuming', [True, False])
def test_reply_wait_takes_a_whole_method_and_nothing_after_it(fake_broker,
                                                              consuming):
    """A basic.get-ok with its header and two body frames, then a method,
    all in one send.  With a consumer on the connection (deliveries may
    follow a reply), the wait for get-ok reads exactly the first four
    frames (a peek, then a read) and leaves the rest in the socket, where
    event loops polling the socket find it.  Without one it takes all in
    one read; what follows the reply is then buffered, frames_pending()
    says so, and drain_events serves it.  Either way nothing after the
    reply is dispatched by the wait."""
    get_ok = frame(1, 1, struct.pack('>HHQBBBI', 60, 71, 1, 0, 0, 0, 0))
    header = frame(2, 1, struct.pack('>HHQH', 60, 0, 7, 0))
    bodies = frame(3, 1, b'abc') + frame(3, 1, b'defg')
    after = method_frame(Channel.Flow(False), 1)

    def script(peer):
        peer.handshake()
        peer.serve_channel_open(1)
        if consuming:
            peer.expect_method(Basic.Consume)
            peer.send_method(Basic.ConsumeOk('ctag'), 1)
        peer.expect_method(Basic.Get)
        peer.send(get_ok + header + bodies + after)
        peer.expect_method(Channel.FlowOk)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect()
    ch = conn.channel()
    if consuming:
        ch.basic_consume('q', consumer_tag='ctag', callback=lambda m: None)
    msg = ch.basic_get('q')
    assert msg.body == b'abcdefg'
    assert ch.active                 # flow not dispatched by the wait
    time.sleep(0.05)
    if consuming:
        assert not conn.frames_pending()
        assert conn.sock.recv(65536, socket.MSG_PEEK) == after
    else:
        assert conn.frames_pending()
        conn.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            conn.sock.recv(65536, socket.MSG_PEEK)
        conn.sock.setblocking(True)
    conn.drain_events(timeout=TIMEOUT)
    assert not ch.active
    conn.close()
    broker.finish()


def test_tls_reply_wait_keeps_what_follows_its_reply(fake_broker,
                                                     tmp_path):
    # Over TLS a reply and the delivery behind it can come in one record;
    # decrypting the reply decrypts the delivery too.  The wait returns
    # without dispatching it (as on TCP and in py-amqp); it stays
    # buffered, frames_pending() says so although the socket is not
    # readable, and the next drain_events serves it before reading.
    import ssl
    certs = make_certificates(str(tmp_path))
    cert, key = certs['server_cert'], certs['server_key']
    deliver = message_frames(Basic.Deliver('ctag', 1, False, '', 'q'),
                             b'hi', channel=1)

    def script(peer):
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert, key)
        peer.sock = server.wrap_socket(peer.sock, server_side=True)
        peer.handshake()
        peer.serve_channel_open(1)
        consume = peer.expect_method(Basic.Consume)
        assert (consume.queue, consume.consumer_tag) == ('q', 'ctag')
        assert consume.no_ack and not consume.exclusive
        peer.send_method(Basic.ConsumeOk('ctag'), channel=1)
        declare = peer.expect_method(Queue.Declare)
        assert declare.passive and not declare.durable
        # one sendall on an SSL socket: one record
        peer.send(method_frame(Queue.DeclareOk('q', 1, 1), channel=1) +
                  deliver)
        peer.serve_close()

    broker = fake_broker(script)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    conn = broker.connect(ssl=client)
    got = []
    ch = conn.channel()
    ch.basic_consume('q', consumer_tag='ctag', callback=got.append,
                     no_ack=True)
    ch.queue_declare('q', passive=True)
    assert got == []
    assert conn.frames_pending()
    conn.drain_events(timeout=0)
    assert [m.body for m in got] == [b'hi']
    assert not conn.frames_pending()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.2)
    conn.close()


def _publish_frames(data):
    """Split the bytes a client sent after the protocol header into
    frames; the last, cut-off one is returned as ``partial``."""
    frames, pos = [], 8
    while len(data) - pos >= 7:
        frame_type, channel, size = struct.unpack_from('>BHI', data, pos)
        if len(data) < pos + size + 8:
            break
        frames.append((frame_type, data[pos + 7:pos + 7 + size]))
        pos += size + 8
    return frames, data[pos:]


def test_interrupted_publish_leaves_connection_unusable(fake_broker):
    """A publish cut off mid-frame by KeyboardInterrupt: nothing more is
    ever written, so the next publish cannot become the first one's body."""
    import signal
    go_on = threading.Event()

    def script(peer):
        peer.handshake(frame_max=131072)
        peer.serve_channel_open(1)
        go_on.wait(TIMEOUT * 3)   # read nothing while the client writes
        peer.wait_closed()

    broker = fake_broker(script)
    conn = broker.connect()
    ch = conn.channel()
    from amqp import Message

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    def interrupt_mid_write():
        # once the broker holds 64 kB unread, the client is blocked
        # inside the 64 MB write: interrupt it there
        import array
        import fcntl
        import termios
        unread = array.array('i', [0])
        deadline = time.monotonic() + TIMEOUT * 3
        while time.monotonic() < deadline:
            fcntl.ioctl(broker.peer.sock.fileno(), termios.FIONREAD, unread)
            if unread[0] >= 1 << 16:
                break
            time.sleep(0.01)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)

    message = Message(b'a' * (64 << 20))
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        threading.Thread(target=interrupt_mid_write, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            ch.basic_publish(message, routing_key='q')
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert_writes_refused(conn, ch, 'cut off')
    conn.close()
    go_on.set()
    broker.finish()
    frames, partial = _publish_frames(bytes(broker.received))
    publishes = [f for f in frames
                 if f[0] == 1 and f[1][:4] == b'\x00\x3c\x00\x28']
    assert len(publishes) == 1      # the second publish never went out
    assert partial                   # the stream ends inside a frame
    assert b'after' not in bytes(broker.received)


def test_threads_keep_their_own_deadlines(fake_broker):
    """drain_events(timeout=0) in one thread never waits on, nor changes,
    the deadline of a thread writing large bodies on another channel."""
    body = bytes(range(256)) * 4096          # 1 MiB
    count = 8
    seen = []

    def script(peer):
        peer.handshake(frame_max=131072)
        peer.serve_channel_open(1)
        for _ in range(count):
            peer.expect_method(Basic.Publish)
            assert isinstance(peer.recv_frame(), pika.frame.Header)
            received = bytearray()
            while len(received) < len(body):
                time.sleep(0.002)            # a slow reader: writes block
                received += peer.recv_frame().fragment
            seen.append(bytes(received) == body)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(write_timeout=20)
    ch = conn.channel()
    from amqp import Message
    errors, slowest = [], []
    done = threading.Event()

    def publisher():
        try:
            for _ in range(count):
                ch.basic_publish(Message(body), routing_key='q')
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=publisher)
    thread.start()
    while not done.is_set():
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0)
        slowest.append(time.monotonic() - start)
        time.sleep(0.001)
    thread.join(TIMEOUT)
    assert errors == []
    assert len(slowest) > 20 and max(slowest) < 0.1, max(slowest)
    conn.close()
    broker.finish()
    assert seen == [True] * count


def _serve_consumer(peer):
    """The fake broker's side up to a consumer on channel 1 ('ctag')."""
    peer.handshake()
    peer.serve_channel_open(1)
    peer.expect_method(Basic.Consume)
    peer.send_method(Basic.ConsumeOk('ctag'), 1)


def _consume(conn, n):
    """Consume (no_ack, 'ctag' on 'q') until n messages arrived."""
    ch = conn.channel()
    got = []
    ch.basic_consume('q', consumer_tag='ctag', callback=got.append,
                     no_ack=True)
    while len(got) < n:
        conn.drain_events(timeout=TIMEOUT)
    return got


def _large_deliveries(frame_max):
    """Three 300,000-byte deliveries on channel 1, as frames: the first
    split at frame_max as RabbitMQ does, the second with a heartbeat
    between its first two body frames, the third split at frame_max,
    then at 10,000 bytes:
    what a scatter read of a large body must expect besides the usual."""
    chunk = frame_max - 8
    bodies = [bytes((i * k + 1) % 251 for i in range(300000))
              for k in (3, 5, 7)]
    out = b''
    for n, body in enumerate(bodies):
        out += method_frame(Basic.Deliver('ctag', n + 1, False, '', 'q'), 1)
        out += frame(2, 1, struct.pack('>HHQH', 60, 0, len(body), 0))
        parts = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        if n == 2:
            rest = body[chunk:]
            parts[1:] = [rest[i:i + 10000] for i in range(0, len(rest),
                                                          10000)]
        for i, part in enumerate(parts):
            if n == 1 and i == 1:
                out += HEARTBEAT
            out += frame(3, 1, part)
    return bodies, out


@pytest.mark.parametrize('step', [None, 7919], ids=['one-send', 'trickled'])
def test_large_bodies_arrive_whole_whatever_lies_between_frames(fake_broker,
                                                                step):
    bodies, data = _large_deliveries(131072)

    def script(peer):
        _serve_consumer(peer)
        if step is None:
            peer.send(data)
        else:
            peer.send_slowly(data, step)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect()
    got = _consume(conn, 3)
    assert [m.body for m in got] == bodies
    assert [m.delivery_tag for m in got] == [1, 2, 3]
    conn.close()
    broker.finish()


def test_a_bad_frame_end_inside_a_large_body_is_a_framing_error(fake_broker):
    bodies, data = _large_deliveries(131072)
    data = bytearray(data)
    # the frame-end octet of the first delivery's first body frame
    first_body = data.index(bytes((3, 0, 1)))
    end = first_body + 7 + (131072 - 8)
    assert data[end] == 0xCE
    data[end] = 0x00

    def script(peer):
        _serve_consumer(peer)
        peer.send(bytes(data))
        peer.wait_closed()

    broker = fake_broker(script)
    conn = broker.connect()
    ch = conn.channel()
    ch.basic_consume('q', consumer_tag='ctag', callback=lambda m: None,
                     no_ack=True)
    with pytest.raises(AMQPError, match='frame_end'):
        while True:
            conn.drain_events(timeout=TIMEOUT)
    broker.finish()


def test_a_transport_subclass_that_reads_for_itself_sees_every_byte(
        fake_broker):
    """A transport subclass overriding how bytes are received (py-amqp
    subclasses filter or count them) is never bypassed by a scatter read
    of a large body: every byte goes through its methods."""
    from amqp.transport import TCPTransport

    seen = []

    class Counting(TCPTransport):
        def _read_some(self, n, flags=0):
            data = super()._read_some(n, flags)
            seen.append(len(data))
            return data

        def _read_into(self, view, flags=0):
            n = super()._read_into(view, flags)
            seen.append(n)
            return n

    assert TCPTransport.can_scatter and not Counting.can_scatter

    class CountingConnection(AMQPConnection):
        def Transport(self, host, connect_timeout, ssl=False,
                      read_timeout=None, write_timeout=None, **kwargs):
            return Counting(host, connect_timeout, read_timeout,
                            write_timeout, **kwargs)

    bodies, data = _large_deliveries(131072)

    def script(peer):
        _serve_consumer(peer)
        peer.send(data)
        peer.serve_close()

    broker = fake_broker(script)
    conn = CountingConnection(broker.host, connect_timeout=TIMEOUT)
    conn.connect()
    got = _consume(conn, 3)
    assert [m.body for m in got] == bodies
    assert sum(seen) >= len(data)
    conn.close()
    broker.finish()


def test_a_timeout_inside_a_large_body_keeps_what_was_received(fake_broker):
    """drain_events(timeout) running out while a large body is being
    received straight into its buffer loses nothing: the next call
    carries on where the last read ended."""
    bodies, data = _large_deliveries(131072)
    cut = 200000             # inside the first delivery's second frame
    resumed = threading.Event()

    def script(peer):
        _serve_consumer(peer)
        peer.send(data[:cut])
        assert resumed.wait(TIMEOUT)
        peer.send(data[cut:])
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect()
    ch = conn.channel()
    got = []
    ch.basic_consume('q', consumer_tag='ctag', callback=got.append,
                     no_ack=True)
    with pytest.raises(socket.timeout):
        while True:
            conn.drain_events(timeout=0.2)
    assert got == []
    resumed.set()
    while len(got) < 3:
        conn.drain_events(timeout=TIMEOUT)
    assert [m.body for m in got] == bodies
    conn.close()
    broker.finish()
