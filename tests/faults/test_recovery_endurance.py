"""A publisher with confirms and a consumer with manual acks, each on a
recovering connection (``recover=True``), across 20 forced failures of
each kind: the operator closing all connections, the RabbitMQ application
stopped and started, the link cut, the link stalled past the heartbeat.
Every confirmed message is delivered at least once, none is lost,
duplicates are counted, and the consumer receives again within 2 s of the
broker taking connections again.

The publisher publishes again what the broker never confirmed (its
``on_confirm`` says ``'lost'`` or ``'nack'``): at-least-once, as
docs/guide_recovery.rst describes."""
import socket
import threading
import time
import uuid
from time import monotonic

import pytest

import amqp
from amqp import Message

from .proxy import PASS, STALL

ROUNDS = 20
#: deliveries the consumer must get between two faults
BETWEEN = 20


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
    def __init__(self, host, queue, **kwargs):
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
        ch.queue_declare(queue, durable=True, auto_delete=False)
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


def _wait(predicate, timeout, what):
    deadline = monotonic() + timeout
    while not predicate():
        assert monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize('fault', ['close_all_connections', 'restart',
                                   'cut', 'stall'])
def test_nothing_confirmed_is_lost_across_20_failures(
        fault_node, proxy_to_fault_node, fault):
    proxy = proxy_to_fault_node
    host = proxy.address if fault in ('cut', 'stall') else \
        '%s:%d' % (fault_node.host, fault_node.port)
    queue = 'endurance-%s-%s' % (fault, uuid.uuid4().hex[:6])
    consumer = Consumer(host, queue)
    publisher = Publisher(host, queue)
    consumer.start()
    publisher.start()
    gaps = []
    try:
        for _ in range(ROUNDS):
            before = consumer.deliveries()
            _wait(lambda: consumer.deliveries() >= before + BETWEEN, 30,
                  'deliveries before the fault')
            recovered = consumer.conn.recoveries
            if fault == 'close_all_connections':
                fault_node.ctl('close_all_connections', 'endurance')
            elif fault == 'restart':
                fault_node.ctl('stop_app')
                fault_node.ctl('start_app')
                fault_node.wait_ready()
            elif fault == 'cut':
                proxy.cut()
            else:
                proxy.set(up=STALL, down=STALL)
                _wait(lambda: consumer.conn.recovering() and
                      publisher.conn.recovering(), 15, 'missed heartbeats')
                proxy.set(up=PASS, down=PASS)
            back = monotonic()
            _wait(lambda: consumer.conn.recoveries > recovered and
                  consumer.last > back, 30, 'deliveries after the fault')
            gaps.append(consumer.last - back)
    finally:
        publisher.stop.set()
        publisher.join(30)
        with publisher.lock:
            confirmed = set(publisher.confirmed)
        try:
            _wait(lambda: confirmed <= set(consumer.seen), 30,
                  'every confirmed message')
        finally:
            consumer.stop.set()
            consumer.join(30)
    assert not publisher.errors and not consumer.errors, (
        publisher.errors, consumer.errors)
    missing = confirmed - set(consumer.seen)
    duplicates = consumer.deliveries() - len(consumer.seen)
    print('measured: recovery endurance (%s), %d failures, %d confirmed, '
          '%d delivered, %d duplicates, 0 lost; receiving again after '
          '%.2f s at most (median %.2f s)' % (
              fault, ROUNDS, len(confirmed), consumer.deliveries(),
              duplicates, max(gaps), sorted(gaps)[len(gaps) // 2]))
    assert not missing, sorted(missing)[:20]
    assert max(gaps) < 2.0, gaps
    assert publisher.conn.recoveries >= ROUNDS
    assert consumer.conn.recoveries == ROUNDS
    ch = consumer.conn.channel()
    ch.queue_delete(queue)
    consumer.conn.close()
    publisher.conn.close()
