"""Shared test set-up: markers, hypothesis settings, and one RabbitMQ
node per session.  Helper functions shared by the suites are in
``testkit.py`` next to this file (this directory is on ``sys.path``).

The node is started by pytest-rabbitmq only when a test asks for the
``broker`` fixture, so unit and protocol tests never start one.  It
listens on 127.0.0.1 only (AMQP, Erlang distribution and epmd), keeps its
data, logs and plugins file in pytest's temporary directory, and is
installed with apt-get first if it is missing and we are root on Debian.
"""
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from pytest_rabbitmq import factories

MARKERS = {
    'integration': 'needs a real RabbitMQ (the broker fixture)',
    'compat': 'runs kombu or celery on top of this package',
    'tls': 'talks TLS to the broker',
    'slow': 'takes more than a few seconds',
    'stress': 'a long stress or endurance run (a minute or more); the '
              'second pass on the pure path leaves it out',
    'faults': 'fault injection against a real broker (tests/faults)',
    'fuzz': 'feeds mutated frame streams to the connection',
    'fuzz_long': 'the long fuzz campaign (100,000 cases); deselected '
                 'unless asked for with -m fuzz_long',
}

# Reproducible property tests: the same examples on every run and machine.
settings.register_profile(
    'amqp', max_examples=100, deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile('amqp')

# One node for the whole session; the plugins file and node name are
# filled in by _rabbitmq_environment before this starts.
_rabbitmq_executor = factories.rabbitmq_proc(host='127.0.0.1')


def pytest_configure(config):
    for name, description in MARKERS.items():
        config.addinivalue_line('markers', f'{name}: {description}')


def pytest_collection_finish(session):
    """Start the pure-path pass (tests/test_pure_path.py) now, beside this
    one, when this session runs it."""
    from test_pure_path import start_second_pass
    session.config.second_pass = start_second_pass(session.items)


def pytest_unconfigure(config):
    """A second pass still running when this session ends (stopped early,
    or it never waited for it) is stopped with it."""
    second = getattr(config, 'second_pass', None)
    if second is not None:
        second.stop()


def pytest_collection_modifyitems(config, items):
    _deselect_long_fuzz(config, items)
    here = Path(__file__).parent
    for item in items:
        try:
            part = Path(item.fspath).relative_to(here).parts[0]
        except (ValueError, IndexError):
            continue
        if part in ('integration', 'compat'):
            item.add_marker(part)
        elif part == 'faults':
            item.add_marker('integration')
            item.add_marker('faults')


def _deselect_long_fuzz(config, items):
    """The 100,000-case fuzz campaign runs only when asked for by name
    (``pytest -m fuzz_long``); the default run has its fast subset."""
    if 'fuzz_long' in (config.getoption('markexpr') or ''):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker('fuzz_long') else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class Broker:
    """The session's RabbitMQ node, as tests need it."""

    userid = 'guest'
    password = 'guest'
    virtual_host = '/'

    def __init__(self, executor):
        self.executor = executor
        self.host = executor.host
        self.port = executor.port
        self.url = (f'amqp://{self.userid}:{self.password}@'
                    f'{self.host}:{self.port}//')

    def connect(self, **kwargs):
        """A connected ``amqp.Connection`` to this node."""
        from amqp import Connection
        kwargs.setdefault('connect_timeout', 10)
        conn = Connection('%s:%s' % (self.host, self.port), **kwargs)
        conn.connect()
        return conn

    def ctl(self, *args):
        """Run rabbitmqctl against this node; return its output."""
        return self.executor.rabbitctl_output(*args)

    def __repr__(self):
        return f'<Broker {self.host}:{self.port}>'


def _option_unset(config, name):
    return (config.getoption(name) is None
            and config.getini(name) in (None, '', tempfile.gettempdir()))


@pytest.fixture(scope='session')
def _rabbitmq_environment(request, tmp_path_factory):
    """Install RabbitMQ if needed and confine the node to loopback."""
    from amqp.cli import localbroker

    config = request.config
    localbroker.ensure_installed(
        config.getoption('rabbitmq_server')
        or config.getini('rabbitmq_server'))
    # mirakuru starts the node with os.environ plus its own variables.
    os.environ.update(localbroker.loopback_env())
    if _option_unset(config, 'rabbitmq_plugindir'):
        plugindir = tmp_path_factory.mktemp('rabbitmq-plugins')
        (plugindir / 'plugins').write_text('[].\n')
        config.option.rabbitmq_plugindir = str(plugindir)
    if not config.getoption('rabbitmq_node') and \
            not config.getini('rabbitmq_node'):
        # @localhost: the short host name may not resolve to 127.0.0.1.
        config.option.rabbitmq_node = f'amqp-test-{os.getpid()}@localhost'
    try:
        socket.create_connection(('127.0.0.1', 4369), timeout=1).close()
        epmd_was_running = True
    except OSError:
        epmd_was_running = False
    yield
    if not epmd_was_running:  # the node below has stopped by now
        localbroker.stop_idle_epmd()


@pytest.fixture(scope='session')
def broker(request):
    """A RabbitMQ node for the session: host, port, url and ctl()."""
    from amqp.cli import localbroker

    request.getfixturevalue('_rabbitmq_environment')
    executor = request.getfixturevalue('_rabbitmq_executor')
    # mirakuru only waited for the port; wait for the protocol too.
    deadline = time.monotonic() + 30
    while not localbroker.probe(executor.host, executor.port):
        if time.monotonic() > deadline:
            pytest.fail('RabbitMQ accepts TCP but does not answer AMQP')
        time.sleep(0.2)
    yield Broker(executor)


def _ctl_until_done(broker, *args, attempts=10):
    """``broker.ctl(*args)`` right after the node started: retried for a
    while when rabbitmqctl fails (once, in a loaded CI run, add_user
    failed with exit status 64 on a node that already answered AMQP), and
    the last failure reported with what rabbitmqctl printed."""
    import subprocess
    for attempt in range(attempts):
        try:
            return broker.ctl(*args)
        except subprocess.CalledProcessError as exc:
            failure = exc
            if args[0] == 'add_user' and 'already exists' in (
                    (exc.stdout or '') + (exc.stderr or '')):
                return exc.stdout   # an earlier attempt got through
            time.sleep(1 + attempt)
    pytest.fail('rabbitmqctl %s failed %d times; last (exit %s): %s %s' % (
        ' '.join(args[:2]), attempts, failure.returncode,
        failure.stdout, failure.stderr))


@pytest.fixture(scope='session')
def tls_broker(tmp_path_factory):
    """A second RabbitMQ node with a TLS listener (``tls_port``) and the
    test certificates (``certs``, see ``tests/tlsbroker.py``)."""
    from amqp.cli import localbroker
    from tlsbroker import CLIENT_CN, TLSBroker, make_certificates

    certs = make_certificates(str(tmp_path_factory.mktemp('tls-certs')))
    broker = TLSBroker(certs, timeout=90)
    try:
        broker.start()
    except localbroker.BrokerError as exc:
        pytest.fail('TLS RabbitMQ node did not start: %s' % exc)
    try:
        # start() waited for the plain listener; both open together.
        _ctl_until_done(broker, 'add_user', CLIENT_CN,
                        'unused-password-for-plain')
        _ctl_until_done(broker, 'set_permissions', '-p', '/', CLIENT_CN,
                        '.*', '.*', '.*')
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope='session')
def tls_coalescing(tls_broker):
    """A TLS front (``port``) for the TLS node that always writes
    consume-ok and the deliveries behind it in one TLS record (see
    ``tests/recordproxy.py``), for the tests about that case."""
    from recordproxy import RecordProxy

    proxy = RecordProxy(tls_broker.certs, tls_broker.port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
