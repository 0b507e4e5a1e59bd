"""celery 5.7 workers and clients on this package, against a real broker.

Workers are subprocesses (``celery -A compat_celeryapp worker``) with
``PYTHONPATH`` set to this checkout; the tests are their clients, using the
``rpc://`` result backend, so both ends run on our amqp.
"""
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from celery import chord, group

from compat_celeryapp import make_app
from compat_scenarios import Worker
from ours import is_ours
from testkit import unique_name, wait_until

HERE = Path(__file__).resolve().parent
TIMEOUT = 30


@pytest.fixture(scope='module', params=['solo', 'prefork'])
def worker(request, pyamqp_url, subprocess_env, tmp_path_factory):
    """One worker per pool; the solo one runs with mingle and gossip on."""
    pool = request.param
    queue = unique_name(f'compat-celery-{pool}')
    proc = Worker(pyamqp_url, tmp_path_factory.mktemp('worker'),
                  name=queue, pool=pool,
                  concurrency=2 if pool == 'prefork' else 1,
                  queue=queue, mingle_gossip=pool == 'solo',
                  env=subprocess_env)
    app = make_app(pyamqp_url, 'rpc://', queue)
    try:
        proc.wait_ready()
        proc.app = app
        yield proc
    finally:
        rc = proc.shutdown(app)
        app.close()
    assert rc == 0, proc.output()[-3000:]


def _task(worker, name):
    return worker.app.tasks[name]


def test_worker_runs_on_our_amqp(worker):
    where = _task(worker, 'compat.where').delay().get(timeout=TIMEOUT)
    assert is_ours(where)


def test_round_trip(worker):
    result = _task(worker, 'compat.add').delay(2, 40)
    assert result.get(timeout=TIMEOUT) == 42
    assert result.successful()
    assert result.state == 'SUCCESS'


def test_hundreds_of_tasks(worker):
    add = _task(worker, 'compat.add')
    results = [add.delay(i, 1) for i in range(300)]
    assert [r.get(timeout=TIMEOUT) for r in results] == \
        [i + 1 for i in range(300)]


def test_exception_propagates(worker):
    result = _task(worker, 'compat.fail').delay('boom')
    with pytest.raises(ValueError, match='boom'):
        result.get(timeout=TIMEOUT)
    assert result.state == 'FAILURE'
    assert 'ValueError' in result.traceback


def test_acks_late(worker, broker):
    result = _task(worker, 'compat.late').delay(21)
    assert result.get(timeout=TIMEOUT) == 42
    # acked after running: nothing ready or unacked stays behind
    def settled():
        rows = broker.ctl('list_queues', 'name', 'messages_ready',
                          'messages_unacknowledged').splitlines()
        return [worker.queue, '0', '0'] in [line.split() for line in rows]

    wait_until(settled, timeout=5, interval=0.1,
               what='nothing ready or unacked on %s' % worker.queue)


def test_retries(worker):
    result = _task(worker, 'compat.flaky').delay(3)
    assert result.get(timeout=TIMEOUT) == 3


def test_group(worker):
    add = _task(worker, 'compat.add')
    result = group(add.s(i, i) for i in range(20)).apply_async()
    assert result.get(timeout=TIMEOUT) == [i * 2 for i in range(20)]


def test_rpc_backend_refuses_chords(worker):
    # celery's rpc:// backend has no chord support (see the chord test).
    add, xsum = _task(worker, 'compat.add'), _task(worker, 'compat.xsum')
    with pytest.raises(NotImplementedError):
        chord([add.s(1, 1)])(xsum.s())


def test_inspect_ping(worker):
    replies = worker.app.control.inspect(
        destination=[worker.name], timeout=1).ping()
    assert replies == {worker.name: {'ok': 'pong'}}
    assert worker.app.control.ping(destination=[worker.name], timeout=1) \
        == [{worker.name: {'ok': 'pong'}}]


def test_inspect_ping_command_line(worker, subprocess_env, pyamqp_url):
    env = dict(subprocess_env, COMPAT_BROKER_URL=pyamqp_url,
               COMPAT_QUEUE=worker.queue)
    out = subprocess.run(
        [sys.executable, '-m', 'celery', '-A', 'compat_celeryapp',
         'inspect', 'ping', '-d', worker.name, '-t', '1'],
        cwd=str(HERE), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'pong' in out.stdout and worker.name in out.stdout


def test_chord(pyamqp_url, subprocess_env, tmp_path):
    # rpc:// cannot do chords, so this worker and client share a file
    # result backend; chord_unlock retries still travel through the broker.
    backend = 'file://' + str(tmp_path / 'results')
    (tmp_path / 'results').mkdir()
    queue = unique_name('compat-celery-chord')
    proc = Worker(pyamqp_url, tmp_path, name=queue, queue=queue,
                  result_backend=backend, env=subprocess_env)
    app = make_app(pyamqp_url, backend, queue)
    try:
        proc.wait_ready()
        add, xsum = app.tasks['compat.add'], app.tasks['compat.xsum']
        result = chord(add.s(i, i) for i in range(10))(xsum.s())
        assert result.get(timeout=TIMEOUT) == 90
    finally:
        rc = proc.shutdown(app)
        app.close()
    assert rc == 0, proc.output()[-3000:]


@pytest.mark.parametrize('pool', ['solo', 'prefork'])
def test_warm_shutdown_finishes_running_task(pool, pyamqp_url,
                                             subprocess_env, tmp_path):
    queue = unique_name(f'compat-celery-term-{pool}')
    proc = Worker(pyamqp_url, tmp_path, name=queue, queue=queue, pool=pool,
                  concurrency=2 if pool == 'prefork' else 1,
                  env=subprocess_env)
    app = make_app(pyamqp_url, 'rpc://', queue)
    marker = tmp_path / 'finished'
    try:
        proc.wait_ready()
        proc.check_warm_shutdown(app, marker, 1.5, TIMEOUT)
    finally:
        proc.stop(signal.SIGKILL)
        app.close()


# -- same results on py-amqp ----------------------------------------------

def test_same_results_as_pyamqp(broker, reference_python, run_scenario):
    ours = run_scenario('celery_roundtrip', broker.url, ours=True)
    theirs = run_scenario('celery_roundtrip', broker.url,
                          python=reference_python, ours=False)
    assert is_ours(ours['result'].pop('worker_amqp'))
    assert theirs['amqp_version'] == '5.4.2'
    assert not is_ours(theirs['result'].pop('worker_amqp'))
    assert ours['result'] == theirs['result']
