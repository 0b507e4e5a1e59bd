"""End-to-end benchmark: this package, py-amqp 5.4.2 and pika 1.4.4 against
one RabbitMQ, side by side in one run, with floors that show what moving
the same bytes costs without a client library.

    python bench/e2e.py                       # starts a throwaway broker
    python bench/e2e.py --url amqp://guest:guest@127.0.0.1:5672//
    python bench/e2e.py --json results.json --rst table.rst
    python bench/e2e.py --strace              # system calls per round trip
    python bench/e2e.py --profile             # cProfile our client only

Every library runs in a worker process of its own (this script with
``--worker LIB``), so the client CPU time it reports (``getrusage`` of the
worker process: user + system) excludes the broker and the other libraries.
py-amqp and pika run from a separate virtualenv (``--venv``, default
/tmp/bench-pyamqp, created on demand with ``amqp==5.4.2 pika==1.4.4``) with
this repository off ``sys.path``; ours runs with the repository first on
``PYTHONPATH``.  The ``floor`` worker (bench/floors.py) opens its
connection with this package and then writes and reads pre-encoded frames
on the bare socket.

Scenarios, each on a fresh connection and exclusive server-named queue
(N, SIZE, N_BIG, BIG_SIZE from the options):

publish      N messages of SIZE bytes to the default exchange, no
             confirms; wall time runs until the broker reports all N in the
             queue (queue.declare passive), CPU time covers the loop only.
consume      basic.qos(prefetch 1000), basic.consume, drain until N
             delivered, basic.ack multiple=True every 100th message.
consume_ack  the same with prefetch 500 and one basic.ack per message.
confirm      publisher confirms, wait for each message's ack (N_CONFIRM).
get          basic.get round trips with no_ack on a pre-filled queue
             (N_GET).
pipelined    (ours only) confirm_select(), N publishes with
             wait_for_confirms() after every 1000; wall and CPU to the
             last confirm.  Checked: no publish nacked, returned or left
             unconfirmed, queue depth N.
publish_1mb  N_BIG publishes of BIG_SIZE bytes.
consume_1mb  N_BIG deliveries of BIG_SIZE bytes, prefetch 16, one
             basic.ack per message.

Floors (the ``floor`` column): publish, consume_ack, publish_1mb and
consume_1mb, described in bench/floors.py.  The protocol floor (the
``minimal`` column, bench/minimal.py): the least a correct pure-Python
client does per message (encode the caller's arguments, parse every frame,
hand out ``bytes`` bodies), for publish, consume_ack, confirm, get and
consume_1mb; where even it misses a target, the target is out of reach
of pure Python.

Each worker runs every scenario once; workers run ``--repeat`` times,
interleaved across libraries, and the table shows the median per cell.
"""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from urllib.parse import unquote, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_VENV = '/tmp/bench-pyamqp'
#: py-amqp 5.4.2 built with its Cython speedups (CELERY_ENABLE_SPEEDUPS)
DEFAULT_CYTHON_VENV = '/tmp/bench-pyamqp-cython'
VENV_REQUIREMENTS = ('amqp==5.4.2', 'pika==1.4.4')
#: ours: with the compiled module where it is built; ours-pure: the same
#: checkout with AMQP_NO_SPEEDUPS=1
LIBRARIES = ('ours', 'ours-pure', 'before', 'py-amqp', 'py-amqp-cython',
             'pika', 'minimal', 'floor')
SCENARIOS = ('publish', 'consume', 'consume_ack', 'confirm', 'get',
             'pipelined', 'publish_1mb', 'consume_1mb')
#: what each worker can run; the others show n/a
SUPPORTED = {
    'ours': SCENARIOS,
    # this package from another checkout (--before PATH): a change's cost
    # measured in the same run as the change
    'before': SCENARIOS,
    'ours-pure': SCENARIOS,
    'py-amqp': tuple(s for s in SCENARIOS if s != 'pipelined'),
    'py-amqp-cython': tuple(s for s in SCENARIOS if s != 'pipelined'),
    'pika': tuple(s for s in SCENARIOS if s != 'pipelined'),
    'floor': ('publish', 'consume_ack', 'publish_1mb', 'consume_1mb'),
    'minimal': ('publish', 'consume_ack', 'confirm', 'get', 'pipelined',
                'consume_1mb'),
}
#: what the floor of each scenario is called in the table
FLOOR_NAMES = {'publish': 'pure-Python', 'consume_ack': 'pure-Python',
               'publish_1mb': 'raw socket', 'consume_1mb': 'raw socket'}
ROUND_TRIPS = ('get', 'confirm')
PREFETCH = 1000
ACK_EVERY = 100
PREFETCH_ACK = 500
PREFETCH_BIG = 16
WINDOW = 1000
DRAIN_TIMEOUT = 30.0
CONFIRM_TIMEOUT = 60.0
#: issue 11's targets, checked in the summary under the table
PIPELINED_TARGET = 0.80
FLOOR_TARGET = 1.3
ROUND_TRIP_USER_TARGET = 10.0
MARK = b'@@bench '


def parse_url(url):
    """Return (host, port, userid, password, vhost) from an amqp:// URL;
    the path '/' or '//' both mean the vhost '/'."""
    u = urlparse(url)
    vhost = unquote(u.path[1:]) if u.path[1:] else '/'
    return (u.hostname or '127.0.0.1', u.port or 5672,
            unquote(u.username or 'guest'), unquote(u.password or 'guest'),
            vhost)


# -- workers ---------------------------------------------------------------
# Each scenario returns {'n', 'wall', 'cpu', 'user', 'sys'} in seconds.

