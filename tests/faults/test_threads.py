"""One connection to RabbitMQ shared by 16 threads for 30 seconds (set
AMQP_THREADS_SECONDS for longer; the figures in docs/benchmarks.rst are
of a minute), as
docs/guide_threads.rst says it may be: each thread loops over
open -> declare -> publish (every other round with confirms, bodies
crossing frame_max) -> basic_get -> ack -> close on channels of its own,
beside a consumer thread in drain_events on another channel and the
heartbeat thread.  Every reply arrives (no timeout), every body comes back
byte for byte and in order, every confirm is received exactly once, and
the consumer gets every message of every thread once, in each thread's
order.  Run twice: as is, and with a switch interval of a microsecond,
where races that need luck happen every run."""
import hashlib
import os
import socket
import sys
import threading
from time import monotonic

import pytest

from amqp import Message

THREADS = 16
SECONDS = float(os.environ.get('AMQP_THREADS_SECONDS', '30'))
PER_ROUND = 4
FRAME_MAX = 16384


def _body(thread, n):
    """A body of 0..70 kB (up to five frames at FRAME_MAX) that names
    itself."""
    size = (n * 7919 + thread * 131) % 70000
    seed = hashlib.sha256(b'%d/%d' % (thread, n)).digest()
    return (seed * (size // len(seed) + 1))[:size]


@pytest.mark.stress
@pytest.mark.slow
@pytest.mark.parametrize('switch_interval', [None, 1e-6],
                         ids=['default', 'switch-every-microsecond'])
def test_sixteen_threads_share_one_connection(
        broker, switch_interval):
    previous = sys.getswitchinterval()
    if switch_interval:
        sys.setswitchinterval(switch_interval)
    try:
        report = _run(broker)
    finally:
        sys.setswitchinterval(previous)
    print('measured: threads, %(rounds)d rounds, %(messages)d messages '
          'through basic_get, %(confirmed)d confirmed, %(consumed)d '
          'consumed in %(seconds).1f s' % report)


def _run(broker):
    conn = broker.connect(frame_max=FRAME_MAX, heartbeat=2,
                          heartbeat_thread=True, reply_timeout=30)
    assert conn.frame_max == FRAME_MAX
    setup = conn.channel()
    consumed_queue = setup.queue_declare('', exclusive=True).queue
    errors = []
    stop = threading.Event()
    consumed = {t: [] for t in range(THREADS)}
    sent_to_consumer = {t: 0 for t in range(THREADS)}
    totals = {'rounds': 0, 'messages': 0, 'confirmed': 0}
    lock = threading.Lock()

    def worker(t):
        n = 0
        try:
            for rounds in range(10 ** 9):
                if stop.is_set():
                    break
                ch = conn.channel()
                queue = ch.queue_declare('', exclusive=True).queue
                confirming = rounds % 2 == 0
                outcomes = {}
                if confirming:
                    ch.confirm_select()
                bodies = []

                def on_confirm(tag, outcome, outcomes=outcomes):
                    outcomes.setdefault(tag, []).append(outcome)

                extra = {'on_confirm': on_confirm} if confirming else {}
                for _ in range(PER_ROUND):
                    body = _body(t, n)
                    n += 1
                    bodies.append(body)
                    ch.basic_publish(Message(body), routing_key=queue,
                                     **extra)
                ch.basic_publish(
                    Message(b'%d' % sent_to_consumer[t],
                            application_headers={'thread': t}),
                    routing_key=consumed_queue, **extra)
                sent_to_consumer[t] += 1
                if confirming:
                    assert ch.wait_for_confirms(timeout=30)
                    assert outcomes == {
                        tag: ['ack'] for tag in range(1, PER_ROUND + 2)}, \
                        outcomes
                got = []
                while len(got) < PER_ROUND:
                    message = ch.basic_get(queue)
                    if message is None:
                        continue
                    got.append(bytes(message.body))
                    ch.basic_ack(message.delivery_tag)
                assert got == bodies, 'bodies differ in round %d' % rounds
                ch.close()
                with lock:
                    totals['rounds'] += 1
                    totals['messages'] += PER_ROUND
                    totals['confirmed'] += len(outcomes)
        except Exception as exc:
            errors.append(('worker %d' % t, exc))
            stop.set()

    def consume():
        ch = conn.channel()

        def on_message(message):
            t = message.headers['thread']
            consumed[t].append(int(message.body))
            message.ack()

        ch.basic_consume(consumed_queue, callback=on_message)
        try:
            while not stop.is_set() or any(
                    len(consumed[t]) < sent_to_consumer[t]
                    for t in range(THREADS)):
                if stop.is_set() and monotonic() > give_up[0]:
                    break
                try:
                    conn.drain_events(timeout=0.2)
                except socket.timeout:
                    pass
        except Exception as exc:
            errors.append(('consumer', exc))
            stop.set()

    give_up = [float('inf')]
    started = monotonic()
    threads = [threading.Thread(target=worker, args=(t,), daemon=True)
               for t in range(THREADS)]
    threads.append(threading.Thread(target=consume, daemon=True))
    for thread in threads:
        thread.start()
    stop.wait(SECONDS)
    give_up[0] = monotonic() + 30
    stop.set()
    for thread in threads:
        thread.join(60)
    seconds = monotonic() - started
    assert not [t for t in threads if t.is_alive()], 'a thread still waits'
    assert not errors, errors
    for t in range(THREADS):
        assert consumed[t] == list(range(sent_to_consumer[t])), \
            'thread %d: consumer got %r' % (t, consumed[t][:20])
    assert conn.connected
    conn.close()
    return dict(totals, consumed=sum(map(len, consumed.values())),
                seconds=seconds)
