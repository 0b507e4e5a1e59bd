"""Faults of the broker itself, on a throwaway node of this suite's own
(``fault_node``): connections closed by the operator, the RabbitMQ
application stopped and started under a publisher, the node's Erlang VM
paused with SIGSTOP, and a memory alarm.

Each scenario has a time bound and checks the data on the broker."""
import collections
import socket
import threading
import time
import uuid
from time import monotonic

import pytest

from amqp import Connection, Message
from amqp.exceptions import ConnectionForced, RecoverableConnectionError

from .conftest import Paused, detect_silence

pytestmark = pytest.mark.slow

#: what a reconnecting application catches (kombu catches the same)
CONNECTION_FAILURES = tuple(set(Connection.connection_errors +
                                Connection.recoverable_connection_errors))


def _name(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:10])


def _drain_until(conn, predicate, timeout):
    deadline = monotonic() + timeout
    while not predicate():
        remaining = deadline - monotonic()
        assert remaining > 0, 'condition not met within %ss' % timeout
        try:
            conn.drain_events(timeout=remaining)
        except socket.timeout:
            pass


def _read_queue(node, queue, timeout=20):
    """Every message in ``queue`` (consumed and acked), as a Counter of
    bodies; the queue is deleted afterwards."""
    conn = node.connect()
    ch = conn.channel()
    count = ch.queue_declare(queue, passive=True).message_count
    bodies = collections.Counter()
    ch.basic_qos(0, 500, False)
    ch.basic_consume(queue, no_ack=True,
                     callback=lambda m: bodies.update([bytes(m.body)]))
    _drain_until(conn, lambda: sum(bodies.values()) >= count, timeout)
    ch.queue_delete(queue)
    conn.close()
    return bodies, count


def test_operator_closing_connections_is_typed_and_reconnect_works(
        fault_node):
    conn = fault_node.connect()
    conn.channel()
    reasons = []
    conn.on_close = reasons.append
    fault_node.ctl('close_all_connections', 'fault suite says bye')
    started = monotonic()
    with pytest.raises(ConnectionForced) as info:
        conn.drain_events(timeout=10)
    assert monotonic() - started < 1.0   # already on the wire
    assert 'fault suite says bye' in str(info.value)
    assert reasons == [info.value] and not conn.connected
    again = fault_node.connect()
    again.channel().queue_declare('', exclusive=True)
    again.close()


def test_confirmed_messages_survive_a_broker_restart(fault_node):
    """A publisher with confirms, the RabbitMQ application stopped and
    started under it: it reconnects (public API only) and republishes
    what was not confirmed.  Every confirmed message is in the queue
    afterwards; duplicates (published again because the confirm was lost
    with the connection) are counted."""
    queue = _name('faults-restart')
    batch_size, restart_after, after_recovery = 200, 2000, 1000
    confirmed = set()
    unconfirmed = set()   # no ack yet: republished after a failure
    next_id = 0
    published = 0
    reconnects = -1
    timeline = {}

    def restart():
        while len(confirmed) < restart_after:
            time.sleep(0.01)
        timeline['stop'] = monotonic()
        fault_node.ctl('stop_app')
        fault_node.ctl('start_app')
        fault_node.wait_ready()
        timeline['started'] = monotonic()

    def on_confirm(i):
        def settled(tag, outcome):
            if outcome == 'ack':
                confirmed.add(i)
                unconfirmed.discard(i)
        return settled

    restarter = threading.Thread(target=restart, daemon=True)
    restarter.start()
    deadline = monotonic() + 90
    conn = ch = None
    failures = []
    while True:
        assert monotonic() < deadline, 'publisher did not finish in 90 s'
        finishing = 'recovered' in timeline and \
            len(confirmed) >= timeline['confirmed_then'] + after_recovery
        if finishing and not unconfirmed:
            break
        try:
            if conn is None:
                conn = fault_node.connect(connect_timeout=5)
                reconnects += 1
                ch = conn.channel()
                ch.queue_declare(queue, durable=True, auto_delete=False)
                ch.confirm_select()
                if failures and 'recovered' not in timeline:
                    timeline['recovered'] = monotonic()
                    timeline['confirmed_then'] = len(confirmed)
            batch = sorted(unconfirmed)[:batch_size]
            while len(batch) < batch_size and not finishing:
                batch.append(next_id)
                unconfirmed.add(next_id)
                next_id += 1
            for i in batch:
                ch.basic_publish(Message(b'%d' % i, delivery_mode=2),
                                 routing_key=queue, on_confirm=on_confirm(i))
                published += 1
            ch.wait_for_confirms(timeout=10)
        except CONNECTION_FAILURES as exc:
            failures.append(exc)
            timeline.setdefault('failed', monotonic())
            try:
                conn.close()
            except Exception:  # noqa: S110 - the connection is gone anyway
                pass
            conn = None
            time.sleep(0.1)
    conn.close()
    restarter.join(60)
    assert 'started' in timeline, 'the restart did not finish'
    assert failures, 'the restart went unnoticed'

    bodies, count = _read_queue(fault_node, queue)
    ids = {int(b) for b in bodies}
    assert confirmed <= ids                         # none lost
    assert ids == set(range(next_id)) == confirmed
    duplicates = count - len(ids)
    assert duplicates <= published - next_id
    print('measured: restart, %d confirmed, %d published, %d duplicates, '
          '0 lost, %d reconnects, publisher back %.2f s after the failure '
          '(stop_app..start_app %.2f s); errors seen: %s' % (
              len(confirmed), published, duplicates, reconnects,
              timeline['recovered'] - timeline['failed'],
              timeline['started'] - timeline['stop'],
              sorted({type(e).__name__ for e in failures})))
    assert timeline['recovered'] - timeline['started'] < 5


