"""Fixtures of the fault-injection suite: a TCP proxy in front of the
session's broker, and a throwaway RabbitMQ node of our own for the faults
that stop or pause a node (stop_app, SIGSTOP, memory alarms), so the
session's node that other tests share is never disturbed."""
import os
import signal
import time

import pytest

from amqp import Connection
from amqp.cli import localbroker

from .proxy import Proxy


@pytest.fixture
def proxy(broker):
    """A proxy to the session's broker; closed after the test."""
    p = Proxy(broker.host, broker.port)
    yield p
    p.close()


@pytest.fixture
def proxy_to_fault_node(fault_node):
    """A proxy to the suite's own node; closed after the test."""
    p = Proxy(fault_node.host, fault_node.port)
    yield p
    p.close()


class FaultNode(localbroker.LocalBroker):
    """A node this suite may stop, restart, pause and alarm."""

    node_prefix = 'amqp-faults'

    def connect(self, host=None, **kwargs):
        kwargs.setdefault('connect_timeout', 10)
        conn = Connection(host or '%s:%d' % (self.host, self.port),
                          **kwargs)
        conn.connect()
        return conn

    def beam_pid(self):
        """The pid of the node's Erlang VM (what SIGSTOP must reach)."""
        out = self.ctl('eval', 'os:getpid().', timeout=30)
        return int(out.strip().strip('"'))

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if localbroker.probe(self.host, self.port, timeout=2):
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, 'node did not come back'
            time.sleep(0.1)


@pytest.fixture(scope='session')
def fault_node():
    node = FaultNode(timeout=90)
    try:
        node.start()
    except localbroker.BrokerError as exc:
        pytest.fail('throwaway RabbitMQ node did not start: %s' % exc)
    try:
        yield node
    finally:
        node.stop()


class Paused:
    """SIGSTOP a process until ``resume()`` (or the end of the block)."""

    def __init__(self, pid):
        self.pid = pid
        self.paused = False

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True
        return self

    def resume(self):
        if self.paused:
            os.kill(self.pid, signal.SIGCONT)
            self.paused = False

    def __exit__(self, *exc_info):
        self.resume()


def detect_silence(draining, calling, what, hb, bound, silence, wait):
    """Start ``drain_events()`` on ``draining`` and a ``queue_declare`` on
    ``calling`` in two threads, make the broker go quiet with
    ``silence()`` (a context manager), and check that both raise
    ConnectionForced within ``bound`` seconds (each thread joined for at
    most ``wait``)."""
    import threading
    from time import monotonic

    from amqp.exceptions import ConnectionForced
    ch = calling.channel()
    results = {}

    def measure(name, call):
        started = monotonic()
        try:
            call()
        except Exception as exc:
            results[name] = (exc, monotonic() - started)
        else:
            results[name] = (None, monotonic() - started)

    threads = [
        threading.Thread(target=measure,
                         args=('drain', draining.drain_events)),
        threading.Thread(target=measure, args=(
            'call', lambda: ch.queue_declare('', exclusive=True))),
    ]
    with silence():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(wait)
    for name in ('drain', 'call'):
        assert name in results, '%s still waiting' % name
        exc, took = results[name]
        assert isinstance(exc, ConnectionForced), (name, exc)
        print('measured: %s, %s detected after %.2f s (hb=%s)'
              % (what, name, took, hb))
        assert took < bound, (name, took)
