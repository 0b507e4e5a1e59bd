"""Proxy fault scenarios run on this package and on py-amqp 5.4.2, for
the comparison in docs/reliability.rst.

    .venv/bin/python bench/faults.py --venv /tmp/amqp-compat-reference-...

Starts a throwaway RabbitMQ node (``amqp.cli.localbroker``), then runs each
scenario in a worker process (this script with ``--worker``): ours with
the repository on ``PYTHONPATH``, py-amqp with the reference virtualenv's
interpreter run from outside the repository.  The workers put
``tests/faults/proxy.py`` between client and node and print one JSON
line per scenario.  Nothing here is a test: the tests are in
``tests/faults``; this only measures what py-amqp does in the same cases.
"""
import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ('paused', 'silent', 'stalled_publish', 'trickle',
             'cut_consumer')
WAIT = 10.0    # how long a worker waits for a call that may hang


def _load_proxy():
    spec = importlib.util.spec_from_file_location(
        'faults_proxy', ROOT / 'tests' / 'faults' / 'proxy.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bounded(call, wait=WAIT):
    """Run ``call`` in a thread; (outcome, seconds), outcome the
    exception's name, 'returned', or 'still waiting' after ``wait``."""
    result = {}

    def run():
        started = time.monotonic()
        try:
            call()
            result['outcome'] = 'returned'
        except BaseException as exc:  # noqa: B036 - report whatever it was
            result['outcome'] = type(exc).__name__
        result['took'] = round(time.monotonic() - started, 3)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        return 'still waiting', wait
    return result['outcome'], result['took']


def worker(name, host, port):
    import amqp
    P = _load_proxy()
    proxy = P.Proxy(host, int(port))
    out = {'library': 'amqp %s' % amqp.__version__, 'scenario': name}

    def through(**kwargs):
        conn = amqp.Connection(proxy.address, connect_timeout=10, **kwargs)
        conn.connect()
        return conn

    if name == 'paused':
        # the node's VM stopped (SIGSTOP), heartbeats on: a drain without
        # timeout and a synchronous call, each on its own connection
        pid = int(os.environ['FAULTS_BEAM_PID'])
        direct = '%s:%s' % (host, port)
        draining = amqp.Connection(direct, heartbeat=1)
        draining.connect()
        calling = amqp.Connection(direct, heartbeat=1)
        calling.connect()
        ch = calling.channel()
        results = {}
        threads = [threading.Thread(target=lambda: results.update(
            drain=_bounded(draining.drain_events))),
            threading.Thread(target=lambda: results.update(
                call=_bounded(lambda: ch.queue_declare('', exclusive=True))))]
        os.kill(pid, signal.SIGSTOP)
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            os.kill(pid, signal.SIGCONT)
        out.update(results)
    elif name == 'silent':
        draining = through(heartbeat=1)
        calling = through(heartbeat=1)
        ch = calling.channel()
        proxy.set(down=P.DROP)
        results = {}
        threads = [threading.Thread(target=lambda: results.update(
            drain=_bounded(draining.drain_events))),
            threading.Thread(target=lambda: results.update(
                call=_bounded(lambda: ch.queue_declare('', exclusive=True))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.update(results)
    elif name == 'stalled_publish':
        direct = amqp.Connection('%s:%s' % (host, port))
        direct.connect()
        dch = direct.channel()
        queue = dch.queue_declare('faults-bench-%d' % os.getpid(),
                                  auto_delete=False).queue
        conn = through(write_timeout=1, frame_max=131072)
        ch = conn.channel()
        ch.queue_declare(queue, passive=True)
        link = proxy.wait_links(1)
        before = len(link.frames_up()[0])
        proxy.set(up=P.STALL)
        body = b'\xab' * (48 * 1024 * 1024)
        out['first'] = _bounded(lambda: ch.basic_publish(
            amqp.Message(body), routing_key=queue))
        out['connected_after'] = bool(conn.connected)
        out['second'] = _bounded(lambda: ch.basic_publish(
            amqp.Message(b'second'), routing_key=queue))
        proxy.set(up=P.PASS)
        time.sleep(1)
        frames, rest = link.frames_up()
        sigs = P.method_sigs(frames[before:])
        out['publishes_forwarded'] = sigs.count((60, 40))
        out['frames_forwarded'] = len(frames) - before
        try:
            conn.collect()
        except Exception:  # noqa: S110 - measuring, not testing
            pass
        time.sleep(1)
        out['stored'] = dch.queue_declare(queue, passive=True).message_count
        dch.queue_delete(queue)
        direct.close()
    elif name == 'trickle':
        proxy.set(up=P.TRICKLE, down=P.TRICKLE, trickle_delay=0.0002)
        started = time.monotonic()
        conn = through()
        out['handshake'] = round(time.monotonic() - started, 3)
        ch = conn.channel()
        queue = ch.queue_declare('', exclusive=True).queue
        body = bytes(range(256)) * 16
        got = []
        ch.basic_consume(queue, callback=got.append, no_ack=True)
        ch.basic_publish(amqp.Message(body), routing_key=queue)
        worst, timeouts = 0.0, 0
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                conn.drain_events(timeout=0.1)
            except socket.timeout:
                timeouts += 1
            worst = max(worst, time.monotonic() - started)
        out['drain_timeout'] = 0.1
        out['longest_drain'] = round(worst, 3)
        out['timeouts'] = timeouts
        out['intact'] = bool(got) and bytes(got[0].body) == body
    elif name == 'cut_consumer':
        conn = through()
        ch = conn.channel()
        ch.queue_declare('', exclusive=True)
        proxy.cut()
        out['drain'] = _bounded(lambda: conn.drain_events(timeout=5))
    proxy.close()
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--venv', required=True,
                        help='virtualenv with py-amqp 5.4.2')
    parser.add_argument('--worker', nargs=3, metavar=('NAME', 'HOST', 'PORT'))
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    sys.path.insert(0, str(ROOT))
    from amqp.cli.localbroker import LocalBroker
    theirs = str(Path(args.venv) / 'bin' / 'python')
    with LocalBroker() as node:
        pid = node.ctl('eval', 'os:getpid().').strip().strip('"')
        ours_env = dict(os.environ, PYTHONPATH=str(ROOT),
                        FAULTS_BEAM_PID=pid)
        theirs_env = dict(os.environ, FAULTS_BEAM_PID=pid)
        theirs_env.pop('PYTHONPATH', None)
        for name in SCENARIOS:
            for python, env, cwd in ((sys.executable, ours_env, ROOT),
                                     (theirs, theirs_env, '/')):
                done = subprocess.run(
                    [python, str(Path(__file__).resolve()), '--venv',
                     args.venv, '--worker', name, node.host, str(node.port)],
                    env=env, cwd=cwd, capture_output=True, text=True,
                    timeout=120)
                line = done.stdout.strip().splitlines()[-1:] or \
                    [done.stderr[-500:]]
                print(line[0], flush=True)


if __name__ == '__main__':
    main()
