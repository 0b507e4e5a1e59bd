"""basic_publish's compiled twin (``_speedups.Publish``) against the pure
method: the same bytes on the wire and the same errors for the same calls,
and whole frames in order when threads publish on one connection to a
peer that reads slowly (sends come back short or would block, and the
rest of a frame must go out before any other thread's).

The fake broker is used because the wire itself is compared, and because
a real broker reads too fast to fill the client's send buffer.
"""
import struct
import threading
import time

import pytest
from pika.spec import Confirm, Connection

import amqp
from amqp import method_framing, publishing
from amqp.serialization import speedups

from .fakebroker import CLOSE_OK

compiled = pytest.mark.skipif(speedups is None,
                              reason='the compiled module is not built')


class _Sub(amqp.Message):
    pass


class _Unencodable:
    """A header value no field-table type carries (the same text in every
    error message)."""

    def __repr__(self):
        return '<unencodable>'


def _calls():
    """(args, kwargs) of basic_publish calls: the twin's common case and
    every kind of call it hands to the pure method."""
    m = amqp.Message
    return [
        ((m(b'x'), '', 'q'), {}),
        ((m(b'y'),), {'routing_key': 'q'}),
        ((m(b'z'),), {'exchange': 'ex', 'routing_key': 'rk',
                      'mandatory': True}),
        ((m(b'z'), 'ex', 'rk', False, True), {}),
        ((m(b'z'), 'ex', 'rk', False, True), {}),       # the kept arguments
        ((m(b'p', content_type='a/b', headers={'k': 1}, priority=3), '',
          'q'), {}),
        ((m(b''), '', 'q'), {}),
        ((m('text \u00e9'), '', 'q'), {}),
        ((m(bytearray(b'ba')), '', 'q'), {}),
        ((m(b'L' * 40000), '', 'q'), {}),                # scatter-gather
        ((m(b'L' * 200000), '', 'q'), {}),               # over frame_max
        ((m(b'E' * (2 * 131064)), '', 'q'), {}),         # two whole frames
        ((m(b'F' * 131065, content_type='a/b', headers={'h': 1}), '', 'q'),
         {}),                                # one octet in its last frame
        ((m(b'x'), '', 'q\u00e9'), {}),
        ((_Sub(b's'), '', 'q'), {}),
        ((m(b'x'), '', 'q', 1, 0), {}),                  # ints for flags
        ((m(b'k'),), {'exchange': 'ex', 'routing_key': 'rk',   # kombu's
                      'mandatory': False, 'immediate': False,
                      'timeout': None, 'confirm_timeout': None}),
        ((m(b'x'), '', 'q', False, False, None, None), {}),
        ((m(b'x'), '', 'q', False, False, None, 3), {}),
        ((m(b'x'), '', 'q'), {'timeout': 5}),
        ((m(b'x'), '', 'q'), {'argsig': 'Bssbb'}),
        ((b'raw', '', 'q'), {}),                         # not a Message
        ((m(b'x'), b'ex', 'q'), {}),                     # bytes exchange
        ((m(b'x'), '', 'r' * 256), {}),                  # too long
        ((m(b'x'), '', 'q'), {'routing_key': 'twice'}),
        ((m(b'x'), '', 'q'), {'bogus': 1}),
        ((), {}),
        ((m(b'x'), '', 'q', False, False, None, None, 'Bssbb', 'extra'), {}),
        ((m(object()), '', 'q'), {}),                    # a bad body
        ((m(b'x', application_headers={'k': _Unencodable()}), '', 'q'), {}),
        # (refused by the writer, before any byte is sent)
        ((m(b'last'),), {}),
    ]


def _outcome(fn, *args, **kwargs):
    try:
        return 'ok', fn(*args, **kwargs)
    except (amqp.AMQPError, ValueError, TypeError) as exc:
        return 'error', type(exc), str(exc)


