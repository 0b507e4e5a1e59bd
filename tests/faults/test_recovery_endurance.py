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
import uuid
from time import monotonic

import pytest

from .endurance import Consumer, Publisher, finish, wait as _wait
from .proxy import PASS, STALL

ROUNDS = 20
#: deliveries the consumer must get between two faults
BETWEEN = 20


@pytest.mark.stress
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
        confirmed, missing, duplicates = finish(publisher, consumer)
    print('measured: recovery endurance (%s), %d failures, %d confirmed, '
          '%d delivered, %d duplicates, %d lost; receiving again after '
          '%.2f s at most (median %.2f s)' % (
              fault, ROUNDS, len(confirmed), consumer.deliveries(),
              duplicates, len(missing), max(gaps),
              sorted(gaps)[len(gaps) // 2]))
    assert not missing, sorted(missing)[:20]
    assert max(gaps) < 2.0, gaps
    assert publisher.conn.recoveries >= ROUNDS
    assert consumer.conn.recoveries == ROUNDS
    ch = consumer.conn.channel()
    ch.queue_delete(queue)
    consumer.conn.close()
    publisher.conn.close()
