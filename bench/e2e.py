"""End-to-end benchmark: this package, py-amqp 5.4.2 and pika 1.4.4 against
one RabbitMQ, side by side in one run.

    python bench/e2e.py                       # starts a throwaway broker
    python bench/e2e.py --url amqp://guest:guest@127.0.0.1:5672//
    python bench/e2e.py --json results.json
    python bench/e2e.py --profile             # cProfile our client only

Every library runs in a worker process of its own (this script with
``--worker LIB``), so the client CPU time it reports (``getrusage`` of the
worker process: user + system) excludes the broker and the other libraries.
py-amqp and pika run from a separate virtualenv (``--venv``, default
/tmp/bench-pyamqp, created on demand with ``amqp==5.4.2 pika==1.4.4``) with
this repository off ``sys.path``; ours runs with the repository first on
``PYTHONPATH``.

Scenarios, each on a fresh exclusive server-named queue:

publish   N messages of SIZE bytes to the default exchange, no confirms;
          wall time runs until the broker reports all N in the queue
          (queue.declare passive), CPU time covers the publish loop only.
consume   basic.qos(prefetch 1000), basic.consume, drain until N delivered,
          manual ack with multiple=True every 100th message.
confirm   publisher confirms, wait for each message's ack (N_CONFIRM).
get       basic.get round trips with no_ack on a pre-filled queue (N_GET).

Each worker runs every scenario once; workers run ``--repeat`` times,
interleaved across libraries, and the table shows the median per cell.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from urllib.parse import unquote, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_VENV = '/tmp/bench-pyamqp'
VENV_REQUIREMENTS = ('amqp==5.4.2', 'pika==1.4.4')
LIBRARIES = ('ours', 'py-amqp', 'pika')
SCENARIOS = ('publish', 'consume', 'confirm', 'get')
PREFETCH = 1000
ACK_EVERY = 100
DRAIN_TIMEOUT = 30.0


def parse_url(url):
    """Return (host, port, userid, password, vhost) from an amqp:// URL;
    the path '/' or '//' both mean the vhost '/'."""
    u = urlparse(url)
    vhost = unquote(u.path[1:]) if u.path[1:] else '/'
    return (u.hostname or '127.0.0.1', u.port or 5672,
            unquote(u.username or 'guest'), unquote(u.password or 'guest'),
            vhost)


# -- workers ---------------------------------------------------------------
# Each returns {scenario: {'n', 'wall', 'cpu'}} in seconds.

def _cpu():
    """(user, system) CPU seconds of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def _sample(n, w0, c0, c1=None):
    """A result record from perf_counter/_cpu() readings at start and end
    (``c1`` defaults to now)."""
    wall = time.perf_counter() - w0
    c1 = c1 or _cpu()
    user, system = c1[0] - c0[0], c1[1] - c0[1]
    return dict(n=n, wall=wall, cpu=user + system, user=user, sys=system)


def _measure(n, fn):
    c0, w0 = _cpu(), time.perf_counter()
    fn()
    return _sample(n, w0, c0)