def _usage():
    """(user, system) CPU seconds and minor page faults of this process
    so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime, ru.ru_minflt


def _sample(n, start, c1):
    """A result record from a Clock.start() token and a Clock.stop()
    reading; wall time ends now."""
    c0, w0 = start
    wall = time.perf_counter() - w0
    user, system = c1[0] - c0[0], c1[1] - c0[1]
    return dict(n=n, wall=wall, cpu=user + system, user=user, sys=system,
                minflt=c1[2] - c0[2])


class Clock:
    """Starts and stops the timed part of a scenario: CPU and wall
    readings, the optional profiler, and the markers ``--strace`` finds
    in the system-call trace (a write to /dev/null before and after)."""

    def __init__(self, profilers=None, markers=False):
        self.profilers = profilers or {}
        self.marker_fd = os.open(os.devnull, os.O_WRONLY) if markers \
            else None

    def start(self, name):
        if self.marker_fd is not None:
            os.write(self.marker_fd, MARK + b'begin ' + name.encode())
        prof = self.profilers.get(name)
        if prof:
            prof.enable()
        return _usage(), time.perf_counter()

    def stop(self, name):
        c1 = _usage()
        prof = self.profilers.get(name)
        if prof:
            prof.disable()
        if self.marker_fd is not None:
            os.write(self.marker_fd, MARK + b'end ' + name.encode())
        return c1

    #: the result record of a start() token and a stop() reading
    sample = staticmethod(_sample)


class PyAmqpLike:
    """Drives this package or py-amqp: the two share one API."""

    def __init__(self, url, clock):
        import amqp
        self.amqp = amqp
        host, port, user, password, vhost = parse_url(url)
        self.params = dict(host='%s:%d' % (host, port), userid=user,
                           password=password, virtual_host=vhost,
                           heartbeat=0)
        self.clock = clock

    def connect(self, **kwargs):
        conn = self.amqp.Connection(**dict(self.params, **kwargs))
        conn.connect()
        return conn

    def _setup(self, **kwargs):
        conn = self.connect(**kwargs)
        ch = conn.channel()
        return conn, ch, ch.queue_declare('', exclusive=True)[0]

    def _count(self, ch, q):
        return ch.queue_declare(q, passive=True)[1]

    def _fill(self, ch, q, n, body):
        msg = self.amqp.Message(body)
        for _ in range(n):
            ch.basic_publish(msg, '', q)
        while self._count(ch, q) < n:
            time.sleep(0.001)

    def publish(self, name, n, body):
        conn, ch, q = self._setup()
        msg = self.amqp.Message(body)
        publish = ch.basic_publish
        start = self.clock.start(name)
        for _ in range(n):
            publish(msg, '', q)
        c1 = self.clock.stop(name)
        while self._count(ch, q) < n:
            time.sleep(0.001)
        sample = _sample(n, start, c1)
        conn.close()
        return sample

    def consume(self, name, n, body, prefetch, ack_every):
        """Consume n queued messages; ack every ``ack_every``th with
        multiple=True (1: each message on its own)."""
        conn, ch, q = self._setup()
        self._fill(ch, q, n, body)
        size = len(body)
        count = 0
        ack = ch.basic_ack

        def on_message(m):
            nonlocal count
            count += 1
            if count % ack_every == 0 or count == n:
                ack(m.delivery_info['delivery_tag'], multiple=True)

        def on_message_ack_each(m):
            nonlocal count
            count += 1
            ack(m.delivery_info['delivery_tag'])

        last = []

        def on_big_message(m):
            nonlocal count
            count += 1
            ack(m.delivery_info['delivery_tag'])
            if count == n:
                last.append(len(m.body))

        callback = on_big_message if size > 65536 else \
            on_message_ack_each if ack_every == 1 else on_message
        drain = conn.drain_events
        start = self.clock.start(name)
        ch.basic_qos(0, prefetch, False)
        tag = ch.basic_consume(q, callback=callback)
        while count < n:
            drain(timeout=DRAIN_TIMEOUT)
        c1 = self.clock.stop(name)
        sample = _sample(n, start, c1)
        assert not last or last[0] == size, (last, size)
        ch.basic_cancel(tag)
        conn.close()
        return sample

    def confirm(self, name, n, body):
        conn, ch, q = self._setup(confirm_publish=True)
        msg = self.amqp.Message(body)
        # the first publish sends confirm.select (both libraries do)
        publish = ch.basic_publish
        start = self.clock.start(name)
        for _ in range(n):
            publish(msg, '', q)
        c1 = self.clock.stop(name)
        sample = _sample(n, start, c1)
        assert self._count(ch, q) == n
        conn.close()
        return sample

    def get(self, name, n, body):
        conn, ch, q = self._setup()
        self._fill(ch, q, n, body)
        got = 0
        get = ch.basic_get
        start = self.clock.start(name)
        for _ in range(n):
            if get(q, no_ack=True) is not None:
                got += 1
        c1 = self.clock.stop(name)
        sample = _sample(n, start, c1)
        assert got == n, got
        conn.close()
        return sample

    def pipelined(self, name, n, body, window):
        """Publish in confirm mode, waiting for all confirms every
        ``window`` publishes; check that nothing was lost."""
        from amqp.exceptions import PublishConfirmError
        conn, ch, q = self._setup()
        ch.confirm_select()
        msg = self.amqp.Message(body)
        publish, wait = ch.basic_publish, ch.wait_for_confirms
        failed = []
        start = self.clock.start(name)
        for i in range(1, n + 1):
            publish(msg, '', q)
            if i % window == 0 or i == n:
                try:
                    wait(CONFIRM_TIMEOUT)
                except PublishConfirmError as exc:
                    failed.append((exc.nacked, exc.returned,
                                   exc.unconfirmed))
        c1 = self.clock.stop(name)
        sample = _sample(n, start, c1)
        sample['failed'] = failed
        sample['unsettled'] = len(ch._confirms.unsettled)
        sample['depth'] = self._count(ch, q)
        conn.close()
        if failed or sample['unsettled'] or sample['depth'] != n:
            raise SystemExit('pipelined: lost publishes: %r' % (sample,))
        return sample


class PikaDriver:
    """Drives pika's BlockingConnection."""

    def __init__(self, url, clock):
        import pika
        self.pika = pika
        host, port, user, password, vhost = parse_url(url)
        self.params = pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost, heartbeat=0,
            credentials=pika.PlainCredentials(user, password))
        self.clock = clock

    def _setup(self):
        conn = self.pika.BlockingConnection(self.params)
        ch = conn.channel()
        return conn, ch, ch.queue_declare('', exclusive=True).method.queue

    def _count(self, ch, q):
        return ch.queue_declare(q, passive=True).method.message_count

    def _fill(self, ch, q, n, body):
        for _ in range(n):
            ch.basic_publish('', q, body)
        while self._count(ch, q) < n:
            time.sleep(0.001)

    def publish(self, name, n, body):
        conn, ch, q = self._setup()
        publish = ch.basic_publish
        start = self.clock.start(name)
        for _ in range(n):
            publish('', q, body)
        c1 = self.clock.stop(name)
        while self._count(ch, q) < n:
            time.sleep(0.001)
        sample = _sample(n, start, c1)
        conn.close()
        return sample

    def consume(self, name, n, body, prefetch, ack_every):
        conn, ch, q = self._setup()
        self._fill(ch, q, n, body)
        size = len(body)
        count = 0

        def on_message(channel, method, properties, body):
            nonlocal count
            count += 1
            if count % ack_every == 0 or count == n:
                channel.basic_ack(method.delivery_tag, multiple=True)

        def on_message_ack_each(channel, method, properties, body):
            nonlocal count
            count += 1
            channel.basic_ack(method.delivery_tag)

        last = []

        def on_big_message(channel, method, properties, body):
            nonlocal count
            count += 1
            channel.basic_ack(method.delivery_tag)
            if count == n:
                last.append(len(body))

        callback = on_big_message if size > 65536 else \
            on_message_ack_each if ack_every == 1 else on_message
        process = conn.process_data_events
        start = self.clock.start(name)
        ch.basic_qos(prefetch_count=prefetch)
        tag = ch.basic_consume(q, callback)
        while count < n:
            process(time_limit=DRAIN_TIMEOUT)
        c1 = self.clock.stop(name)
        sample = _sample(n, start, c1)
        assert not last or last[0] == size, (last, size)
        ch.basic_cancel(tag)
        conn.close()
        return sample

    def confirm(self, name, n, body):
        conn, ch, q = self._setup()
        ch.confirm_delivery()
        publish = ch.basic_publish
        start = self.clock.start(name)
        for _ in range(n):
            publish('', q, body)
        c1 = self.clock.stop(name)
        sample = _sample(n, start, c1)
        assert self._count(ch, q) == n
        conn.close()
        return sample

    def get(self, name, n, body):
        conn, ch, q = self._setup()
        self._fill(ch, q, n, body)
        got = 0
        get = ch.basic_get
        start = self.clock.start(name)
        for _ in range(n):
            if get(q, auto_ack=True)[0] is not None:
                got += 1
        c1 = self.clock.stop(name)
        sample = _sample(n, start, c1)
        assert got == n, got
        conn.close()
        return sample


