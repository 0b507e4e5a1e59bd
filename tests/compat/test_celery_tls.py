"""celery 5.7 workers on ``amqps://``: the TLS node of ``tests/tlsbroker.py``,
``broker_use_ssl`` with the test CA and client certificate, result backend
``rpc://`` (over the same TLS broker).

A worker's consumer runs in kombu's event loop, which calls
``drain_events`` only when the socket polls readable.  Over TLS a reply
wait may decrypt deliveries that came in the same TLS record as its
reply; they are buffered in the client, where poll cannot see them.
RabbitMQ does that usually, but not always, so the module's workers
connect through the TLS front of ``tests/recordproxy.py``, which always
puts consume-ok and the deliveries behind it in one record.  They run
with ``COMPAT_TRACE_PENDING=1`` (see ``compat_celeryapp.py``), so each
worker's fixture checks that this really happened, while the tests check
that the workers still ran every task without waiting for more bytes.
The warm-shutdown tests talk to the node's own TLS listener.
"""
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tlsbroker import client_ssl_options

from compat_celeryapp import make_app
from compat_scenarios import Worker
from ours import is_ours

pytestmark = pytest.mark.tls

HERE = Path(__file__).resolve().parent
TIMEOUT = 30
BACKLOG = 40


@pytest.fixture(scope='module')
def amqps(tls_broker):
    """(broker URL, broker_use_ssl) for the TLS node."""
    url = 'amqps://guest:guest@localhost:%d//' % tls_broker.tls_port
    return url, client_ssl_options(tls_broker.certs, cert_reqs=2)


@pytest.fixture(scope='module')
def coalesced(tls_coalescing, amqps):
    """(URL, broker_use_ssl) for the front that puts consume-ok and the
    deliveries behind it in one TLS record."""
    url = 'amqps://guest:guest@localhost:%d//' % tls_coalescing.port
    return url, amqps[1]


def _tls_env(subprocess_env, use_ssl):
    return dict(subprocess_env, COMPAT_BROKER_SSL=json.dumps(use_ssl),
                COMPAT_TRACE_PENDING='1')


@pytest.fixture(scope='module', params=['solo', 'prefork'])
def tls_worker(request, coalesced, subprocess_env, tmp_path_factory):
    """A worker per pool, started with BACKLOG tasks already queued (so
    consume-ok and deliveries share a TLS record); ``backlog`` holds their
    results.  At the end the worker must have had frames buffered behind a
    reply, or the tests did not test what they are about."""
    url, use_ssl = coalesced
    pool = request.param
    queue = f'compat-celery-tls-{pool}-{uuid.uuid4().hex[:8]}'
    app = make_app(url, 'rpc://', queue, broker_use_ssl=use_ssl)
    add = app.tasks['compat.add']
    backlog = [add.delay(i, 1000) for i in range(BACKLOG)]
    proc = Worker(url, tmp_path_factory.mktemp('tls-worker'), name=queue,
                  pool=pool, concurrency=2 if pool == 'prefork' else 1,
                  queue=queue, env=_tls_env(subprocess_env, use_ssl))
    try:
        proc.wait_ready()
        proc.app, proc.backlog = app, backlog
        yield proc
    finally:
        rc = proc.shutdown(app)
        app.close()
    output = proc.output()
    assert rc == 0, output[-3000:]
    assert 'TRACE-PENDING' in output, \
        'the worker never had frames buffered behind a reply'


def _within(seconds, what, fn):
    started = time.monotonic()
    value = fn()
    took = time.monotonic() - started
    assert took < seconds, f'{what} took {took:.1f}s'
    return value


def test_worker_on_amqps_runs_on_our_amqp(tls_worker):
    where = tls_worker.app.tasks['compat.where'].delay().get(timeout=TIMEOUT)
    assert is_ours(where)