def _serve_until_close(peer):
    peer.handshake(heartbeat=0)
    peer.serve_channel_open()
    while True:
        method = peer.recv_frame()
        if isinstance(getattr(method, 'method', None), Connection.Close):
            break
    peer.send(CLOSE_OK)


class _Pure:
    """Channels and frame writers made in this block are the pure ones."""

    def __enter__(self):
        self.saved = (method_framing.speedups, publishing.speedups)
        method_framing.speedups = publishing.speedups = None

    def __exit__(self, *exc):
        method_framing.speedups, publishing.speedups = self.saved


def _connect(broker, pure):
    """A connection to ``broker`` and a channel on it, pure or not."""
    if not pure:
        conn = broker.connect()
        return conn, conn.channel()
    with _Pure():
        conn = broker.connect()
        return conn, conn.channel()


def _serve_confirms_until_close(peer):
    peer.handshake(heartbeat=0)
    peer.serve_channel_open()
    peer.expect_method(Confirm.Select)
    peer.send_method(Confirm.SelectOk(), 1)
    while True:
        method = peer.recv_frame()
        if isinstance(getattr(method, 'method', None), Connection.Close):
            break
    peer.send(CLOSE_OK)


def _publish_all(fake_broker, pure, confirming=False):
    broker = fake_broker(_serve_confirms_until_close if confirming
                         else _serve_until_close)
    conn, ch = _connect(broker, pure)
    if confirming:
        ch.confirm_select()
    calls = _calls()
    if confirming:
        # (a confirm_timeout waits for an ack this peer never sends)
        calls = [(args, kwargs) for args, kwargs in calls
                 if kwargs.get('confirm_timeout') is None and
                 (len(args) < 7 or args[6] is None)]
    outcomes = [_outcome(ch.basic_publish, *args, **kwargs)
                for args, kwargs in calls]
    twin = type(ch.basic_publish)
    if confirming:
        # the tags recorded, and those the refused writes withdrew
        outcomes.append((ch._confirms.seq, sorted(ch._confirms.unsettled)))
    conn.close()
    broker.finish()
    return outcomes, broker.received, twin


@compiled
def test_the_twin_writes_and_refuses_as_the_pure_method(fake_broker):
    outcomes, wire, twin = _publish_all(fake_broker, pure=False)
    pure_outcomes, pure_wire, pure_twin = _publish_all(fake_broker,
                                                       pure=True)
    assert twin is speedups.Publish and pure_twin is not speedups.Publish
    assert outcomes == pure_outcomes
    assert wire == pure_wire
    # (the calls include both kinds of outcome)
    assert {o[0] for o in outcomes} == {'ok', 'error'}


@compiled
def test_in_confirm_mode_the_twin_returns_and_withdraws_tags_as_pure(
        fake_broker):
    """After confirm_select the twin records each publish before writing
    it and returns its delivery tag; a publish the writer refuses before
    sending a byte gives its tag back, as the pure method does."""
    outcomes, wire, twin = _publish_all(fake_broker, False, True)
    pure_outcomes, pure_wire, _ = _publish_all(fake_broker, True, True)
    assert twin is speedups.Publish
    assert outcomes == pure_outcomes
    assert wire == pure_wire
    tags = [o[1] for o in outcomes[:-1] if o[0] == 'ok']
    # every accepted publish has the next tag: the refused ones left none
    assert tags == list(range(1, len(tags) + 1))
    assert outcomes[-1] == (len(tags), tags)


def _spy_on_writev(monkeypatch):
    """Record each call of the transports' pure scatter-gather loop."""
    from amqp import transport
    calls = []
    pure = transport._AbstractTransport._writev

    def writev(self, parts):
        calls.append(sum(map(len, parts)))
        return pure(self, parts)

    monkeypatch.setattr(transport._AbstractTransport, '_writev', writev)
    return calls