class PyAmqpLike:
    """Drives this package or py-amqp: the two share one API."""

    def __init__(self, url, body, profiler=None):
        import amqp
        self.amqp = amqp
        host, port, user, password, vhost = parse_url(url)
        self.params = dict(host='%s:%d' % (host, port), userid=user,
                           password=password, virtual_host=vhost,
                           heartbeat=0)
        self.body = body
        self.profiler = profiler

    def connect(self, **kwargs):
        conn = self.amqp.Connection(**dict(self.params, **kwargs))
        conn.connect()
        return conn

    def _queue(self, ch):
        return ch.queue_declare('', exclusive=True)[0]

    def _count(self, ch, q):
        return ch.queue_declare(q, passive=True)[1]

    def publish_consume(self, n, results):
        conn = self.connect()
        ch = conn.channel()
        q = self._queue(ch)
        msg = self.amqp.Message(self.body)
        publish = ch.basic_publish
        prof = self.profiler

        def pub():
            if prof:
                prof['publish'].enable()
            for _ in range(n):
                publish(msg, '', q)
            if prof:
                prof['publish'].disable()
        c0, w0 = _cpu(), time.perf_counter()
        pub()
        c1 = _cpu()
        while self._count(ch, q) < n:
            time.sleep(0.001)
        results['publish'] = _sample(n, w0, c0, c1)

        count = 0

        def on_message(m):
            nonlocal count
            count += 1
            if count % ACK_EVERY == 0 or count == n:
                ch.basic_ack(m.delivery_info['delivery_tag'], multiple=True)

        def con():
            if prof:
                prof['consume'].enable()
            ch.basic_qos(0, PREFETCH, False)
            tag = ch.basic_consume(q, callback=on_message)
            drain = conn.drain_events
            while count < n:
                drain(timeout=DRAIN_TIMEOUT)
            if prof:
                prof['consume'].disable()
            ch.basic_cancel(tag)
        sample = _measure(n, con)
        results['consume'] = sample
        conn.close()

    def confirm(self, n, results):
        conn = self.connect(confirm_publish=True)
        ch = conn.channel()
        q = self._queue(ch)
        msg = self.amqp.Message(self.body)
        # the first publish sends confirm.select (both libraries do)

        def run():
            publish = ch.basic_publish
            for _ in range(n):
                publish(msg, '', q)
        sample = _measure(n, run)
        assert self._count(ch, q) == n
        results['confirm'] = sample
        conn.close()

    def get(self, n, results):
        conn = self.connect()
        ch = conn.channel()
        q = self._queue(ch)
        msg = self.amqp.Message(self.body)
        for _ in range(n):
            ch.basic_publish(msg, '', q)
        while self._count(ch, q) < n:
            time.sleep(0.001)
        got = 0

        def run():
            nonlocal got
            get = ch.basic_get
            for _ in range(n):
                if get(q, no_ack=True) is not None:
                    got += 1
        sample = _measure(n, run)
        assert got == n, got
        results['get'] = sample
        conn.close()


class PikaDriver:
    """Drives pika's BlockingConnection."""

    def __init__(self, url, body, profiler=None):
        import pika
        self.pika = pika
        host, port, user, password, vhost = parse_url(url)
        self.params = pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost, heartbeat=0,
            credentials=pika.PlainCredentials(user, password))
        self.body = body

    def connect(self):
        return self.pika.BlockingConnection(self.params)

    def _queue(self, ch):
        return ch.queue_declare('', exclusive=True).method.queue

    def _count(self, ch, q):
        return ch.queue_declare(q, passive=True).method.message_count

    def publish_consume(self, n, results):
        conn = self.connect()
        ch = conn.channel()
        q = self._queue(ch)
        body = self.body
        c0, w0 = _cpu(), time.perf_counter()
        publish = ch.basic_publish
        for _ in range(n):
            publish('', q, body)
        c1 = _cpu()
        while self._count(ch, q) < n:
            time.sleep(0.001)
        results['publish'] = _sample(n, w0, c0, c1)

        count = 0

        def on_message(channel, method, properties, body):
            nonlocal count
            count += 1
            if count % ACK_EVERY == 0 or count == n:
                channel.basic_ack(method.delivery_tag, multiple=True)

        def con():
            ch.basic_qos(prefetch_count=PREFETCH)
            tag = ch.basic_consume(q, on_message)
            process = conn.process_data_events
            while count < n:
                process(time_limit=DRAIN_TIMEOUT)
            ch.basic_cancel(tag)
        sample = _measure(n, con)
        results['consume'] = sample
        conn.close()

    def confirm(self, n, results):
        conn = self.connect()
        ch = conn.channel()
        q = self._queue(ch)
        ch.confirm_delivery()
        body = self.body

        def run():
            publish = ch.basic_publish
            for _ in range(n):
                publish('', q, body)
        sample = _measure(n, run)
        assert self._count(ch, q) == n
        results['confirm'] = sample
        conn.close()

    def get(self, n, results):
        conn = self.connect()
        ch = conn.channel()
        q = self._queue(ch)
        for _ in range(n):
            ch.basic_publish('', q, self.body)
        while self._count(ch, q) < n:
            time.sleep(0.001)
        got = 0

        def run():
            nonlocal got
            get = ch.basic_get
            for _ in range(n):
                if get(q, auto_ack=True)[0] is not None:
                    got += 1
        sample = _measure(n, run)
        assert got == n, got
        results['get'] = sample
        conn.close()


