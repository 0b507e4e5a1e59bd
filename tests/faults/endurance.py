"""The publisher and consumer that the recovery endurance tests run across
forced failures, each on a recovering connection (``recover=True``).

The publisher publishes again what the broker never confirmed (its
``on_confirm`` says ``'lost'`` or ``'nack'``): at-least-once, as
docs/guide_recovery.rst describes."""
import socket
import threading
import time
from time import monotonic

import amqp
from amqp import Message


class Publisher(threading.Thread):
    """Publishes numbered persistent messages in batches of 25 with
    confirms; publishes again whatever was lost or nacked."""

    def __init__(self, host, queue, **kwargs):
        super().__init__(daemon=True, name='publisher')
        self.conn = amqp.Connection(host, recover=True, heartbeat=1,
                                    write_timeout=3, connect_timeout=5,
                                    **kwargs)
        self.conn.connect()
        self.queue = queue
        self.confirmed = set()
        self.again = []
        self.stop = threading.Event()
        self.errors = []
        self.lock = threading.Lock()
        self.next_id = 0

    def run(self):
        ch = self.conn.channel()
        ch.confirm_select()
        pending = {}
        try:
            while not self.stop.is_set():
                with self.lock:
                    ids, self.again = self.again, []
                while len(ids) < 25:
                    ids.append(self.next_id)
                    self.next_id += 1
                for i in ids:
                    try:
                        tag = ch.basic_publish(
                            Message(b'%d' % i, delivery_mode=2),
                            routing_key=self.queue,
                            on_confirm=self._settled(pending))
                    except (OSError, amqp.RecoverableConnectionError):
                        with self.lock:   # not sent: again, later
                            self.again.append(i)
                        continue
                    pending[tag] = i
                try:
                    ch.wait_for_confirms(timeout=10)
                except (OSError, amqp.AMQPError):
                    pass   # settled through on_confirm, now or later
                time.sleep(0.005)
        except Exception as exc:   # reported by the test
            self.errors.append(exc)

    def _settled(self, pending):
        def on_confirm(tag, outcome):
            i = pending.pop(tag)
            with self.lock:
                if outcome == 'ack':
                    self.confirmed.add(i)
                else:
                    self.again.append(i)
        return on_confirm


class Consumer(threading.Thread):
    """Consumes with manual acks (prefetch 50), counting deliveries per
    message id; declares the durable queue (with ``arguments``)."""

    def __init__(self, host, queue, arguments=None, **kwargs):
        super().__init__(daemon=True, name='consumer')
        self.conn = amqp.Connection(host, recover=True, heartbeat=1,
                                    connect_timeout=5, **kwargs)
        self.conn.connect()
        self.queue = queue
        self.seen = {}            # id -> times delivered
        self.last = 0.0           # monotonic() of the last delivery
        self.stop = threading.Event()
        self.errors = []
        ch = self.conn.channel()
        ch.basic_qos(0, 50, False)
        ch.queue_declare(queue, durable=True, auto_delete=False,
                         arguments=arguments)
        ch.basic_consume(queue, callback=self._on_message)

    def _on_message(self, message):
        i = int(message.body)
        self.seen[i] = self.seen.get(i, 0) + 1
        self.last = monotonic()
        message.ack()

    def run(self):
        try:
            while not self.stop.is_set():
                try:
                    self.conn.drain_events(timeout=0.2)
                except socket.timeout:
                    pass
        except Exception as exc:   # reported by the test
            self.errors.append(exc)

    def deliveries(self):
        return sum(self.seen.values())


def wait(predicate, timeout, what):
    deadline = monotonic() + timeout
    while not predicate():
        assert monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.02)


def finish(publisher, consumer):
    """Stop the publisher, give the consumer up to 30 s to receive every
    confirmed message, stop it; return (confirmed ids, missing ids,
    duplicate deliveries)."""
    publisher.stop.set()
    publisher.join(30)
    with publisher.lock:
        confirmed = set(publisher.confirmed)
    try:
        wait(lambda: confirmed <= set(consumer.seen), 30,
             'every confirmed message')
    except AssertionError:
        pass   # reported as missing
    finally:
        consumer.stop.set()
        consumer.join(30)
    assert not publisher.errors and not consumer.errors, (
        publisher.errors, consumer.errors)
    missing = confirmed - set(consumer.seen)
    duplicates = consumer.deliveries() - len(consumer.seen)
    return confirmed, missing, duplicates