@compiled
@pytest.mark.parametrize('pure', [False, True])
def test_large_bodies_go_out_from_the_compiled_writer(fake_broker,
                                                      monkeypatch, pure):
    """With the compiled writer a large bytes body leaves by scatter-gather
    from the writer itself (sendmsg(2) without the transport's Python
    loop), in the frames the pure writer sends; the pure path (the spy's
    own check) goes through the loop."""
    bodies = [b'A' * 40000, bytes(range(256)) * 4096, b'B' * (3 * 131064)]
    broker = fake_broker(_serve_until_close)
    conn, ch = _connect(broker, pure)
    calls = _spy_on_writev(monkeypatch)   # (after the writer was made)
    sent = conn.bytes_sent
    for body in bodies:
        ch.basic_publish(amqp.Message(body, priority=1), '', 'q')
    # frames counted: method, header and 1, 9 and 3 body frames
    assert conn.bytes_sent - sent == 3 * 2 + 1 + 9 + 3
    conn.close()
    broker.finish()
    frames, rest = _frames(bytes(broker.received))
    assert rest == b''
    bodies_seen = []
    for frame_type, payload in frames:
        if frame_type == 2:
            bodies_seen.append(bytearray())
            size = struct.unpack_from('>Q', payload, 4)[0]
        elif frame_type == 3:
            assert len(payload) <= 131072 - 8
            bodies_seen[-1] += payload
    assert bodies_seen == bodies and size == len(bodies[-1])
    assert len(calls) == (len(bodies) if pure else 0)


def _frames(data):
    """(type, payload) of each whole frame in ``data`` after the
    protocol header; the rest."""
    assert data[:4] == b'AMQP'
    frames, pos = [], 8
    while len(data) >= pos + 7:
        frame_type, _, size = struct.unpack_from('>BHI', data, pos)
        if len(data) < pos + size + 8:
            break
        assert data[pos + 7 + size] == 0xCE
        frames.append((frame_type, data[pos + 7:pos + 7 + size]))
        pos += size + 8
    return frames, data[pos:]


_OWN = [
    ((amqp.Message(b'x'), '', 'q'), {}),
    ((amqp.Message(b'x', content_type='t/p', headers={'a': [1, 2]}),),
     {'routing_key': 'q'}),
    ((amqp.Message(b'x'),), {'exchange': 'ex', 'routing_key': 'rk',
                             'mandatory': True, 'immediate': False,
                             'timeout': None, 'confirm_timeout': None}),
    ((amqp.Message(b''), 'ex', 'q', False, True, None, None), {}),
    ((amqp.Message(b'L' * 40000), '', 'q'), {}),    # the writer's general
]
_PURE = [
    ((amqp.Message('str'), '', 'q'), {}),
    ((amqp.Message(b'x'), '', 'q'), {'timeout': 1}),
    ((amqp.Message(b'x'), '', 'q', 0), {}),
    ((amqp.Message(b'x'), '', 'q'), {'argsig': 'Bssbb'}),
    ((_Sub(b'x'), '', 'q'), {}),
]


@compiled
def test_the_common_calls_are_the_twins_own(fake_broker):
    """kombu's and py-amqp's usual calls never reach the pure method; any
    other call reaches it with its arguments as given."""
    broker = fake_broker(_serve_until_close)
    conn = broker.connect()
    ch = conn.channel()
    seen = []

    def pure(*args, **kwargs):
        seen.append((args, kwargs))

    twin = speedups.Publish(pure, ch, ch.channel_id, ch._confirms,
                            publishing._encode_publish, amqp.Message,
                            speedups.FrameWriter, amqp.spec.Basic.Publish)
    for args, kwargs in _OWN:
        assert twin(*args, **kwargs) is None
    assert seen == []
    for args, kwargs in _PURE:
        twin(*args, **kwargs)
    assert seen == _PURE
    sent = conn.bytes_sent
    ch.is_open = False          # (as a closed channel is)
    twin(*_OWN[0][0])
    assert seen[-1] == _OWN[0] and conn.bytes_sent == sent
    conn.close()
    broker.finish()


