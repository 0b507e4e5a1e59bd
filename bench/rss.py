"""Peak memory receiving one large body: this package with and without
its compiled module, py-amqp 5.4.2 (plain and built with Cython) and pika
1.4.4, each in a fresh process that gets one message of ``--size`` bytes
(100 MiB by default) with ``basic_get``.

Reports the process's peak RSS (``VmHWM``) before the get and after
it, and the peak as a multiple of the body: a client that receives the
body straight into the object it hands out peaks near 1x the body (plus
the interpreter); one that collects frames and joins them, near 2x or
more.  Issue 19's target for the compiled path is at most 2x.

::

    python bench/rss.py                       # throwaway RabbitMQ
    python bench/rss.py --url amqp://guest:guest@127.0.0.1:5672//
    python bench/rss.py --libs ours,ours-pure --size 10000000

py-amqp and pika come from the virtualenvs bench/e2e.py makes.
"""
import argparse
import json
import os
import resource
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import e2e  # noqa: E402  (the venv helpers and URL parsing)

LIBS = ('ours', 'ours-pure', 'py-amqp', 'py-amqp-cython', 'pika')
QUEUE = 'bench-rss'


def _peak_kib():
    """Peak RSS of this process in KiB: VmHWM, which starts afresh at
    exec (ru_maxrss keeps the parent's peak across fork and exec)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(lib, url, size):
    """Get the one message queued; print JSON with the peaks."""
    host, port, user, password, vhost = e2e.parse_url(url)
    if lib == 'pika':
        import pika
        params = pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password))
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        before = _peak_kib()
        _method, _props, body = ch.basic_get(QUEUE, auto_ack=True)
        module = pika
    else:
        import amqp
        conn = amqp.Connection(host='%s:%d' % (host, port), userid=user,
                               password=password, virtual_host=vhost)
        conn.connect()
        ch = conn.channel()
        before = _peak_kib()
        body = ch.basic_get(QUEUE, no_ack=True).body
        module = amqp
    after = _peak_kib()
    assert len(body) == size, (len(body), size)
    conn.close()
    json.dump({'lib': lib, 'module': module.__file__,
               'speedups': getattr(module, 'SPEEDUPS', None),
               'before_kib': before, 'peak_kib': after}, sys.stdout)


def fill(url, size):
    sys.path.insert(0, REPO)
    import amqp
    host, port, user, password, vhost = e2e.parse_url(url)
    conn = amqp.Connection(host='%s:%d' % (host, port), userid=user,
                           password=password, virtual_host=vhost)
    conn.connect()
    ch = conn.channel()
    ch.queue_declare(QUEUE, auto_delete=False)
    ch.queue_purge(QUEUE)
    ch.confirm_select()
    ch.basic_publish_confirm(amqp.Message(b'x' * size), '', QUEUE)
    conn.close()


def run(lib, args):
    env = e2e._clean_env()
    env.pop('AMQP_NO_SPEEDUPS', None)
    argv = [os.path.abspath(__file__), '--worker', lib, '--url', args.url,
            '--size', str(args.size)]
    if lib in ('ours', 'ours-pure'):
        env['PYTHONPATH'] = REPO
        if lib == 'ours-pure':
            env['AMQP_NO_SPEEDUPS'] = '1'
        python, cwd = sys.executable, REPO
    elif lib == 'py-amqp-cython':
        python, cwd = e2e.ensure_cython_venv(args.cython_venv), '/'
    else:
        python, cwd = e2e.ensure_venv(args.venv), '/'
    fill(args.url, args.size)
    done = subprocess.run([python] + argv, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit('worker %s failed:\n%s' % (lib, done.stderr[-3000:]))
    result = json.loads(done.stdout)
    if lib in ('ours', 'ours-pure') and \
            result['speedups'] is not (lib == 'ours'):
        raise SystemExit('worker %s: compiled module %s' % (
            lib, 'on' if result['speedups'] else 'off'))
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--url')
    p.add_argument('--size', type=int, default=100 * 1024 * 1024)
    p.add_argument('--libs', default=','.join(LIBS))
    p.add_argument('--venv', default=e2e.DEFAULT_VENV)
    p.add_argument('--cython-venv', default=e2e.DEFAULT_CYTHON_VENV)
    p.add_argument('--worker', choices=LIBS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.url, args.size)
    broker = e2e.start_broker(args)
    try:
        results = [run(lib.strip(), args) for lib in args.libs.split(',')
                   if lib.strip()]
    finally:
        if broker is not None:
            broker.stop()
    mib = args.size / 2 ** 20
    print('one body of %.0f MiB, received with basic_get; peak RSS of the '
          'process' % mib)
    print('%-15s %12s %12s %14s' % ('library', 'before MiB', 'peak MiB',
                                    'peak / body'))
    for r in results:
        print('%-15s %12.0f %12.0f %13.2fx' % (
            r['lib'], r['before_kib'] / 1024, r['peak_kib'] / 1024,
            r['peak_kib'] * 1024 / args.size))


if __name__ == '__main__':
    main()
