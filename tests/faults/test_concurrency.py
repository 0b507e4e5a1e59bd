"""Threads sharing one connection as docs/design.rst ("Threads") says
they may: several threads each publishing multi-frame bodies on its own
channel, one thread draining (consuming and acking what they publish,
with short and zero timeouts), and the heartbeat thread (beating every
0.5 s between the publishes), all at once.
Every body is checked byte for byte."""
import hashlib
import socket
import threading
from time import monotonic

from amqp import Message

PUBLISHERS = 4
PER_THREAD = 30
PAUSE = 0.07           # between publishes: the run spans ~4 heartbeats
BODY_SIZE = 300 * 1000     # three body frames at frame_max 131072


def _body(thread, i):
    seed = hashlib.sha256(b'%d/%d' % (thread, i)).digest()
    return (seed * (BODY_SIZE // len(seed) + 1))[:BODY_SIZE - i] + \
        b'%d/%d' % (thread, i)


def test_publishers_drainer_and_heartbeat_thread_share_a_connection(broker):
    conn = broker.connect(frame_max=131072, heartbeat=1,
                          heartbeat_thread=True)
    assert conn.frame_max == 131072 and conn.heartbeat == 1
    consumer = conn.channel()
    queue = consumer.queue_declare('', exclusive=True).queue
    channels = [conn.channel() for _ in range(PUBLISHERS)]
    received = {}
    errors = []
    stop = threading.Event()

    def on_message(message):
        key = message.headers['key']
        assert key not in received, 'delivered twice: %s' % key
        received[key] = bytes(message.body)
        consumer.basic_ack(message.delivery_tag)

    consumer.basic_consume(queue, callback=on_message)

    def drain():
        turn = 0
        try:
            while not stop.is_set():
                turn += 1
                try:
                    conn.drain_events(timeout=0 if turn % 2 else 0.05)
                except socket.timeout:
                    pass
        except Exception as exc:
            errors.append(('drain', exc))

    def publish(n, channel):
        try:
            for i in range(PER_THREAD):
                channel.basic_publish(
                    Message(_body(n, i), application_headers={
                        'key': '%d/%d' % (n, i)}),
                    routing_key=queue)
                stop.wait(PAUSE)
        except Exception as exc:
            errors.append(('publish %d' % n, exc))

    drainer = threading.Thread(target=drain, daemon=True)
    publishers = [threading.Thread(target=publish, args=(n, ch), daemon=True)
                  for n, ch in enumerate(channels)]
    started = monotonic()
    drainer.start()
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(30)
    expected = PUBLISHERS * PER_THREAD
    while len(received) < expected and not errors and \
            monotonic() - started < 30:
        stop.wait(0.05)
    stop.set()
    drainer.join(5)
    took = monotonic() - started
    assert not errors, errors
    assert not drainer.is_alive()
    assert sorted(received) == sorted(
        '%d/%d' % (n, i) for n in range(PUBLISHERS) for i in range(PER_THREAD))
    for n in range(PUBLISHERS):
        for i in range(PER_THREAD):
            assert received['%d/%d' % (n, i)] == _body(n, i)
    assert took < 30
    # still consistent: a synchronous call on the publishers' channel
    assert channels[0].queue_declare(queue, passive=True).message_count == 0
    conn.close()
    print('measured: concurrency, %d bodies of ~%d bytes in %.2f s'
          % (expected, BODY_SIZE, took))