@compiled
def test_the_twin_shows_the_pure_methods_parameters(fake_broker):
    """In a REPL, inspect.signature() of a channel's basic_publish shows
    its parameters through the twin's ``__wrapped__``, as the bound method
    the pure path uses does."""
    import inspect
    broker = fake_broker(_serve_until_close)
    conn, ch = _connect(broker, pure=False)
    assert ch.basic_publish.__wrapped__ == ch._basic_publish
    params = list(inspect.signature(ch.basic_publish).parameters)
    assert params[:5] == ['msg', 'exchange', 'routing_key', 'mandatory',
                          'immediate']
    assert params == list(inspect.signature(ch._basic_publish).parameters)
    conn.close()
    broker.finish()


@compiled
def test_channels_that_must_not_use_the_twin_do_not(fake_broker):
    def script(peer):
        peer.handshake(heartbeat=0)
        peer.serve_channel_open()
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(confirm_publish=True)
    ch = conn.channel()
    # with confirm_publish every publish waits for its confirm
    assert ch.basic_publish == ch.basic_publish_confirm
    conn.close()
    broker.finish()

    class Overriding(amqp.Channel):
        def _basic_publish(self, *args, **kwargs):
            return 'own'

    broker = fake_broker(script)
    conn = broker.connect()
    ch = Overriding(conn)
    ch.open()
    assert ch.basic_publish(amqp.Message(b'x')) == 'own'
    conn.close()
    broker.finish()


_ENVELOPE = struct.Struct('>BHI')


def _contents(wire, start):
    """(routing key, body) of each basic.publish in ``wire`` from
    ``start`` on, checking that each one's method, header and body frames
    are adjacent (nothing written between them)."""
    out, pos, n = [], start, len(wire)
    while pos < n:
        kind, channel, size = _ENVELOPE.unpack_from(wire, pos)
        payload = wire[pos + 7:pos + 7 + size]
        assert wire[pos + 7 + size] == 0xCE
        pos += 8 + size
        if kind != 1 or payload[:4] != b'\x00\x3c\x00\x28':
            continue            # close, heartbeats: not publishes
        klen = payload[6]
        rlen = payload[7 + klen]
        rkey = payload[8 + klen:8 + klen + rlen].decode()
        kind, _, size = _ENVELOPE.unpack_from(wire, pos)
        assert kind == 2, 'a publish without its header next'
        body_size = struct.unpack_from('>Q', wire, pos + 7 + 4)[0]
        pos += 8 + size
        body = b''
        while len(body) < body_size:
            kind, _, size = _ENVELOPE.unpack_from(wire, pos)
            assert kind == 3, 'a header without its body next'
            body += wire[pos + 7:pos + 7 + size]
            pos += 8 + size
        out.append((rkey, body))
    return out


