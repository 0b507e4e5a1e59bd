"""Consumers over TLS: kombu ``Connection('amqps://...')`` with a
``Consumer`` and ``drain_events(timeout=...)``, and py-amqp-style
``basic_consume`` + ``drain_events()``, against the TLS node of
``tests/tlsbroker.py``.

Messages already queued when the consumer starts may come in the same
TLS record as ``basic.consume-ok``: the reply wait decrypts them with the
reply and leaves them buffered (``frames_pending()``), where polling the
socket does not see them.  RabbitMQ does that usually, but not always (its
writer's timing), so the tests about that case connect through the TLS
front of ``tests/recordproxy.py``, which always does it.  They check that
every ``drain_events`` call still returns exactly when a delivery was
handled: none times out while a delivery is buffered or on its way, none
returns without handling one.
"""
import socket
import threading
import time
import uuid

import pytest
from kombu import Connection, Consumer, Producer, Queue
from tlsbroker import client_ssl_options

import amqp

pytestmark = pytest.mark.tls

MESSAGES = 40
CALL_TIMEOUT = 5     # a drain_events that needs this long has stalled


@pytest.fixture
def amqps_url(tls_broker):
    return 'amqps://guest:guest@localhost:%d//' % tls_broker.tls_port


@pytest.fixture
def coalesced_url(tls_coalescing):
    """The TLS front that puts consume-ok and deliveries in one record."""
    return 'amqps://guest:guest@localhost:%d//' % tls_coalescing.port


@pytest.fixture
def queue_name():
    return 'compat-tls-' + uuid.uuid4().hex[:10]


def _drain_counting(conn, handled, until):
    """Call ``conn.drain_events(timeout=CALL_TIMEOUT)`` until ``until``
    messages were handled; return one record per call: (frames pending
    before it, messages it handled, seconds it took, timed out)."""
    amqp_conn = conn.connection
    calls = []
    while len(handled) < until and len(calls) < 2 * until:
        pending, before = amqp_conn.frames_pending(), len(handled)
        started = time.monotonic()
        try:
            conn.drain_events(timeout=CALL_TIMEOUT)
            timed_out = False
        except socket.timeout:
            timed_out = True
        calls.append((pending, len(handled) - before,
                      time.monotonic() - started, timed_out))
    return calls


@pytest.mark.parametrize('prefetch', [None, 1, 10])
def test_kombu_drain_events_returns_exactly_when_a_delivery_was_handled(
        coalesced_url, tls_broker, queue_name, prefetch):
    certs = tls_broker.certs
    with Connection(coalesced_url, ssl=client_ssl_options(certs)) as conn:
        channel = conn.channel()
        queue = Queue(queue_name, auto_delete=True)
        producer = Producer(channel)
        producer.publish({'n': -1}, routing_key=queue_name,
                         declare=[queue])
        for n in range(MESSAGES - 1):
            producer.publish({'n': n}, routing_key=queue_name)
        handled = []

        def on_message(body, message):
            handled.append(body['n'])
            message.ack()

        consumer = Consumer(channel, [queue], callbacks=[on_message],
                            prefetch_count=prefetch)
        consumer.consume()
        # deliveries came in consume-ok's record: consume() decrypted and
        # buffered them but handled none (as on py-amqp)
        assert conn.connection.frames_pending()
        assert handled == []

        calls = _drain_counting(conn, handled, MESSAGES)
        assert sorted(handled) == list(range(-1, MESSAGES - 1))
        assert [c for c in calls if c[3]] == [], 'a call timed out'
        assert [c for c in calls if c[1] < 1] == [], \
            'a call returned without handling a delivery'
        # a call with frames buffered does not wait for the socket
        assert [c for c in calls if c[0] and c[2] > 0.5] == []
        # the first call served the buffer
        assert calls[0][0]

        # nothing left: the next call times out, having handled nothing
        assert not conn.connection.frames_pending()
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0.3)
        assert len(handled) == MESSAGES
        consumer.cancel()


def test_kombu_consumer_started_on_an_empty_queue_gets_later_messages(
        amqps_url, tls_broker, queue_name):
    certs = tls_broker.certs
    with Connection(amqps_url, ssl=client_ssl_options(certs)) as conn, \
            Connection(amqps_url, ssl=client_ssl_options(certs)) as sender:
        queue = Queue(queue_name, auto_delete=True)
        handled = []
        with Consumer(conn, [queue], callbacks=[
                lambda body, message: (handled.append(body),
                                       message.ack())]):
            with pytest.raises(socket.timeout):
                conn.drain_events(timeout=0.2)
            producer = Producer(sender)
            for n in range(5):
                producer.publish(n, routing_key=queue_name)
            calls = _drain_counting(conn, handled, 5)
            assert handled == [0, 1, 2, 3, 4]
            assert all(not c[3] and c[1] >= 1 for c in calls), calls


def _watchdog(conn, seconds):
    """Shut the socket down if the test is still blocked after
    ``seconds``, so a blocking drain_events fails instead of hanging."""
    fired = threading.Event()

    def fire():
        fired.set()
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer, fired


def test_basic_consume_then_drain_events_without_timeout_returns(
        tls_broker, tls_coalescing, queue_name):
    # py-amqp style: deliveries decrypted with consume-ok are served by the
    # next drain_events() instead of it blocking on a quiet socket.
    conn = amqp.Connection('localhost:%d' % tls_coalescing.port,
                           ssl=client_ssl_options(tls_broker.certs),
                           connect_timeout=10)
    conn.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(queue_name, auto_delete=True)
        for n in range(10):
            ch.basic_publish(amqp.Message(b'%d' % n), routing_key=queue_name)
        got = []
        ch.basic_consume(queue_name, callback=got.append, no_ack=True)
        assert got == []
        assert conn.frames_pending()
        timer, fired = _watchdog(conn, 10)
        try:
            while len(got) < 10 and not fired.is_set():
                conn.drain_events()
        finally:
            timer.cancel()
        assert not fired.is_set(), 'drain_events() blocked with %d of 10' \
            % len(got)
        assert [m.body for m in got] == [b'%d' % n for n in range(10)]
    finally:
        conn.close()



def test_kombu_event_loop_gets_every_queued_message_after_one_drain(
        coalesced_url, tls_broker, queue_name):
    # kombu's hub (a celery worker's loop) calls drain_events only when
    # the socket polls readable.  Deliveries decrypted with consume-ok are
    # not readable there; celery drains once after consume() for them, and
    # that one drain_events must serve all of them, not just the first.
    from kombu.asynchronous import Hub

    certs = tls_broker.certs
    with Connection(coalesced_url, ssl=client_ssl_options(certs)) as conn:
        queue = Queue(queue_name, auto_delete=True)
        producer = Producer(conn)
        producer.publish(0, routing_key=queue_name, declare=[queue])
        for n in range(1, 10):
            producer.publish(n, routing_key=queue_name)
        handled = []
        hub = Hub()
        try:
            conn.register_with_event_loop(hub)
            consumer = Consumer(conn, [queue], callbacks=[
                lambda body, message: (handled.append(body),
                                       message.ack())])
            consumer.consume()
            assert conn.connection.frames_pending()
            conn.drain_events(timeout=0.1)      # celery's _quick_drain
            loop = hub.create_loop()
            started = time.monotonic()
            while len(handled) < 10 and time.monotonic() - started < 3:
                next(loop)
            assert handled == list(range(10))
            assert time.monotonic() - started < 1
            consumer.cancel()
        finally:
            hub.close()