def test_tasks_queued_before_the_worker_started_all_run(tls_worker):
    results = _within(10, 'the backlog', lambda: [
        r.get(timeout=TIMEOUT) for r in tls_worker.backlog])
    assert results == [i + 1000 for i in range(BACKLOG)]


def test_round_trips_over_tls_with_results_on_rpc(tls_worker):
    add = tls_worker.app.tasks['compat.add']
    results = _within(15, '200 round trips', lambda: [
        r.get(timeout=TIMEOUT) for r in
        [add.delay(i, 1) for i in range(200)]])
    assert results == [i + 1 for i in range(200)]


def test_task_exception_reaches_the_caller_over_tls(tls_worker):
    result = tls_worker.app.tasks['compat.fail'].delay('boom')
    with pytest.raises(ValueError, match='boom'):
        result.get(timeout=TIMEOUT)


def test_acks_late_leaves_nothing_unacked_over_tls(tls_worker, tls_broker):
    result = tls_worker.app.tasks['compat.late'].delay(21)
    assert result.get(timeout=TIMEOUT) == 42
    deadline = time.monotonic() + 5
    while True:
        rows = [line.split() for line in tls_broker.ctl(
            'list_queues', 'name', 'messages_ready',
            'messages_unacknowledged').splitlines()]
        row = next((r for r in rows if r and r[0] == tls_worker.queue), None)
        if row == [tls_worker.queue, '0', '0'] or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row == [tls_worker.queue, '0', '0']


def test_eta_task_does_not_hold_back_later_tasks_over_tls(tls_worker):
    # An ETA task raises the worker's prefetch count: the worker sends
    # basic.qos from its event loop, outside any drain_events.
    tasks = tls_worker.app.tasks
    started = time.monotonic()
    eta = tasks['compat.add'].apply_async((1, 1), countdown=3)
    later = [tasks['compat.add'].delay(i, 2) for i in range(20)]
    assert [r.get(timeout=TIMEOUT) for r in later] == \
        [i + 2 for i in range(20)]
    assert time.monotonic() - started < 3, 'later tasks waited for the ETA'
    assert eta.get(timeout=TIMEOUT) == 2
    assert time.monotonic() - started < 8


def test_inspect_ping_over_tls(tls_worker):
    replies = _within(5, 'inspect ping', lambda: tls_worker.app.control
                      .inspect(destination=[tls_worker.name], timeout=1)
                      .ping())
    assert replies == {tls_worker.name: {'ok': 'pong'}}


def test_inspect_ping_command_line_over_tls(tls_worker, coalesced,
                                            subprocess_env):
    url, use_ssl = coalesced
    env = dict(_tls_env(subprocess_env, use_ssl), COMPAT_BROKER_URL=url,
               COMPAT_QUEUE=tls_worker.queue)
    out = subprocess.run(
        [sys.executable, '-m', 'celery', '-A', 'compat_celeryapp',
         'inspect', 'ping', '-d', tls_worker.name, '-t', '1'],
        cwd=str(HERE), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'pong' in out.stdout and tls_worker.name in out.stdout


@pytest.mark.parametrize('pool', ['solo', 'prefork'])
def test_warm_shutdown_over_tls_finishes_running_task(pool, amqps,
                                                      subprocess_env,
                                                      tmp_path):
    url, use_ssl = amqps
    queue = f'compat-celery-tls-term-{pool}-{uuid.uuid4().hex[:8]}'
    proc = Worker(url, tmp_path, name=queue, queue=queue, pool=pool,
                  concurrency=2 if pool == 'prefork' else 1,
                  env=_tls_env(subprocess_env, use_ssl))
    app = make_app(url, 'rpc://', queue, broker_use_ssl=use_ssl)
    marker = tmp_path / 'finished'
    try:
        proc.wait_ready()
        proc.check_warm_shutdown(app, marker, 1.0, TIMEOUT)
    finally:
        proc.stop(signal.SIGKILL)
        app.close()