def run_worker(args):
    """Run every scenario once with one library; print JSON to stdout."""
    body = b'x' * args.size
    profiler = None
    if args.profile:
        import cProfile
        # CPU time by default: with the wall clock, every syscall that wakes
        # the broker on a 2-core machine is charged for the broker's work.
        timer = time.process_time if args.profile_timer == 'cpu' \
            else time.perf_counter
        profiler = {'publish': cProfile.Profile(timer),
                    'consume': cProfile.Profile(timer)}
    driver = (PikaDriver if args.worker == 'pika' else PyAmqpLike)(
        args.url, body, profiler)
    results = {}
    driver.publish_consume(args.n, results)
    if profiler:
        import pstats
        for phase in ('publish', 'consume'):
            print('== %s: cProfile (%s time) of %s, N=%d, top %d by '
                  'tottime ==' % (args.worker, args.profile_timer, phase,
                                  args.n, args.top), file=sys.stderr)
            pstats.Stats(profiler[phase], stream=sys.stderr).sort_stats(
                'tottime').print_stats(args.top)
        return
    driver.confirm(args.n_confirm, results)
    driver.get(args.n_get, results)
    mod = sys.modules['pika' if args.worker == 'pika' else 'amqp']
    json.dump({'library': args.worker, 'version': mod.__version__,
               'module': mod.__file__, 'python': platform.python_version(),
               'results': results}, sys.stdout)


# -- driver ----------------------------------------------------------------

def ensure_venv(venv):
    """Create ``venv`` with py-amqp 5.4.2 and pika 1.4.4 unless present."""
    python = os.path.join(venv, 'bin', 'python')
    check = ('import amqp, pika, sys; '
             'sys.exit(amqp.__version__ != "5.4.2" or '
             'pika.__version__ != "1.4.4")')
    env = _clean_env()
    if os.path.exists(python) and subprocess.call(
            [python, '-c', check], env=env, cwd='/') == 0:
        return python
    print('creating %s with %s' % (venv, ' '.join(VENV_REQUIREMENTS)),
          file=sys.stderr)
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, '-m', 'venv', venv])
    subprocess.check_call([python, '-m', 'pip', 'install', '-q']
                          + list(VENV_REQUIREMENTS), env=env)
    subprocess.check_call([python, '-c', check], env=env, cwd='/')
    return python


def _clean_env():
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    return env


def worker_command(lib, args, python_other):
    """(argv, env, cwd) for a worker running ``lib``."""
    argv = [__file__, '--worker', lib, '--url', args.url,
            '-n', str(args.n), '--n-confirm', str(args.n_confirm),
            '--n-get', str(args.n_get), '--size', str(args.size),
            '--top', str(args.top)]
    if args.profile:
        argv += ['--profile', '--profile-timer', args.profile_timer]
    env = _clean_env()
    if lib == 'ours':
        env['PYTHONPATH'] = REPO
        return [sys.executable] + argv, env, REPO
    # '/' as cwd and no PYTHONPATH: the venv's amqp, never ours.
    return [python_other] + argv, env, '/'


def run_one(lib, args, python_other):
    argv, env, cwd = worker_command(lib, args, python_other)
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    if done.returncode:
        raise SystemExit('worker %s failed (exit %d):\n%s' % (
            lib, done.returncode, done.stderr[-4000:]))
    if args.profile:
        return done.stderr
    return json.loads(done.stdout)


def summarise(runs):
    """Median per (library, scenario) over the repetitions."""
    table = {}
    for lib, reps in runs.items():
        table[lib] = {'version': reps[0]['version'],
                      'module': reps[0]['module'], 'scenarios': {}}
        for sc in SCENARIOS:
            samples = [r['results'][sc] for r in reps]
            n = samples[0]['n']
            rates = [s['n'] / s['wall'] for s in samples]
            cpus = [s['cpu'] / s['n'] * 1e6 for s in samples]
            table[lib]['scenarios'][sc] = {
                'n': n,
                'msgs_per_sec': statistics.median(rates),
                'cpu_us_per_msg': statistics.median(cpus),
                'user_us_per_msg': statistics.median(
                    s['user'] / s['n'] * 1e6 for s in samples),
                'sys_us_per_msg': statistics.median(
                    s['sys'] / s['n'] * 1e6 for s in samples),
                'msgs_per_sec_samples': rates,
                'cpu_us_per_msg_samples': cpus,
            }
    return table


