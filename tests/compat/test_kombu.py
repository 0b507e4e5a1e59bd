"""kombu 5.7 on this package against a real RabbitMQ (pyamqp:// URLs)."""
import socket
import time

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.pools import connections, producers

import amqp
from ours import is_ours
from testkit import drain_until


@pytest.fixture
def kconn(pyamqp_url):
    with Connection(pyamqp_url) as conn:
        yield conn


def test_transport_is_ours(kconn):
    kconn.connect()
    assert isinstance(kconn.connection, amqp.Connection)
    assert kconn.transport.driver_version() == amqp.__version__
    assert kconn.transport.driver_type == 'amqp'
    assert kconn.connected


def test_producer_consumer_round_trip(kconn, prefix):
    exchange = Exchange(prefix, 'direct', auto_delete=True)
    queue = Queue(prefix, exchange, 'key', auto_delete=True)
    got = []
    with Consumer(kconn, [queue], accept=['json', 'pickle'],
                  callbacks=[lambda b, m: (got.append((b, m.headers)),
                                           m.ack())]):
        producer = Producer(kconn)
        for n in range(50):
            producer.publish({'n': n}, exchange=exchange, routing_key='key',
                             headers={'i': n})
        drain_until(kconn, lambda: len(got) == 50, timeout=10)
    assert got == [({'n': n}, {'i': n}) for n in range(50)]


@pytest.mark.parametrize('kind,key,binding,expect', [
    ('direct', 'a', {'routing_key': 'a'}, True),
    ('direct', 'b', {'routing_key': 'a'}, False),
    ('fanout', 'whatever', {}, True),
    ('topic', 'x.y.z', {'routing_key': 'x.#'}, True),
    ('topic', 'y.x', {'routing_key': 'x.*'}, False),
    ('headers', '', {'binding_arguments': {'x-match': 'any', 'k': 'v'}},
     True),
    ('headers', '', {'binding_arguments': {'x-match': 'all', 'k': 'w'}},
     False),
])
def test_exchange_types(kconn, prefix, kind, key, binding, expect):
    exchange = Exchange(prefix, kind, auto_delete=True)
    queue = Queue(prefix, exchange, auto_delete=True, **binding)
    channel = kconn.default_channel
    queue(channel).declare()
    Producer(channel).publish('hello', exchange=exchange, routing_key=key,
                              headers={'k': 'v'})
    time.sleep(0.1)
    message = queue(channel).get(no_ack=True)
    assert (message is not None) is expect
    if expect:
        assert message.payload == 'hello'
    queue(channel).delete()


def test_default_channel_usable_after_channel_error(kconn, prefix):
    # "Does this queue exist?" with a passive declare is a common kombu
    # idiom; the 404 closes the default channel on the broker, and kombu
    # keeps using that channel object afterwards (py-amqp revives it).
    with pytest.raises(kconn.channel_errors):
        Queue(prefix + '-missing', channel=kconn.default_channel) \
            .queue_declare(passive=True)
    with kconn.SimpleQueue(prefix + '-after') as sq:
        sq.put({'n': 1})
        assert sq.get(timeout=5).payload == {'n': 1}


def test_simple_queue_and_buffer(kconn, prefix):
    queue = kconn.SimpleQueue(prefix)
    queue.put({'x': 1})
    message = queue.get(timeout=5)
    assert message.payload == {'x': 1}
    message.ack()
    with pytest.raises(queue.Empty):
        queue.get(timeout=0.2)
    assert queue.qsize() == 0
    queue.close()
    queue.queue(kconn.default_channel).delete()
    buffer = kconn.SimpleBuffer(prefix + '-buf')
    buffer.put('b')
    assert buffer.get(timeout=5).payload == 'b'
    buffer.close()


def test_failover_skips_dead_first_host(broker, prefix):
    url = (f'pyamqp://guest:guest@127.0.0.1:1//;'
           f'pyamqp://guest:guest@{broker.host}:{broker.port}//')
    with Connection(url, failover_strategy='round-robin',
                    connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=3, interval_start=0,
                               interval_step=0)
        assert conn.connected
        assert conn.port == broker.port
        queue = conn.SimpleQueue(prefix)
        queue.put('via failover')
        assert queue.get(timeout=5).payload == 'via failover'
        queue.close()
        queue.queue(conn.default_channel).delete()


def test_confirm_publish_transport_option(broker, prefix):
    url = f'pyamqp://guest:guest@{broker.host}:{broker.port}//'
    with Connection(url, transport_options={'confirm_publish': True}) as conn:
        channel = conn.channel()
        assert conn.connection.confirm_publish
        queue = Queue(prefix, auto_delete=True, max_length=1,
                      queue_arguments={'x-overflow': 'reject-publish'})
        producer = Producer(channel)
        producer.publish('one', routing_key=prefix, declare=[queue])
        assert queue(channel).queue_declare(passive=True).message_count == 1
        with pytest.raises(amqp.exceptions.MessageNacked):
            producer.publish('two', routing_key=prefix)
        channel.close()


