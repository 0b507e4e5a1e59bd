"""Every bound honoured in every wait: each blocking call against a peer
that goes silent at that point, under each bound that applies to it
(``read_timeout``, ``reply_timeout``, the call's own timeout,
``write_timeout``, ``connect_timeout``, and a timeout set on the open
socket as celery does).  Each returns within its bound + 0.5 s with the
documented error, and leaves the connection usable or closed with a clear
error (docs/guide_timeouts.rst has the table)."""
import socket
import threading
import time

import pytest
from pika.spec import Basic, Channel, Connection, Queue

from amqp import Message
from amqp import Connection as AMQPConnection
from amqp._confirms import ConfirmTimeout
from amqp.exceptions import (ReadTimeout, RecoverableConnectionError,
                             ReplyTimeout)

from .fakebroker import FakeBroker, tune_frame
from .servers import Server

BOUND = 0.5
SLACK = 0.5
#: a publish's bound holds once the socket buffers are full
WRITE_SLACK = 1.0
SILENT = {}       # call name -> the pika method class the peer ignores


def _silent(method_class):
    def mark(fn):
        SILENT[fn.__name__[len('call_'):]] = method_class
        return fn
    return mark


# -- the calls ---------------------------------------------------------------
# Each takes (connection, channel, bound) and makes the call that waits;
# ``bound`` is None unless the call's own timeout is the one under test.

@_silent(Channel.Open)
def call_channel(conn, ch, bound):
    conn.channel()


@_silent(Queue.Declare)
def call_queue_declare(conn, ch, bound):
    ch.queue_declare('q')


@_silent(Basic.Get)
def call_basic_get(conn, ch, bound):
    ch.basic_get('q')


@_silent(Basic.Consume)
def call_basic_consume(conn, ch, bound):
    ch.basic_consume('q', consumer_tag='c', callback=lambda m: None)


@_silent(Basic.Cancel)
def call_basic_cancel(conn, ch, bound):
    ch.basic_cancel('c')


@_silent(Basic.Qos)
def call_basic_qos(conn, ch, bound):
    ch.basic_qos(0, 10, False)


@_silent(Basic.Ack)
def call_wait_for_confirms(conn, ch, bound):
    ch.confirm_select()
    ch.basic_publish(Message(b'x'), routing_key='q')
    ch.wait_for_confirms(timeout=bound)


@_silent(Basic.Ack)
def call_basic_publish_confirm(conn, ch, bound):
    ch.basic_publish_confirm(Message(b'x'), routing_key='q',
                             confirm_timeout=bound)


@_silent(None)
def call_drain_events(conn, ch, bound):
    conn.drain_events(timeout=bound)


@_silent(Channel.Close)
def call_channel_close(conn, ch, bound):
    ch.close()


@_silent(Connection.Close)
def call_connection_close(conn, ch, bound):
    conn.close()


RPC = ('channel', 'queue_declare', 'basic_get', 'basic_consume',
       'basic_cancel', 'basic_qos')
CONFIRMS = ('wait_for_confirms', 'basic_publish_confirm')
CLOSES = ('channel_close', 'connection_close')

#: (call, bound) -> what it raises (None: returns) and the state after
CASES = {}
for _call in RPC:
    for _bound in ('read_timeout', 'reply_timeout', 'socket_timeout'):
        # (conn.channel(): the channel that timed out is a new one, closed;
        # the others go on)
        CASES[_call, _bound] = (ReplyTimeout, 'usable' if _call == 'channel'
                                else 'channel closed')
for _call in CONFIRMS:
    for _bound in ('read_timeout', 'own', 'socket_timeout'):
        CASES[_call, _bound] = (ConfirmTimeout, 'usable')
for _bound, _exc in (('read_timeout', ReadTimeout), ('own', socket.timeout),
                     ('socket_timeout', ReadTimeout)):
    CASES['drain_events', _bound] = (_exc, 'usable')
for _bound in ('read_timeout', 'connect_timeout', 'socket_timeout'):
    CASES['channel_close', _bound] = (None, 'channel closed')
    CASES['connection_close', _bound] = (None, 'connection closed')


def _connect(srv, bound_name, bound=BOUND):
    kwargs = {'connect_timeout': 5, 'reply_timeout': 30}
    if bound_name == 'read_timeout':
        kwargs['read_timeout'] = bound
    elif bound_name == 'reply_timeout':
        kwargs['reply_timeout'] = bound
    elif bound_name == 'connect_timeout':
        kwargs['connect_timeout'] = bound   # and so the close wait
    return srv.connect(**kwargs)


@pytest.mark.parametrize('call, bound_name', sorted(CASES))
def test_a_silent_peer_is_bounded(call, bound_name):
    _check_bounded(call, bound_name, BOUND)


#: a bound long enough for a TCP receive to block in the kernel
#: (amqp.transport.RECV_QUANTUM): one case of each kind of wait
LONG_CASES = [('basic_get', 'reply_timeout'), ('queue_declare',
                                               'read_timeout'),
              ('basic_publish_confirm', 'own'), ('drain_events', 'own'),
              ('drain_events', 'read_timeout'),
              ('drain_events', 'socket_timeout')]


@pytest.mark.parametrize('call, bound_name', LONG_CASES)
def test_a_bound_longer_than_the_receive_quantum_holds(call, bound_name):
    """Past RECV_QUANTUM a receive blocks in the kernel instead of
    polling first (SO_RCVTIMEO ends it): the bound holds all the same."""
    from amqp.transport import RECV_QUANTUM
    _check_bounded(call, bound_name, RECV_QUANTUM + 0.4)