class FloorDriver:
    """The floors of bench/floors.py, set up with this package."""

    def __init__(self, url, clock):
        import floors
        self.floors = floors
        self.ours = PyAmqpLike(url, Clock())
        self.clock = clock

    def _floor(self):
        return self.floors.Floor(self.ours.connect)

    def publish(self, name, n, body):
        f = self._floor()
        sample = f.publish(n, body, name, self.clock)
        f.close()
        return sample

    def fill(self, f, n, body):
        f.publish(n, body, 'fill', Clock())  # not timed

    def consume(self, name, n, body, prefetch, ack_every):
        f = self._floor()
        self.fill(f, n, body)
        # (the clients' consume_1mb acks each message too)
        sample = f.consume_ack(n, len(body), prefetch, name, self.clock)
        f.close()
        return sample


class MinimalDriver(FloorDriver):
    """The protocol floor of bench/minimal.py."""

    def fill(self, f, n, body):
        """Queue n messages, untimed, with the floor's pre-encoded
        frames (the protocol floor's publish does not split bodies)."""
        self.floors.Floor.publish(f, n, body, 'fill', Clock())

    def _floor(self):
        import minimal
        return minimal.Minimal(self.ours.connect)

    def consume(self, name, n, body, prefetch, ack_every):
        if name != 'consume_1mb':
            return super().consume(name, n, body, prefetch, ack_every)
        f = self._floor()
        self.fill(f, n, body)
        sample = f.consume_1mb(n, len(body), prefetch, name, self.clock)
        f.close()
        return sample

    def get(self, name, n, body):
        f = self._floor()
        self.fill(f, n, body)
        sample = f.get(n, name, self.clock)
        f.close()
        return sample

    def confirm(self, name, n, body):
        f = self._floor()
        sample = f.confirm(n, body, name, self.clock)
        f.close()
        return sample

    def pipelined(self, name, n, body, window):
        f = self._floor()
        sample = f.pipelined(n, body, window, name, self.clock)
        f.close()
        return sample


def run_worker(args):
    """Run the chosen scenarios once with one library; print JSON to
    stdout (or the profile to stderr)."""
    small = b'x' * args.size
    big = b'x' * args.big_size
    scenarios = _scenarios(args.scenarios, args.worker)
    profilers = None
    if args.profile:
        import cProfile
        # CPU time by default: with the wall clock, every syscall that wakes
        # the broker on a 2-core machine is charged for the broker's work.
        timer = time.process_time if args.profile_timer == 'cpu' \
            else time.perf_counter
        profilers = {sc: cProfile.Profile(timer) for sc in scenarios}
    clock = Clock(profilers, markers=args.markers)
    if args.worker in ('floor', 'minimal'):
        sys.path.insert(0, HERE)
        driver = (FloorDriver if args.worker == 'floor' else
                  MinimalDriver)(args.url, clock)
    elif args.worker == 'pika':
        driver = PikaDriver(args.url, clock)
    else:
        driver = PyAmqpLike(args.url, clock)
    plan = {
        'publish': lambda: driver.publish('publish', args.n, small),
        'consume': lambda: driver.consume('consume', args.n, small,
                                          PREFETCH, ACK_EVERY),
        'consume_ack': lambda: driver.consume('consume_ack', args.n, small,
                                              PREFETCH_ACK, 1),
        'confirm': lambda: driver.confirm('confirm', args.n_confirm, small),
        'get': lambda: driver.get('get', args.n_get, small),
        'pipelined': lambda: driver.pipelined('pipelined', args.n, small,
                                              WINDOW),
        'publish_1mb': lambda: driver.publish('publish_1mb', args.n_big,
                                              big),
        'consume_1mb': lambda: driver.consume('consume_1mb', args.n_big,
                                              big, PREFETCH_BIG, 1),
    }
    results = {sc: plan[sc]() for sc in scenarios}
    if profilers:
        import pstats
        for sc in scenarios:
            print('== %s: cProfile (%s time) of %s, N=%d, top %d by '
                  'tottime ==' % (args.worker, args.profile_timer, sc,
                                  results[sc]['n'], args.top),
                  file=sys.stderr)
            pstats.Stats(profilers[sc], stream=sys.stderr).sort_stats(
                'tottime').print_stats(args.top)
        return
    mod = sys.modules['pika' if args.worker == 'pika' else 'amqp']
    json.dump({'library': args.worker, 'version': mod.__version__,
               'module': mod.__file__, 'python': platform.python_version(),
               'speedups': getattr(mod, 'SPEEDUPS', None),
               'results': results}, sys.stdout)