def test_heartbeat_check(broker):
    url = f'pyamqp://guest:guest@{broker.host}:{broker.port}//'
    with Connection(url, heartbeat=2) as conn:
        conn.connect()
        assert conn.get_heartbeat_interval() == 2
        assert conn.supports_heartbeats
        deadline = time.monotonic() + 5     # > 2 x heartbeat
        while time.monotonic() < deadline:
            conn.heartbeat_check(rate=2)
            try:
                conn.drain_events(timeout=0.5)
            except socket.timeout:
                pass
        assert conn.connected
        conn.default_channel.queue_declare('', exclusive=True)


def test_drain_events_timeouts(kconn):
    kconn.default_channel
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        kconn.drain_events(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.5
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        kconn.drain_events(timeout=0)
    assert time.monotonic() - started < 0.1


def test_connection_and_producer_pools(pyamqp_url, prefix):
    conn = Connection(pyamqp_url)
    queue = Queue(prefix, auto_delete=False)
    for n in range(10):
        with producers[conn].acquire(block=True, timeout=5) as producer:
            producer.publish(n, routing_key=prefix, declare=[queue])
    with connections[conn].acquire(block=True, timeout=5) as pooled:
        simple = pooled.SimpleQueue(queue)
        got = sorted(simple.get(timeout=5).payload for _ in range(10))
        assert got == list(range(10))
        simple.close()
        queue(pooled.default_channel).delete()
    pool = conn.Pool(limit=2)
    first, second = pool.acquire(), pool.acquire()
    with pytest.raises(Exception):
        pool.acquire(block=True, timeout=0.1)
    first.release()
    second.release()
    pool.force_close_all()


def test_requeue_and_reject(kconn, prefix):
    queue = Queue(prefix, auto_delete=False)
    producer = Producer(kconn.default_channel)
    producer.publish('keep', routing_key=prefix, declare=[queue])
    producer.publish('drop', routing_key=prefix)
    seen = []

    def handle(body, message):
        seen.append((body, message.delivery_info['redelivered']))
        if body == 'keep' and not message.delivery_info['redelivered']:
            message.requeue()
        elif body == 'drop':
            message.reject()
        else:
            message.ack()

    with Consumer(kconn, [queue], callbacks=[handle]):
        drain_until(kconn, lambda: len(seen) == 3, timeout=10)
    assert sorted(seen) == [('drop', False), ('keep', False), ('keep', True)]
    bound = queue(kconn.default_channel)
    assert _wait_count(bound, 0) == 0
    bound.delete()


def test_priority_queue(kconn, prefix):
    queue = Queue(prefix, auto_delete=False, max_priority=10)
    producer = Producer(kconn.default_channel)
    for priority in (1, 9, 5):
        producer.publish(priority, routing_key=prefix, priority=priority,
                         declare=[queue])
    bound = queue(kconn.default_channel)
    assert _wait_count(bound, 3) == 3
    order = [bound.get(no_ack=True).payload for _ in range(3)]
    assert order == [9, 5, 1]
    bound.delete()


def test_consumer_qos_and_recover(kconn, prefix):
    # celery's consumer: Consumer.qos -> basic_qos(size, count, a_global);
    # Consumer.recover -> basic_recover(requeue=True).
    queue = Queue(prefix, auto_delete=False)
    Producer(kconn.default_channel).publish('again', routing_key=prefix,
                                            declare=[queue])
    seen = []
    consumer = Consumer(kconn, [queue],
                        callbacks=[lambda b, m: seen.append(m)])
    with consumer:
        consumer.qos(prefetch_count=1)
        drain_until(kconn, lambda: len(seen) == 1, timeout=10)
        assert not seen[0].delivery_info['redelivered']
        consumer.recover(requeue=True)
        drain_until(kconn, lambda: len(seen) == 2, timeout=10)
        assert seen[1].delivery_info['redelivered']
        seen[1].ack()
    queue(kconn.default_channel).delete()


def _count(bound):
    return bound.queue_declare(passive=True).message_count


def _wait_count(bound, expected, timeout=1.0):
    # queue.declare's message_count lags a publish by a few ms (the same
    # on py-amqp): poll instead of reading it once.
    deadline = time.monotonic() + timeout
    while _count(bound) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return _count(bound)


@pytest.mark.parametrize('queue_opts,publish_opts', [
    ({'message_ttl': 0.3}, {}),
    ({}, {'expiration': 0.3}),
], ids=['queue-ttl', 'message-expiration'])
def test_ttl(kconn, prefix, queue_opts, publish_opts):
    queue = Queue(prefix, auto_delete=False, **queue_opts)
    producer = Producer(kconn.default_channel)
    bound = queue(kconn.default_channel)
    producer.publish('fresh', routing_key=prefix, declare=[queue],
                     **publish_opts)
    message = bound.get(no_ack=False)
    assert message.payload == 'fresh'
    message.requeue()
    time.sleep(0.8)
    assert bound.get(no_ack=True) is None
    bound.delete()


def test_ensure_survives_close_all_connections(broker, pyamqp_url, prefix):
    # With confirms the publish after the kill reads the broker's
    # connection.close and raises ConnectionForced (recoverable), so
    # ensure() reconnects and publishes again.  Without confirms the
    # write into the dead socket "succeeds" on py-amqp and here alike.
    with Connection(pyamqp_url,
                    transport_options={'confirm_publish': True}) as conn:
        queue = Queue(prefix, auto_delete=False)
        producer = Producer(conn)
        publish = conn.ensure(producer, producer.publish, max_retries=5,
                              interval_start=0.1, interval_step=0.1)
        publish('before', routing_key=prefix, declare=[queue])
        broker.ctl('close_all_connections', 'compat test')
        time.sleep(0.5)
        publish('after', routing_key=prefix, declare=[queue])
        simple = conn.SimpleQueue(queue)
        got = sorted(simple.get(timeout=5).payload for _ in range(2))
        assert got == ['after', 'before']
        simple.close()
        queue(conn.default_channel).delete()


def test_autoretry_survives_close_all_connections(broker, pyamqp_url,
                                                  prefix):
    with Connection(pyamqp_url) as conn:
        channel = conn.default_channel
        queue = Queue(prefix, auto_delete=False)
        queue(channel).declare()

        def count(channel=None):
            return queue(channel).queue_declare(passive=True).message_count

        retrying = conn.autoretry(count, channel=channel, max_retries=5,
                                  interval_start=0.1)
        assert retrying()[0] == 0
        broker.ctl('close_all_connections', 'compat test')
        time.sleep(0.5)
        assert retrying()[0] == 0
        queue(conn.default_channel).delete()


def test_consumer_survives_connection_kill_with_ensure(broker, pyamqp_url,
                                                       prefix):
    # what celery's consumer does: on a connection error, reconnect and
    # consume again
    with Connection(pyamqp_url) as conn:
        queue = Queue(prefix, auto_delete=False)
        got = []
        consumer = Consumer(conn, [queue], callbacks=[
            lambda b, m: (got.append(b), m.ack())])
        consumer.consume()
        Producer(conn).publish(1, routing_key=prefix, declare=[queue])
        drain_until(conn, lambda: got == [1], timeout=10)
        broker.ctl('close_all_connections', 'compat test')
        with pytest.raises(conn.connection_errors):
            for _ in range(50):
                try:
                    conn.drain_events(timeout=0.2)
                except socket.timeout:
                    pass
        conn.ensure_connection(max_retries=5, interval_start=0.1)
        consumer.revive(conn.channel())
        consumer.consume()
        Producer(conn).publish(2, routing_key=prefix)
        drain_until(conn, lambda: got == [1, 2], timeout=10)
        queue(conn.default_channel).delete()


# -- same results on py-amqp ----------------------------------------------

@pytest.mark.parametrize('scenario', ['kombu_core', 'kombu_simple',
                                      'kombu_confirm_ensure',
                                      'kombu_ensure_unroutable'])
def test_same_results_as_pyamqp(broker, reference_python, run_scenario,
                                scenario):
    ours = run_scenario(scenario, broker.url, ours=True)
    theirs = run_scenario(scenario, broker.url, python=reference_python,
                          ours=False)
    assert is_ours(ours['amqp_file'])
    assert not is_ours(theirs['amqp_file'])
    assert theirs['amqp_version'] == '5.4.2'
    assert ours['result'] == theirs['result']


def test_ensure_gives_up_at_once_on_unroutable_mandatory(pyamqp_url,
                                                         prefix):
    # NO_ROUTE is not recoverable: republishing cannot route the message,
    # so ensure() must neither retry nor call errback (py-amqp behaviour).
    retried = []
    with Connection(pyamqp_url,
                    transport_options={'confirm_publish': True}) as conn:
        producer = Producer(conn)
        publish = conn.ensure(
            producer, producer.publish, max_retries=3, interval_start=0,
            interval_step=0,
            errback=lambda exc, interval: retried.append(exc))
        with pytest.raises(amqp.exceptions.NoRoute) as info:
            publish('lost', routing_key=prefix + '-nowhere', mandatory=True)
        assert not isinstance(info.value, conn.recoverable_channel_errors)
        assert isinstance(info.value, conn.channel_errors)
    assert info.value.reply_code == 312
    assert retried == []
