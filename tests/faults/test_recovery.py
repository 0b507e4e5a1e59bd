"""Automatic recovery (``Connection(recover=True)``) against RabbitMQ: the
operator closing connections, the application stopped and started, a
cut link.  Consumers receive again, server-named queues come back with
their bindings, qos and consumer arguments hold, acks from before the
failure are not sent, and closing during a recovery leaves nothing
behind."""
import socket
import threading
import time
import uuid
from time import monotonic

import psutil
import pytest

import amqp
from amqp import Message
from amqp.exceptions import PublishConfirmError, RecoverableConnectionError
from amqp.recovery import RecoveringConnection


def _name(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def _drain_until(conn, predicate, timeout, what):
    deadline = monotonic() + timeout
    while not predicate():
        assert monotonic() < deadline, 'timed out waiting for ' + what
        try:
            conn.drain_events(timeout=0.1)
        except socket.timeout:
            pass


def test_off_by_default(fault_node):
    conn = fault_node.connect()
    assert type(conn) is amqp.Connection
    conn.close()
    conn = fault_node.connect(recover=True)
    assert isinstance(conn, RecoveringConnection)
    conn.close()


def test_an_os_error_from_a_callback_is_not_a_lost_connection(fault_node):
    # A consumer printing to a closed pipe raises BrokenPipeError, an
    # OSError like a lost socket's: it reaches the caller of
    # drain_events, and the connection (healthy) is not recovered.
    started = []
    conn = fault_node.connect(
        recover=True, on_recovery_started=lambda c, exc: started.append(exc))
    try:
        ch = conn.channel()
        queue = ch.queue_declare('', exclusive=True).queue

        def on_message(msg):
            ch.basic_ack(msg.delivery_tag)
            raise BrokenPipeError(32, 'Broken pipe')

        ch.basic_consume(queue, callback=on_message)
        ch.basic_publish(Message(b'one'), routing_key=queue)
        with pytest.raises(BrokenPipeError):
            conn.drain_events(timeout=5)
        assert not conn.recovering()
        assert started == [] and conn.recoveries == 0
        assert conn.connected
        assert ch.queue_declare(queue, passive=True).message_count == 0
    finally:
        conn.close()


@pytest.mark.parametrize('fault', ['close_all_connections', 'restart'])
def test_consumer_on_a_server_named_queue_receives_again(fault_node, fault):
    exchange = _name('recovery-x')
    started, recovered, renamed = [], [], []
    conn = fault_node.connect(
        recover=True, recover_interval=0.1, heartbeat=10,
        on_recovery_started=lambda c, exc: started.append(exc),
        on_recovery_succeeded=lambda c: recovered.append(monotonic()),
        on_queue_renamed=lambda old, new: renamed.append((old, new)))
    ch = conn.channel()
    ch.basic_qos(0, 3, False)
    ch.exchange_declare(exchange, 'direct', auto_delete=True)
    queue = ch.queue_declare('', exclusive=True).queue
    ch.queue_bind(queue, exchange, 'k')
    held = []        # deliveries not acked: prefetch 3 caps them
    ch.basic_consume(queue, consumer_tag='the-consumer',
                     arguments={'x-priority': 5}, callback=held.append)
    publisher = fault_node.connect()
    pub = publisher.channel()

    def publish(n, prefix):
        for i in range(n):
            pub.basic_publish(Message(b'%s %d' % (prefix, i)),
                              exchange=exchange, routing_key='k')

    publish(5, b'before')
    _drain_until(conn, lambda: len(held) == 3, 5, 'deliveries')
    time.sleep(0.2)
    assert len(held) == 3        # qos: 3 unacked at most
    publisher.close()

    if fault == 'close_all_connections':
        fault_node.ctl('close_all_connections', 'recovery test')
        back = monotonic()
    else:
        fault_node.ctl('stop_app')
        fault_node.ctl('start_app')
        fault_node.wait_ready()
        back = monotonic()
    stale = [m.delivery_tag for m in held]
    del held[:]
    # drain_events goes on across the outage: no exception
    _drain_until(conn, lambda: conn.recoveries == 1, 30, 'recovery')
    assert len(started) == 1 and recovered
    assert recovered[0] - back < 2.0, recovered[0] - back
    new_queue = conn.topology.consumers['the-consumer']['queue']
    assert renamed == [(queue, new_queue)] and new_queue != queue

    publisher = fault_node.connect()
    pub = publisher.channel()
    publish(5, b'after')
    _drain_until(conn, lambda: len(held) == 3, 5, 'deliveries after')
    time.sleep(0.2)
    assert len(held) == 3, 'qos not restored'
    assert [m.body for m in held] == [b'after 0', b'after 1', b'after 2']
    assert all(m.delivery_info['consumer_tag'] == 'the-consumer'
               for m in held)
    # tags go on increasing; acks of the old ones are not sent
    assert min(m.delivery_tag for m in held) > max(stale)
    for tag in stale:
        ch.basic_ack(tag)
    assert ch.stale_acks == 3
    for m in held:
        m.ack()
    _drain_until(conn, lambda: len(held) == 5, 5, 'the rest')
    assert ch.is_open and conn.connected
    # the consumer's arguments came back: a passive declare sees one
    # consumer on the new queue
    assert ch.queue_declare(new_queue, passive=True).consumer_count == 1
    publisher.close()
    conn.close()


def test_a_cut_link_is_recovered_and_unconfirmed_publishes_reported(
        fault_node, proxy_to_fault_node):
    proxy = proxy_to_fault_node
    conn = amqp.Connection(proxy.address, recover=True, recover_interval=0.1,
                           connect_timeout=5)
    conn.connect()
    ch = conn.channel()
    queue = _name('recovery-confirms')
    ch.queue_declare(queue, durable=False, auto_delete=False)
    ch.confirm_select()
    outcomes = {}
    tags = [ch.basic_publish(Message(b'%d' % i), routing_key=queue,
                             on_confirm=lambda t, o: outcomes.setdefault(t,
                                                                         o))
            for i in range(3)]
    assert ch.wait_for_confirms(timeout=5)
    proxy.set(down='drop')           # the broker's acks never arrive
    later = [ch.basic_publish(Message(b'lost %d' % i), routing_key=queue,
                              on_confirm=lambda t, o: outcomes.setdefault(
                                  t, o)) for i in range(2)]
    time.sleep(0.2)
    proxy.set(down='pass')
    proxy.cut()
    # the call in flight raises, as without recovery...
    with pytest.raises((OSError, RecoverableConnectionError)):
        ch.wait_for_confirms(timeout=5)
    # ...and the next one waits for the recovery and goes on
    tag = ch.basic_publish(Message(b'after'), routing_key=queue)
    assert conn.recoveries == 1
    with pytest.raises(PublishConfirmError) as info:
        ch.wait_for_confirms(timeout=5)
    assert info.value.unconfirmed == tuple(later)
    assert [outcomes[t] for t in tags + later] == ['ack'] * 3 + ['lost'] * 2
    assert tag == later[-1] + 1       # tags go on
    assert ch.wait_for_confirms(timeout=5)
    ch.queue_delete(queue)
    conn.close()


def test_topology_comes_back_as_declared_and_as_changed(fault_node):
    """Exchanges, an exchange-to-exchange binding, queue bindings and a
    transaction channel come back; what was unbound, deleted or filtered
    out does not."""
    src, dst = _name('rec-src'), _name('rec-dst')
    kept, unbound, deleted, skipped = (
        _name('rec-kept'), _name('rec-unbound'), _name('rec-deleted'),
        _name('rec-skip'))
    conn = fault_node.connect(
        recover=True, recover_interval=0.1,
        recover_filter=lambda kind, record: record.get('queue') != skipped)
    ch, tx = conn.channel(), conn.channel()
    ch.exchange_declare(src, 'topic', auto_delete=False)
    ch.exchange_declare(dst, 'fanout', auto_delete=False)
    ch.exchange_bind(dst, src, 'a.*')
    for q in (kept, unbound, deleted, skipped):
        ch.queue_declare(q, exclusive=True)
        ch.queue_bind(q, dst)
    ch.queue_unbind(unbound, dst)
    ch.queue_delete(deleted)
    tx.tx_select()
    # the broker forgets all of it but the exchanges: delete them too
    admin = fault_node.connect()
    admin_ch = admin.channel()
    admin_ch.exchange_delete(src)
    admin_ch.exchange_delete(dst)
    fault_node.ctl('close_all_connections', 'recovery test')
    _drain_until(conn, lambda: conn.recoveries == 1, 30, 'recovery')
    assert conn.recovery_errors == 0
    admin = fault_node.connect()           # (closed with the others)
    admin_ch = admin.channel()

    tx.basic_publish(Message(b'routed'), exchange=src, routing_key='a.b')
    tx.tx_commit()                 # 406 if the channel were not in tx mode
    assert ch.queue_declare(kept, passive=True).message_count == 1
    assert ch.queue_declare(unbound, passive=True).message_count == 0
    for gone in (deleted, skipped):
        probe = admin.channel()
        with pytest.raises(amqp.NotFound):
            probe.queue_declare(gone, passive=True)
    admin_ch.exchange_delete(src)
    admin_ch.exchange_delete(dst)
    admin.close()
    conn.close()


def test_consumers_come_back_without_topology_recovery(fault_node):
    """recover_topology=False: nothing is redeclared, but consumers are
    registered again (a pitfall of other clients)."""
    queue = _name('rec-durable')
    admin = fault_node.connect()
    admin_ch = admin.channel()
    admin_ch.queue_declare(queue, durable=True, auto_delete=False)
    conn = fault_node.connect(recover=True, recover_interval=0.1,
                              recover_topology=False)
    ch = conn.channel()
    got = []
    ch.basic_consume(queue, callback=got.append, no_ack=True)
    fault_node.ctl('close_all_connections', 'recovery test')
    _drain_until(conn, lambda: conn.recoveries == 1, 30, 'recovery')
    admin = fault_node.connect()
    admin_ch = admin.channel()
    assert admin_ch.queue_declare(queue, passive=True).consumer_count == 1
    admin_ch.basic_publish(Message(b'still here'), routing_key=queue)
    _drain_until(conn, lambda: got, 5, 'a delivery')
    assert got[0].body == b'still here'
    conn.close()
    admin_ch.queue_delete(queue)
    admin.close()


def _sockets_to(port):
    """This process's TCP sockets connected to ``port``."""
    return [c for c in psutil.Process().net_connections('tcp')
            if c.raddr and c.raddr.port == port]


@pytest.mark.parametrize('during', ['backoff', 'handshake', 'topology'])
def test_closing_during_a_recovery_leaves_nothing_behind(
        fault_node, proxy_to_fault_node, during):
    # backoff: nothing to reconnect to, the recovery waits between
    # attempts; handshake: an attempt is under way (the proxy holds the
    # handshake) when close() comes; topology: the new connection is up
    # and the recovery is redeclaring when close() comes
    from .proxy import PASS, STALL
    proxy = proxy_to_fault_node
    redeclaring, closed = threading.Event(), threading.Event()

    def recover_filter(kind, record):
        redeclaring.set()
        closed.wait(5)
        return True

    conn = amqp.Connection(proxy.address, recover=True,
                           recover_interval=0.2, connect_timeout=3,
                           recover_filter=recover_filter)
    conn.connect()
    ch = conn.channel()
    ch.exchange_declare(_name('racing-close'), 'fanout', auto_delete=True)
    ch.basic_consume(ch.queue_declare('', exclusive=True).queue,
                     callback=lambda m: None)
    threads_before = set(threading.enumerate())
    if during == 'backoff':
        proxy.close()                # nothing to reconnect to
    elif during == 'handshake':
        proxy.set(up=STALL, down=STALL)
        proxy.cut()
    else:
        proxy.cut()
    errors = []

    def consume():
        while True:
            try:
                conn.drain_events(timeout=1)
            except socket.timeout:
                continue   # still recovering
            except RecoverableConnectionError as exc:
                errors.append(exc)
                return

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    if during == 'backoff':
        time.sleep(1.0)              # it is trying
    elif during == 'handshake':
        proxy.wait_links(2)          # the attempt's handshake is held
        time.sleep(0.2)
    else:
        assert redeclaring.wait(5)
    assert conn.recovering()
    conn.close()
    closed.set()
    proxy.set(up=PASS, down=PASS)    # (handshake: let it complete)
    consumer.join(5)
    assert not consumer.is_alive()
    assert errors and isinstance(errors[0], RecoverableConnectionError)
    assert conn._transport is None and not conn.connected
    assert ch.connection is None and not ch.is_open
    assert conn.recoveries == 0
    time.sleep(0.5)
    assert set(threading.enumerate()) <= threads_before
    assert _sockets_to(proxy.port) == []


def test_the_next_host_is_tried(fault_node):
    """The first host refuses connections after the failure: the
    recovery goes on to the next one in recover_hosts."""
    from .proxy import Proxy
    proxy = Proxy(fault_node.host, fault_node.port)
    direct = '%s:%d' % (fault_node.host, fault_node.port)
    # (given as a URL, as an application may have it)
    conn = amqp.Connection(proxy.address, recover=True,
                           recover_hosts=['amqp://guest@%s/' % direct],
                           recover_interval=0.05, connect_timeout=2)
    conn.connect()
    ch = conn.channel()
    queue = ch.queue_declare('', exclusive=True).queue
    got = []
    ch.basic_consume(queue, callback=got.append)
    proxy.close()             # the first host is gone for good
    _drain_until(conn, lambda: conn.recoveries == 1, 10, 'recovery')
    assert conn.host == direct
    new_queue = next(iter(conn.topology.queues))
    ch.basic_publish(Message(b'on the second host'), routing_key=new_queue)
    _drain_until(conn, lambda: got, 5, 'a delivery')
    conn.close()


def test_recover_timeout_gives_up_with_recovery_failed(fault_node):
    from amqp.exceptions import RecoveryFailed

    from .proxy import Proxy
    proxy = Proxy(fault_node.host, fault_node.port)
    failed = []
    conn = amqp.Connection(proxy.address, recover=True, recover_timeout=1,
                           recover_interval=0.1, connect_timeout=1,
                           on_recovery_failed=lambda c, e: failed.append(e))
    conn.connect()
    ch = conn.channel()
    proxy.close()
    started = monotonic()
    with pytest.raises(RecoveryFailed) as info:
        while True:
            conn.drain_events(timeout=5)
    assert 0.9 < monotonic() - started < 3
    assert isinstance(info.value.__cause__, OSError)
    assert failed and not conn.connected and ch.connection is None
    with pytest.raises(RecoverableConnectionError):
        ch.basic_publish(Message(b'x'), routing_key='q')


def test_a_refused_login_ends_the_recovery(fault_node):
    from amqp.exceptions import RecoveryFailed
    user, password = 'recovery-%s' % uuid.uuid4().hex[:6], 'secret'
    fault_node.ctl('add_user', user, password)
    fault_node.ctl('set_permissions', '-p', '/', user, '.*', '.*', '.*')
    try:
        conn = fault_node.connect(userid=user, password=password,
                                  recover=True, recover_interval=0.1)
        conn.channel()
        fault_node.ctl('change_password', user, 'changed')
        fault_node.ctl('close_all_connections', 'new password')
        started = monotonic()
        with pytest.raises(RecoveryFailed) as info:
            while True:
                conn.drain_events(timeout=5)
        assert monotonic() - started < 5
        assert '403' in str(info.value) or 'ACCESS_REFUSED' in str(
            info.value), info.value
        assert not conn.connected
    finally:
        fault_node.ctl('delete_user', user)


def test_amqp_consume_keeps_consuming_across_a_broker_restart(fault_node):
    import subprocess
    import sys
    queue = _name('recovery-cli')
    conn = fault_node.connect()
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, auto_delete=False)
    for i in range(3):
        ch.basic_publish(Message(b'before %d' % i, delivery_mode=2),
                         routing_key=queue)
    conn.close()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'amqp', 'consume', queue, '--count', '6',
         '--prefetch', '1',
         '--body-only', '--url', 'amqp://guest:guest@%s:%d//' % (
             fault_node.host, fault_node.port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = monotonic() + 10
        first = []
        while len(first) < 3 and monotonic() < deadline:
            first.append(proc.stdout.readline().strip())
        assert first == ['before 0', 'before 1', 'before 2']
        fault_node.ctl('stop_app')
        fault_node.ctl('start_app')
        fault_node.wait_ready()
        conn = fault_node.connect()
        ch = conn.channel()
        for i in range(3):
            ch.basic_publish(Message(b'after %d' % i, delivery_mode=2),
                             routing_key=queue)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.split('\n')[:3] == ['after 0', 'after 1', 'after 2'], out
    assert 'lost' in err and 'reconnected' in err, err
    assert 'consumed 6 messages' in err
    ch.queue_delete(queue)
    conn.close()