def _scenarios(spec, lib=None):
    """The scenarios named in ``spec`` (comma-separated) that ``lib``
    supports, in table order."""
    wanted = [s.strip() for s in spec.split(',') if s.strip()]
    for s in wanted:
        if s not in SCENARIOS:
            raise SystemExit('unknown scenario %r (known: %s)'
                             % (s, ', '.join(SCENARIOS)))
    return [s for s in SCENARIOS
            if s in wanted and (lib is None or s in SUPPORTED[lib])]


# -- driver ----------------------------------------------------------------

def _ensure(venv, check, what, installs):
    """The python of ``venv``, made with ``installs`` (a list of (pip
    arguments, extra environment)) unless ``check`` already passes
    there."""
    python = os.path.join(venv, 'bin', 'python')
    env = _clean_env()
    if os.path.exists(python) and subprocess.call(
            [python, '-c', check], env=env, cwd='/') == 0:
        return python
    print('creating %s: %s' % (venv, what), file=sys.stderr)
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, '-m', 'venv', venv])
    for pip_args, extra in installs:
        subprocess.check_call([python, '-m', 'pip', 'install', '-q']
                              + pip_args, env=dict(env, **extra))
    subprocess.check_call([python, '-c', check], env=env, cwd='/')
    return python


def ensure_venv(venv):
    """Create ``venv`` with py-amqp 5.4.2 and pika 1.4.4 unless present."""
    return _ensure(venv, 'import amqp, pika, sys; '
                   'sys.exit(amqp.__version__ != "5.4.2" or '
                   'pika.__version__ != "1.4.4")',
                   ' '.join(VENV_REQUIREMENTS),
                   [(list(VENV_REQUIREMENTS), {})])


def ensure_cython_venv(venv):
    """Create ``venv`` with py-amqp 5.4.2 built from source with its
    Cython speedups (its setup.py compiles five modules when
    CELERY_ENABLE_SPEEDUPS is set) unless present."""
    return _ensure(venv, 'import amqp, amqp.serialization as s, sys; '
                   'sys.exit(amqp.__version__ != "5.4.2" or '
                   'not s.__file__.endswith(".so"))',
                   'py-amqp 5.4.2 built with Cython',
                   [(['cython', 'setuptools', 'wheel', 'vine'], {}),
                    (['--no-build-isolation', '--no-binary', 'amqp',
                      '--force-reinstall', '--no-deps', 'amqp==5.4.2'],
                     {'CELERY_ENABLE_SPEEDUPS': '1'})])


def start_broker(args):
    """Start a throwaway RabbitMQ unless ``args.url`` names one; set
    ``args.url``; return the broker to stop (or None)."""
    if args.url:
        return None
    sys.path.insert(0, REPO)
    from amqp.cli.localbroker import LocalBroker
    print('starting a throwaway RabbitMQ...', file=sys.stderr)
    broker = LocalBroker().start()
    args.url = broker.url
    return broker


def _clean_env():
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    return env


def worker_command(lib, args, python_other, scenarios, markers=False):
    """(argv, env, cwd) for a worker running ``lib``."""
    argv = [os.path.abspath(__file__), '--worker', lib, '--url', args.url,
            '-n', str(args.n), '--n-confirm', str(args.n_confirm),
            '--n-get', str(args.n_get), '--n-big', str(args.n_big),
            '--size', str(args.size), '--big-size', str(args.big_size),
            '--scenarios', ','.join(scenarios), '--top', str(args.top)]
    if args.profile:
        argv += ['--profile', '--profile-timer', args.profile_timer]
    if markers:
        argv.append('--markers')
    env = _clean_env()
    env.pop('AMQP_NO_SPEEDUPS', None)
    if lib in ('ours', 'ours-pure', 'floor', 'minimal'):
        env['PYTHONPATH'] = REPO
        if lib == 'ours-pure':
            env['AMQP_NO_SPEEDUPS'] = '1'
        return [sys.executable] + argv, env, REPO
    if lib == 'py-amqp-cython':
        return [args.python_cython] + argv, env, '/'
    if lib == 'before':
        env['PYTHONPATH'] = args.before
        return [sys.executable] + argv, env, args.before
    # '/' as cwd and no PYTHONPATH: the venv's amqp, never ours.
    return [python_other] + argv, env, '/'