def format_table(table, libs):
    head = '%-9s %6s' % ('scenario', 'N')
    for lib in libs:
        head += ' | %20s' % lib
    sub = '%-9s %6s' % ('', '')
    for lib in libs:
        sub += ' | %9s %10s' % ('msg/s', 'CPU us/msg')
    lines = [head, sub, '-' * len(sub)]
    for sc in SCENARIOS:
        n = table[libs[0]]['scenarios'][sc]['n']
        line = '%-9s %6d' % (sc, n)
        for lib in libs:
            cell = table[lib]['scenarios'][sc]
            line += ' | %9.0f %10.1f' % (cell['msgs_per_sec'],
                                         cell['cpu_us_per_msg'])
        lines.append(line)
    if 'ours' in libs:
        lines.append('')
        for lib in libs:
            if lib == 'ours':
                continue
            ratios = []
            for sc in SCENARIOS:
                ours = table['ours']['scenarios'][sc]['cpu_us_per_msg']
                other = table[lib]['scenarios'][sc]['cpu_us_per_msg']
                ratios.append('%s %.2fx' % (sc, other / ours))
            lines.append('CPU per message, %s / ours: %s'
                         % (lib, ', '.join(ratios)))
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--url', help='broker URL (default: start a throwaway '
                   'RabbitMQ with amqp._localbroker.LocalBroker)')
    p.add_argument('-n', type=int, default=20000,
                   help='messages for publish/consume (default 20000)')
    p.add_argument('--n-confirm', type=int, default=2000)
    p.add_argument('--n-get', type=int, default=2000)
    p.add_argument('--size', type=int, default=100, help='body bytes')
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--libs', default=','.join(LIBRARIES),
                   help='comma-separated subset of %s' % ','.join(LIBRARIES))
    p.add_argument('--venv', default=DEFAULT_VENV,
                   help='virtualenv holding py-amqp 5.4.2 and pika 1.4.4')
    p.add_argument('--json', metavar='FILE',
                   help="write results as JSON ('-' for stdout)")
    p.add_argument('--profile', action='store_true',
                   help='instead of the comparison, cProfile our client on '
                   'publish and consume (top --top functions by tottime)')
    p.add_argument('--top', type=int, default=10)
    p.add_argument('--profile-timer', choices=('cpu', 'wall'), default='cpu',
                   help='clock for --profile (default: process CPU time)')
    p.add_argument('--worker', choices=LIBRARIES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return run_worker(args)

    libs = ['ours'] if args.profile else [
        x.strip() for x in args.libs.split(',') if x.strip()]
    for lib in libs:
        if lib not in LIBRARIES:
            p.error('unknown library %r' % lib)
    python_other = None
    if set(libs) - {'ours'}:
        python_other = ensure_venv(args.venv)

    broker = None
    if not args.url:
        sys.path.insert(0, REPO)
        from amqp._localbroker import LocalBroker
        print('starting a throwaway RabbitMQ...', file=sys.stderr)
        broker = LocalBroker().start()
        args.url = broker.url
    try:
        if args.profile:
            print(run_one('ours', args, python_other))
            return
        t0 = time.perf_counter()
        runs = {lib: [] for lib in libs}
        for rep in range(args.repeat):
            for lib in libs:
                print('run %d/%d: %s' % (rep + 1, args.repeat, lib),
                      file=sys.stderr)
                runs[lib].append(run_one(lib, args, python_other))
        elapsed = time.perf_counter() - t0
    finally:
        if broker is not None:
            broker.stop()

    table = summarise(runs)
    print(format_table(table, libs))
    print('\nmedian of %d runs; %.0f s of benchmarking; body %d bytes; '
          'python %s; %d CPUs' % (args.repeat, elapsed, args.size,
                                  platform.python_version(),
                                  os.cpu_count() or 0))
    if args.json:
        doc = {'python': platform.python_version(),
               'platform': platform.platform(), 'cpus': os.cpu_count(),
               'repeat': args.repeat, 'size': args.size,
               'prefetch': PREFETCH, 'ack_every': ACK_EVERY,
               'broker': 'local' if broker is not None else 'url',
               'libraries': table}
        if args.json == '-':
            json.dump(doc, sys.stdout, indent=2)
        else:
            with open(args.json, 'w') as f:
                json.dump(doc, f, indent=2)


if __name__ == '__main__':
    sys.exit(main())