def _check_bounded(call, bound_name, bound):
    expected, state = CASES[call, bound_name]
    srv = Server()
    try:
        conn = _connect(srv, bound_name, bound)
        ch = conn.channel()
        if call == 'basic_cancel':
            ch.basic_consume('q', consumer_tag='c', callback=lambda m: None)
        silent = SILENT[call]
        if silent is not None:
            srv.on(silent, lambda s, channel, method: None)
        if bound_name == 'socket_timeout':
            # what celery.utils.threads.bound_open_broker_sockets does
            conn.transport.sock.settimeout(bound)
        started = time.monotonic()
        try:
            globals()['call_' + call](conn, ch, bound if bound_name == 'own'
                                      else None)
        except Exception as exc:
            raised = exc
        else:
            raised = None
        took = time.monotonic() - started
        assert bound - 0.05 <= took < bound + SLACK, (call, bound_name,
                                                      took, raised)
        if expected is None:
            assert raised is None, raised
        else:
            assert isinstance(raised, expected), raised
            assert isinstance(raised, socket.timeout)   # as in py-amqp
            assert str(raised)
            if call == 'basic_publish_confirm':
                # names the publish waited for (its tag, formatted only
                # when the wait fails)
                assert 'delivery tag 1' in str(raised), raised
        srv.handlers.pop(silent, None)
        _check_state(conn, ch, state)
    finally:
        if srv.peer is not None:
            try:
                conn.collect()
            except Exception:
                pass
        srv.broker.finish()


def _check_state(conn, ch, state):
    if state == 'connection closed':
        assert not conn.connected
        with pytest.raises(RecoverableConnectionError):
            conn.channel()
        return
    assert conn.connected
    if state == 'channel closed':
        assert ch.connection is None
        with pytest.raises(RecoverableConnectionError):
            ch.queue_declare('q')
    else:
        assert ch.queue_declare('again').queue == 'again'
    # the connection goes on: a new channel works
    assert conn.channel().queue_declare('next').queue == 'next'
    conn.close()


# -- writes --------------------------------------------------------------
@pytest.mark.parametrize('bound_name', ['write_timeout', 'socket_timeout',
                                        'own'])
def test_a_peer_that_stops_reading_bounds_a_publish(bound_name):
    """The peer stops reading; a 64 MB publish fills the socket buffers
    and the write times out at its bound.  The message was cut off mid
    frame, so the connection is unusable from then on, and says so."""
    srv = Server()
    resume = threading.Event()
    srv.on(Queue.Declare, lambda s, ch, m: resume.wait(30))
    try:
        kwargs = {'write_timeout': BOUND} if bound_name == 'write_timeout' \
            else {}
        conn = srv.connect(**kwargs)
        ch = conn.channel()
        ch.queue_declare('stop reading', nowait=True)
        time.sleep(0.2)
        if bound_name == 'socket_timeout':
            conn.transport.sock.settimeout(BOUND)
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            ch.basic_publish(Message(b'x' * (64 << 20)), routing_key='q',
                             timeout=BOUND if bound_name == 'own' else None)
        took = time.monotonic() - started
        # (the bound starts once the buffers are full: filling them with
        # megabytes of the body takes longer on a loaded machine, as in
        # CI, where both passes run at once)
        assert BOUND - 0.05 <= took < BOUND + WRITE_SLACK, took
        with pytest.raises(RecoverableConnectionError,
                           match='cut off'):
            ch.basic_publish(Message(b'next'), routing_key='q')
        conn.collect()
    finally:
        resume.set()
        srv.finish()


# -- connecting ----------------------------------------------------------
@pytest.mark.parametrize('silent_after', ['header', 'start-ok', 'open'])
def test_connect_timeout_bounds_a_handshake_that_goes_silent(silent_after):
    def script(peer):
        peer.expect_header()
        if silent_after != 'header':
            peer.start()
        if silent_after == 'open':
            peer.send(tune_frame(heartbeat=0))
            peer.expect_method(Connection.TuneOk)
            peer.expect_method(Connection.Open)
        peer.wait_closed(timeout=5)

    broker = FakeBroker(script)
    conn = AMQPConnection(broker.host, connect_timeout=BOUND,
                          read_timeout=60)
    started = time.monotonic()
    with pytest.raises(socket.timeout, match='connect_timeout'):
        conn.connect()
    took = time.monotonic() - started
    assert BOUND - 0.05 <= took < BOUND + SLACK, took
    assert not conn.connected
    broker.finish()


def test_read_timeout_counts_silence_not_the_whole_wait():
    """Deliveries keep coming for another channel: the broker is not
    silent, so a reply wait goes on past read_timeout (up to
    reply_timeout), as a py-amqp socket timeout would."""
    srv = Server()
    srv.on(Queue.Declare, lambda s, ch, m: s.later(
        3 * BOUND, s.reply, ch, Queue.DeclareOk(m.queue, 0, 0)))
    try:
        conn = srv.connect(read_timeout=BOUND)
        consumer, other = conn.channel(), conn.channel()
        consumer.basic_consume('q', consumer_tag='c', callback=lambda m: None)
        for i in range(8):
            srv.later(0.2 * (i + 1), srv.deliver, 1, 'c', i + 1, b'tick')
        started = time.monotonic()
        assert other.queue_declare('slow').queue == 'slow'
        assert time.monotonic() - started >= 3 * BOUND - 0.05
        conn.close()
    finally:
        srv.finish()