def run_one(lib, args, python_other, scenarios, prefix=(), markers=False):
    argv, env, cwd = worker_command(lib, args, python_other, scenarios,
                                    markers)
    done = subprocess.run(list(prefix) + argv, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise SystemExit('worker %s failed (exit %d):\n%s' % (
            lib, done.returncode, done.stderr[-4000:]))
    if args.profile:
        return done.stderr
    result = json.loads(done.stdout)
    home = {'ours': REPO, 'ours-pure': REPO, 'before': args.before}.get(lib)
    if lib in ('ours', 'ours-pure') and \
            result.get('speedups') is not (lib == 'ours'):
        if lib == 'ours-pure' or args.require_speedups:
            raise SystemExit('worker %s ran with the compiled module %s'
                             % (lib, 'on' if result.get('speedups')
                                else 'off'))
    if home and not result['module'].startswith(home + os.sep):
        raise SystemExit('worker %s imported %s, not the package in %s'
                         % (lib, result['module'], home))
    return result


def summarise(runs):
    """Median per (library, scenario) over the repetitions."""
    table = {}
    for lib, reps in runs.items():
        table[lib] = {'version': reps[0]['version'],
                      'module': reps[0]['module'], 'scenarios': {}}
        for sc in SCENARIOS:
            if sc not in reps[0]['results']:
                continue
            samples = [r['results'][sc] for r in reps]
            rates = [s['n'] / s['wall'] for s in samples]
            cpus = [s['cpu'] / s['n'] * 1e6 for s in samples]
            table[lib]['scenarios'][sc] = {
                'n': samples[0]['n'],
                'msgs_per_sec': statistics.median(rates),
                'cpu_us_per_msg': statistics.median(cpus),
                'user_us_per_msg': statistics.median(
                    s['user'] / s['n'] * 1e6 for s in samples),
                'sys_us_per_msg': statistics.median(
                    s['sys'] / s['n'] * 1e6 for s in samples),
                'minflt_per_msg': statistics.median(
                    s['minflt'] / s['n'] for s in samples),
                'msgs_per_sec_samples': rates,
                'cpu_us_per_msg_samples': cpus,
            }
    for lib, reps in runs.items():
        if 'pipelined' not in reps[0]['results'] or \
                'publish' not in reps[0]['results']:
            continue
        # each worker ran both, so each repetition gives one ratio
        ratios = [_rate(r['results']['pipelined']) /
                  _rate(r['results']['publish']) for r in reps]
        table[lib]['pipelined_ratio'] = statistics.median(ratios)
        table[lib]['pipelined_ratio_samples'] = ratios
    return table


def _rate(sample):
    return sample['n'] / sample['wall']


def _cell(table, lib, sc):
    return table.get(lib, {}).get('scenarios', {}).get(sc)


def ratios(table, sc):
    """{'floor': ours/floor, 'py-amqp': py-amqp/ours, 'pika': pika/ours}
    of CPU per message, where both cells exist."""
    ours = _cell(table, 'ours', sc)
    out = {}
    if not ours:
        return out
    before = _cell(table, 'before', sc)
    if before:
        out['before'] = ours['cpu_us_per_msg'] / before['cpu_us_per_msg']
    pure = _cell(table, 'ours-pure', sc)
    if pure:
        out['pure'] = ours['cpu_us_per_msg'] / pure['cpu_us_per_msg']
    floor = _cell(table, 'floor', sc)
    if floor:
        out['floor'] = ours['cpu_us_per_msg'] / floor['cpu_us_per_msg']
    minimal = _cell(table, 'minimal', sc)
    if minimal:
        out['minimal'] = ours['cpu_us_per_msg'] / minimal['cpu_us_per_msg']
        if floor:
            out['minimal_floor'] = minimal['cpu_us_per_msg'] / \
                floor['cpu_us_per_msg']
    for lib in OTHERS:
        other = _cell(table, lib, sc)
        if other:
            out[lib] = other['cpu_us_per_msg'] / ours['cpu_us_per_msg']
    return out


#: the other libraries, whose CPU is given as a multiple of ours
OTHERS = ('py-amqp', 'py-amqp-cython', 'pika')


def format_table(table, libs, scenarios):
    """Plain text: msg/s and CPU us per message per library, then the
    ratios of CPU per message."""
    head = '%-11s %6s' % ('scenario', 'N')
    sub = '%-11s %6s' % ('', '')
    for lib in libs:
        head += ' | %17s' % lib
        sub += ' | %8s %8s' % ('msg/s', 'CPU us')
    if 'ours' in libs:
        head += ' | %-24s' % 'CPU ratios'
        sub += ' | %-24s' % ''
    lines = [head, sub, '-' * len(sub)]
    for sc in scenarios:
        n = next(_cell(table, lib, sc)['n'] for lib in libs
                 if _cell(table, lib, sc))
        line = '%-11s %6d' % (sc, n)
        for lib in libs:
            cell = _cell(table, lib, sc)
            if cell:
                line += ' | %8.0f %8.1f' % (cell['msgs_per_sec'],
                                            cell['cpu_us_per_msg'])
            else:
                line += ' | %8s %8s' % ('n/a', 'n/a')
        r = ratios(table, sc)
        if 'ours' in libs and r:
            parts = []
            if 'before' in r:
                parts.append('ours/before %.2f' % r['before'])
            if 'pure' in r:
                parts.append('ours/pure %.2f' % r['pure'])
            if 'floor' in r:
                parts.append('ours/floor %.2f' % r['floor'])
            if 'minimal' in r:
                parts.append('ours/minimal %.2f' % r['minimal'])
            others = ['%s %.1fx' % (lib, r[lib])
                      for lib in OTHERS if lib in r]
            parts += others
            line += ' | ' + ', '.join(parts)
        lines.append(line)
    lines.append('')
    lines.append('CPU us = client CPU (user + system) microseconds per '
                 'message; "py-amqp 4.0x" = py-amqp uses 4.0x our CPU.')
    lines.append('floor: ' + ', '.join(
        '%s = %s' % (sc, FLOOR_NAMES[sc]) for sc in scenarios
        if sc in FLOOR_NAMES))
    return '\n'.join(lines)


def format_rst(table, libs, scenarios):
    """The same table in reStructuredText, for docs/benchmarks.rst."""
    cols = ['scenario', 'N']
    for lib in libs:
        cols += ['%s msg/s' % lib, '%s CPU us' % lib]
    if 'floor' in libs:
        cols.append('ours / floor')
    if 'minimal' in libs:
        cols.append('ours / minimal')
    if 'ours-pure' in libs:
        cols.append('ours / ours-pure')
    for lib in OTHERS:
        if lib in libs:
            cols.append('%s / ours' % lib)
    rows = []
    for sc in scenarios:
        n = next(_cell(table, lib, sc)['n'] for lib in libs
                 if _cell(table, lib, sc))
        row = [sc, str(n)]
        for lib in libs:
            cell = _cell(table, lib, sc)
            row += ['%.0f' % cell['msgs_per_sec'],
                    '%.1f' % cell['cpu_us_per_msg']] if cell \
                else ['n/a', 'n/a']
        r = ratios(table, sc)
        if 'floor' in libs:
            row.append('%.2f' % r['floor'] if 'floor' in r else '')
        if 'minimal' in libs:
            row.append('%.2f' % r['minimal'] if 'minimal' in r else '')
        if 'ours-pure' in libs:
            row.append('%.2f' % r['pure'] if 'pure' in r else '')
        for lib in OTHERS:
            if lib in libs:
                row.append('%.1fx' % r[lib] if lib in r else '')
        rows.append(row)
    widths = [max(len(c), *(len(r[i]) for r in rows))
              for i, c in enumerate(cols)]
    rule = '  '.join('=' * w for w in widths)
    fmt = '  '.join('%%-%ds' % w for w in widths)
    out = [rule, (fmt % tuple(cols)).rstrip(), rule]
    out += [(fmt % tuple(r)).rstrip() for r in rows]
    out.append(rule)
    return '\n'.join(out)


def targets(table):
    """Lines checking issue 11's targets against the table."""
    lines = []
    ours = table.get('ours', {})
    for sc in ('publish', 'consume_ack', 'publish_1mb', 'consume_1mb'):
        rs = ratios(table, sc)
        r = rs.get('floor')
        if r is not None:
            line = '%-11s ours/floor %.2f (target <= %.1f): %s' % (
                sc, r, FLOOR_TARGET, 'met' if r <= FLOOR_TARGET
                else 'MISSED')
            m = rs.get('minimal_floor')
            if m is not None:
                line += '; protocol floor/floor %.2f (%s in pure Python)' \
                    % (m, 'reachable' if m <= FLOOR_TARGET
                       else 'out of reach')
            lines.append(line)
    if 'pipelined_ratio' in ours:
        r = ours['pipelined_ratio']
        pip = ours['scenarios']['pipelined']
        pub = ours['scenarios']['publish']
        lines.append(
            'pipelined   %.0f msg/s confirmed = %.0f%% of unconfirmed '
            'publish (%.0f msg/s), median of per-run ratios (target >= '
            '%.0f%%): %s; nothing lost' % (
                pip['msgs_per_sec'], r * 100, pub['msgs_per_sec'],
                PIPELINED_TARGET * 100,
                'met' if r >= PIPELINED_TARGET else 'MISSED'))
        m = table.get('minimal', {}).get('pipelined_ratio')
        if m is not None:
            lines[-1] += '; protocol floor %.0f%%' % (m * 100)
    big = [(lib, _cell(table, lib, 'consume_1mb')) for lib in LIBRARIES]
    big = [(lib, cell) for lib, cell in big if cell]
    if big:
        lines.append('consume_1mb minor page faults per message: ' + ', '.join(
            '%s %.0f' % (lib, cell['minflt_per_msg']) for lib, cell in big))
    for sc in ROUND_TRIPS:
        cell = _cell(table, 'ours', sc)
        if cell:
            u = cell['user_us_per_msg']
            line = ('%-11s %.1f us user CPU per round trip (target <= '
                    '%.0f): %s' % (sc, u, ROUND_TRIP_USER_TARGET,
                                   'met' if u <= ROUND_TRIP_USER_TARGET
                                   else 'MISSED'))
            m = _cell(table, 'minimal', sc)
            if m:
                line += '; protocol floor %.1f us user, %.1f us CPU' % (
                    m['user_us_per_msg'], m['cpu_us_per_msg'])
            lines.append(line)
    lines += speedups_targets(table)
    return lines


#: issue 19's targets for the compiled module, CPU per message:
#: (scenario, measured against, ratio ours/other, at most or at least)
SPEEDUPS_TARGETS = (
    ('consume_ack', 'ours-pure', 0.5, 'max'),
    ('publish', 'ours-pure', 0.5, 'max'),
    ('get', 'py-amqp', 0.5, 'max'),
    ('confirm', 'py-amqp', 0.5, 'max'),
    ('consume_1mb', 'floor', 1.1, 'max'),
    ('publish_1mb', 'floor', 1.2, 'max'),
)


def speedups_targets(table):
    """Lines checking issue 19's targets (when ours-pure ran)."""
    if 'ours-pure' not in table or 'ours' not in table:
        return []
    lines = ['issue 19 (compiled module), CPU per message:']
    for sc, other, limit, _kind in SPEEDUPS_TARGETS:
        ours, them = _cell(table, 'ours', sc), _cell(table, other, sc)
        if not ours or not them:
            continue
        r = ours['cpu_us_per_msg'] / them['cpu_us_per_msg']
        lines.append('  %-11s ours/%s %.2f (target <= %.1f): %s' % (
            sc, other, r, limit, 'met' if r <= limit else
            'MISSED by %.0f%%' % ((r / limit - 1) * 100)))
    slower = [sc for sc in SCENARIOS
              if _cell(table, 'ours', sc) and _cell(table, 'ours-pure', sc)
              and _cell(table, 'ours', sc)['cpu_us_per_msg'] >
              _cell(table, 'ours-pure', sc)['cpu_us_per_msg']]
    lines.append('  slower than the pure path: %s' % (
        ', '.join(slower) if slower else 'nothing'))
    return lines


# -- system calls per round trip (--strace) ---------------------------------

SEND_CALLS = frozenset(('sendto', 'sendmsg', 'sendmmsg', 'send', 'write',
                        'writev', 'pwrite64'))
RECV_CALLS = frozenset(('recvfrom', 'recvmsg', 'recvmmsg', 'recv', 'read',
                        'readv', 'pread64'))
POLL_CALLS = frozenset(('poll', 'ppoll', 'select', 'pselect6', 'epoll_wait',
                        'epoll_pwait', 'epoll_pwait2'))
_STRACE_LINE = re.compile(r'^(?:\[pid\s+)?(\d+\]?\s+)?(\w+)\((.*)$')


def ensure_strace():
    """The strace binary; installs Debian's package when it is missing."""
    path = shutil.which('strace')
    if path:
        return path
    print('strace missing: apt-get install strace', file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ['sudo']
    subprocess.check_call(sudo + ['apt-get', 'install', '-y', '-q',
                                  'strace'])
    return shutil.which('strace') or '/usr/bin/strace'


def count_syscalls(lines):
    """{scenario: {syscall: count}} between the markers Clock writes."""
    counts = {}
    current = None
    mark = MARK.decode()
    for line in lines:
        m = _STRACE_LINE.match(line)
        if not m:
            continue  # "<... resumed>" halves, signals, exits
        name, rest = m.group(2), m.group(3)
        if mark in rest:
            words = rest.split(mark, 1)[1].split('"', 1)[0].split()
            current = words[1] if words[0] == 'begin' else None
            if current:
                counts[current] = {}
            continue
        if current:
            # peeks and calls that would have blocked are worth seeing
            if 'MSG_PEEK' in rest:
                name += '[peek]'
            if '= -1 EAGAIN' in rest:
                name += '[EAGAIN]'
            counts[current][name] = counts[current].get(name, 0) + 1
    return counts


def classify(calls, n):
    """Per round trip: send-like, receive-like, poll-like, other."""
    out = {'send': 0, 'recv': 0, 'poll': 0, 'other': 0}
    for name, count in calls.items():
        base = name.split('[', 1)[0]
        kind = 'send' if base in SEND_CALLS else 'recv' \
            if base in RECV_CALLS else 'poll' if base in POLL_CALLS \
            else 'other'
        out[kind] += count
    per = {k: v / n for k, v in out.items()}
    per['calls'] = {k: v / n for k, v in sorted(calls.items())}
    return per


def run_strace(args, libs, python_other, scenarios):
    """Trace one worker per library running ``scenarios`` (by default
    N_GET basic.get and N_CONFIRM per-message confirms) and count system
    calls per message between the markers; then, untraced, measure CPU
    per message (median of --repeat)."""
    strace = ensure_strace()
    result = {}
    for lib in libs:
        mine = _scenarios(','.join(scenarios), lib)
        if not mine:
            continue
        print('strace: %s' % lib, file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, 'trace')
            traced = run_one(lib, args, python_other, mine,
                             prefix=[strace, '-f', '-qq', '-o', out],
                             markers=True)['results']
            with open(out) as f:
                counts = count_syscalls(f)
        result[lib] = {sc: classify(counts[sc], traced[sc]['n'])
                       for sc in mine}
    for rep in range(args.repeat):
        for lib in result:
            print('untraced run %d/%d: %s' % (rep + 1, args.repeat, lib),
                  file=sys.stderr)
            res = run_one(lib, args, python_other, list(result[lib]))
            for sc, s in res['results'].items():
                cell = result[lib][sc]
                for key, value in (('user', s['user'] / s['n'] * 1e6),
                                   ('cpu', s['cpu'] / s['n'] * 1e6),
                                   ('rate', s['n'] / s['wall'])):
                    cell.setdefault(key + '_samples', []).append(value)
    for per in result.values():
        for cell in per.values():
            cell['user_us'] = statistics.median(cell['user_samples'])
            cell['cpu_us'] = statistics.median(cell['cpu_samples'])
            cell['msgs_per_sec'] = statistics.median(cell['rate_samples'])
    return result


def format_strace(result):
    lines = ['%-8s %-11s %6s %6s %6s %6s %8s %8s   %s' % (
        'library', 'scenario', 'send', 'recv', 'poll', 'other',
        'user us', 'CPU us', 'every system call, per message')]
    for lib, per in result.items():
        for sc, c in per.items():
            detail = ' '.join('%s %.2f' % kv for kv in c['calls'].items())
            lines.append('%-8s %-11s %6.2f %6.2f %6.2f %6.2f %8.1f %8.1f   %s'
                         % (lib, sc, c['send'], c['recv'], c['poll'],
                            c['other'], c['user_us'], c['cpu_us'], detail))
    lines.append('')
    lines.append('send/recv/poll/other: system calls per message (a round '
                 'trip for get and confirm)')
    lines.append('between the markers, strace -f; user us / CPU us: user / '
                 'user+system CPU per')
    lines.append('message, untraced, median of --repeat runs.')
    for sc in ROUND_TRIPS:
        c = result.get('ours', {}).get(sc)
        if c:
            # (at the precision shown: a call made once per run, as the
            # confirm scenario's confirm.select, is not one per message)
            ok = round(c['send'], 2) <= 1 and round(c['recv'], 2) <= 1 \
                and c['user_us'] <= ROUND_TRIP_USER_TARGET
            lines.append(
                'ours %-8s %.2f send + %.2f recv (+ %.2f poll) per round '
                'trip, %.1f us user (target <= 1 + 1, <= %.0f us): %s'
                % (sc, c['send'], c['recv'], c['poll'], c['user_us'],
                   ROUND_TRIP_USER_TARGET, 'met' if ok else 'MISSED'))
    return '\n'.join(lines)


def run_soak_script(args):
    """bench/soak.py against the same broker; its JSON, with its printed
    report under 'report'."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'soak.json')
        argv = [sys.executable, os.path.join(HERE, 'soak.py'), '--url',
                args.url, '--venv', args.venv, '--json', out]
        argv += args.soak_args.split()
        print('soak: %s' % ' '.join(argv[2:]), file=sys.stderr)
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=7200)
        if done.returncode:
            raise SystemExit('bench/soak.py failed (exit %d):\n%s' % (
                done.returncode, done.stderr[-4000:]))
        with open(out) as f:
            doc = json.load(f)
    doc['report'] = done.stdout.rstrip()
    return doc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--url', help='broker URL (default: start a throwaway '
                   'RabbitMQ with amqp.cli.localbroker.LocalBroker)')
    p.add_argument('-n', type=int, default=20000,
                   help='messages for publish, consume, consume_ack and '
                   'pipelined (default 20000)')
    p.add_argument('--n-confirm', type=int, default=2000)
    p.add_argument('--n-get', type=int, default=2000)
    p.add_argument('--n-big', type=int, default=200,
                   help='messages for publish_1mb/consume_1mb (200)')
    p.add_argument('--size', type=int, default=100, help='body bytes')
    p.add_argument('--big-size', type=int, default=1 << 20,
                   help='body bytes of the *_1mb scenarios (1 MiB)')
    p.add_argument('--scenarios', default=','.join(SCENARIOS),
                   help='comma-separated subset of %s' % ','.join(SCENARIOS))
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--libs', default=','.join(LIBRARIES),
                   help='comma-separated subset of %s' % ','.join(LIBRARIES))
    p.add_argument('--before', metavar='PATH',
                   help="another checkout of this package, run as library "
                   "'before' beside 'ours' (e.g. a worktree of the commit "
                   "before a change: git worktree add /tmp/before HEAD~1)")
    p.add_argument('--venv', default=DEFAULT_VENV,
                   help='virtualenv holding py-amqp 5.4.2 and pika 1.4.4')
    p.add_argument('--cython-venv', default=DEFAULT_CYTHON_VENV,
                   help='virtualenv of py-amqp built with Cython (made '
                   'when missing; default %(default)s)')
    p.add_argument('--require-speedups', action='store_true',
                   help="stop unless the 'ours' worker runs with the "
                   'compiled module')
    p.add_argument('--json', metavar='FILE',
                   help="write results as JSON ('-' for stdout)")
    p.add_argument('--rst', metavar='FILE',
                   help='also write the table as reStructuredText')
    p.add_argument('--strace', action='store_true',
                   help='instead of the comparison, count system calls per '
                   'message (strace -f) in --scenarios (default: the get '
                   'and confirm round trips) and measure CPU per message')
    p.add_argument('--all', action='store_true',
                   help='after the comparison, on the same broker: '
                   '--strace of the get and confirm round trips and '
                   'bench/soak.py (every figure of issue 11 in one run)')
    p.add_argument('--soak-args', default='', metavar='ARGS',
                   help="arguments for bench/soak.py under --all, e.g. "
                   "--soak-args='-n 100000 --channels 1000'")
    p.add_argument('--profile', action='store_true',
                   help='instead of the comparison, cProfile our client on '
                   '--scenarios (default publish,consume), top --top '
                   'functions by tottime')
    p.add_argument('--top', type=int, default=10)
    p.add_argument('--profile-timer', choices=('cpu', 'wall'), default='cpu',
                   help='clock for --profile (default: process CPU time)')
    p.add_argument('--worker', choices=LIBRARIES, help=argparse.SUPPRESS)
    p.add_argument('--markers', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return run_worker(args)

    if args.scenarios == ','.join(SCENARIOS):  # the default
        if args.profile:
            args.scenarios = 'publish,consume'
        elif args.strace:
            args.scenarios = ','.join(ROUND_TRIPS)
    scenarios = _scenarios(args.scenarios)
    libs = ['ours'] if args.profile else [
        x.strip() for x in args.libs.split(',') if x.strip()]
    if args.before:
        args.before = os.path.abspath(args.before)
        if not os.path.isdir(os.path.join(args.before, 'amqp')):
            p.error('--before %s: no amqp package there' % args.before)
        if 'before' not in libs:
            libs.insert(libs.index('ours') + 1 if 'ours' in libs else 0,
                        'before')
    elif 'before' in libs:
        libs.remove('before')
    for lib in libs:
        if lib not in LIBRARIES:
            p.error('unknown library %r' % lib)
    python_other = None
    if set(libs) & {'py-amqp', 'pika'}:
        python_other = ensure_venv(args.venv)
    args.python_cython = None
    if 'py-amqp-cython' in libs:
        args.python_cython = ensure_cython_venv(args.cython_venv)

    broker = start_broker(args)
    try:
        if args.profile:
            print(run_one('ours', args, python_other, scenarios))
            return
        if args.strace:
            result = run_strace(args, libs, python_other, scenarios)
            print(format_strace(result))
            _write_json(args.json, {'strace': result})
            return
        t0 = time.perf_counter()
        extra = {}
        runs = {lib: [] for lib in libs}
        for rep in range(args.repeat):
            for lib in libs:
                mine = _scenarios(','.join(scenarios), lib)
                if not mine:
                    continue
                print('run %d/%d: %s' % (rep + 1, args.repeat, lib),
                      file=sys.stderr)
                runs[lib].append(run_one(lib, args, python_other, mine))
        elapsed = time.perf_counter() - t0
        if args.all:
            extra['strace'] = run_strace(args, libs, python_other,
                                         ROUND_TRIPS)
            extra['soak'] = run_soak_script(args)
    finally:
        if broker is not None:
            broker.stop()

    runs = {lib: reps for lib, reps in runs.items() if reps}
    libs = [lib for lib in libs if lib in runs]
    table = summarise(runs)
    print(format_table(table, libs, scenarios))
    print()
    print('\n'.join(targets(table)))
    print('\nmedian of %d runs; %.0f s of benchmarking; bodies %d and %d '
          'bytes; python %s; %d CPUs' % (
              args.repeat, elapsed, args.size, args.big_size,
              platform.python_version(), os.cpu_count() or 0))
    if 'strace' in extra:
        print()
        print(format_strace(extra['strace']))
    if 'soak' in extra:
        print()
        print(extra['soak'].pop('report'))
    if args.rst:
        with open(args.rst, 'w') as f:
            f.write(format_rst(table, libs, scenarios) + '\n')
    _write_json(args.json, dict(extra, **{
        'python': platform.python_version(),
        'platform': platform.platform(), 'cpus': os.cpu_count(),
        'repeat': args.repeat, 'size': args.size,
        'big_size': args.big_size, 'prefetch': PREFETCH,
        'ack_every': ACK_EVERY, 'prefetch_ack': PREFETCH_ACK,
        'prefetch_big': PREFETCH_BIG, 'window': WINDOW,
        'broker': 'local' if broker is not None else 'url',
        'libraries': table}))


def _write_json(path, doc):
    if not path:
        return
    if path == '-':
        json.dump(doc, sys.stdout, indent=2)
    else:
        with open(path, 'w') as f:
            json.dump(doc, f, indent=2)


if __name__ == '__main__':
    sys.exit(main())