def test_paused_broker_detected_by_heartbeats(fault_node):
    """SIGSTOP of the node's VM with heartbeats on: drain_events() without
    a timeout and a synchronous call both raise ConnectionForced within
    2.5 heartbeat intervals (heartbeat_tick(rate=2)'s limit), nothing
    hangs; the node works again after SIGCONT."""
    hb = 1
    bound = 2.5 * hb + 0.3
    pid = fault_node.beam_pid()
    draining = fault_node.connect(heartbeat=hb)
    calling = fault_node.connect(heartbeat=hb)
    detect_silence(draining, calling, 'paused broker', hb, bound,
                   lambda: Paused(pid), 4 * hb + 5)
    fault_node.wait_ready()
    conn = fault_node.connect()
    conn.channel().queue_declare('', exclusive=True)
    conn.close()


def test_memory_alarm_fires_callbacks_and_bounds_publishing(fault_node):
    events = []
    conn = fault_node.connect(
        blocked_timeout=1,
        on_blocked=lambda reason: events.append(('blocked', reason)),
        on_unblocked=lambda: events.append(('unblocked',)))
    ch = conn.channel()
    queue = ch.queue_declare('', exclusive=True).queue
    try:
        fault_node.ctl('set_vm_memory_high_watermark', '0.0000001')
        alarmed = monotonic()
        ch.basic_publish(Message(b'sent while blocking'), routing_key=queue)
        _drain_until(conn, lambda: conn.blocked is not None, 15)
        seen = monotonic() - alarmed
        assert events[0][0] == 'blocked' and 'memory' in events[0][1]
        started = monotonic()
        with pytest.raises(RecoverableConnectionError):
            ch.basic_publish(Message(b'never sent'), routing_key=queue)
        took = monotonic() - started
        assert 1.0 <= took < 1.5
        assert conn.connected        # refused, not broken
    finally:
        fault_node.ctl('set_vm_memory_high_watermark', '0.4')
    _drain_until(conn, lambda: conn.blocked is None, 15)
    assert events[-1] == ('unblocked',)
    ch.basic_publish(Message(b'after'), routing_key=queue)
    got = []
    ch.basic_consume(queue, no_ack=True, callback=got.append)
    _drain_until(conn, lambda: len(got) >= 2, 10)
    assert [m.body for m in got] == [b'sent while blocking', b'after']
    conn.close()
    print('measured: memory alarm, on_blocked %.2f s after the alarm, '
          'publish refused after %.2f s (blocked_timeout=1)' % (seen, took))