@pytest.mark.parametrize('pure', [False, True], ids=['compiled', 'pure'])
def test_threads_publishing_through_a_full_send_buffer_keep_frames_whole(
        fake_broker, pure):
    threads_n, per_thread = 3, 300
    opened = threading.Event()

    def script(peer):
        peer.handshake(heartbeat=0)
        peer.serve_channel_open()
        opened.set()
        # (what the peer read past channel.open is publishes already)
        peer.mark = len(peer.received) - len(peer._buf)
        # a slow reader: the client's sends fill its buffer and come back
        # short or would block, again and again
        while True:
            frame = peer.recv_frame()
            if isinstance(getattr(frame, 'method', None), Connection.Close):
                peer.send(CLOSE_OK)
                return
            time.sleep(0.0002)

    broker = fake_broker(script)
    conn, ch = _connect(broker, pure)
    twin = getattr(speedups, 'Publish', None)
    assert (type(ch.basic_publish) is twin) is (twin is not None and not pure)
    opened.wait(5)
    errors = []

    def publisher(k):
        try:
            for i in range(per_thread):
                size = (i * 7919 + k * 104729) % 30000
                body = (b'%d:%d:' % (k, i)).ljust(max(size, 16), b'.')
                ch.basic_publish(amqp.Message(body), '', 't%d' % k)
        except BaseException as exc:    # reported below
            errors.append(exc)

    workers = [threading.Thread(target=publisher, args=(k,))
               for k in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert not errors
    conn.close()
    peer = broker.finish()
    got = _contents(bytes(peer.received), peer.mark)
    assert len(got) == threads_n * per_thread
    for k in range(threads_n):
        bodies = [body for rkey, body in got if rkey == 't%d' % k]
        assert [b.split(b':')[1] for b in bodies] == \
            [b'%d' % i for i in range(per_thread)]
        assert all(b.startswith(b'%d:' % k) for b in bodies)


def _publish_to_a_vanishing_peer(fake_broker, monkeypatch, pure):
    """A peer that reads part of a 16 MiB publish, then resets the
    connection: what the publish raises and the state it leaves."""
    import socket as socket_module

    def script(peer):
        peer.handshake(heartbeat=0)
        peer.serve_channel_open()
        peer.recv_exactly(1 << 20)        # part of the body, then a reset
        peer.sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_LINGER,
                             struct.pack('ii', 1, 0))
        peer.sock.close()

    broker = fake_broker(script)
    conn, ch = _connect(broker, pure)
    sent = conn.bytes_sent
    with monkeypatch.context() as patched:
        calls = _spy_on_writev(patched)
        try:
            ch.basic_publish(amqp.Message(b'v' * (16 << 20)), '', 'q')
        except Exception as exc:
            raised = exc
        else:
            raised = None
    assert len(calls) == (1 if pure else 0)   # (the twin sent it itself)
    broken = (conn.transport.broken or '').replace(broker.host, 'HOST')
    state = (conn.connected, broken, conn.bytes_sent - sent)
    try:
        ch.basic_publish(amqp.Message(b'after'), '', 'q')
    except Exception as exc:
        after = type(exc)
    else:
        after = None
    conn.collect()
    broker.finish()
    return raised, state, after


@compiled
def test_a_peer_vanishing_mid_body_fails_the_twin_as_the_pure_writer(
        fake_broker, monkeypatch):
    """A reset while a large body is being sent: the compiled writer's
    scatter-gather send raises the socket's error, marks the connection
    lost and refuses the next publish, as the pure writer does."""
    raised, state, after = _publish_to_a_vanishing_peer(
        fake_broker, monkeypatch, False)
    pure_raised, pure_state, pure_after = _publish_to_a_vanishing_peer(
        fake_broker, monkeypatch, True)
    assert isinstance(raised, OSError)
    assert type(raised) is type(pure_raised)
    assert state == pure_state
    assert state[:2] == (False, 'connection to HOST was lost')
    assert after is pure_after and after is not None


@pytest.mark.parametrize('pure', [False, True])
def test_closing_the_connection_ends_a_blocked_large_publish(
        fake_broker, monkeypatch, pure):
    """A 64 MiB publish blocked on a peer that reads nothing, and
    another thread closing the connection (kombu's collect() on an
    error): the publish ends at once with the socket's error instead of
    waiting for the peer, and nothing more is written."""
    go_on = threading.Event()

    def script(peer):
        peer.handshake(heartbeat=0)
        peer.serve_channel_open()
        go_on.wait(10)

    broker = fake_broker(script)
    conn, ch = _connect(broker, pure)
    calls = _spy_on_writev(monkeypatch)
    outcome = []

    def publish():
        try:
            ch.basic_publish(amqp.Message(b'c' * (64 << 20)), '', 'q')
        except Exception as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=publish)
    thread.start()
    time.sleep(0.3)                     # blocked: the buffers are full
    assert not outcome
    started = time.monotonic()
    conn.collect()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert isinstance(outcome[0], OSError), outcome
    assert not conn.connected
    assert len(calls) == (1 if pure or speedups is None else 0)
    go_on.set()
    broker.finish()
