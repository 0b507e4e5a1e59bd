"""The py-amqp surface kombu 5.7 and celery 5.7 use, frozen.

Each test names the kombu/celery code that relies on it.  The name lists,
hierarchy and signatures were taken from py-amqp 5.4.2; the reference
comparison in test_kombu/test_celery runs the real thing.
"""
import inspect
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from testkit import drain_until

import amqp
import amqp.connection
import amqp.exceptions
import amqp.protocol

ROOT = Path(__file__).resolve().parent.parent.parent

# py-amqp 5.4.2: amqp.exceptions.__all__ -> (bases, reply code)
PYAMQP_EXCEPTIONS = {
    'AMQPError': ('Exception', 0),
    'ConnectionError': ('AMQPError', 0),
    'ChannelError': ('AMQPError', 0),
    'RecoverableConnectionError': ('ConnectionError', 0),
    'IrrecoverableConnectionError': ('ConnectionError', 0),
    'RecoverableChannelError': ('ChannelError', 0),
    'IrrecoverableChannelError': ('ChannelError', 0),
    'ConsumerCancelled': ('RecoverableConnectionError', 0),
    'ContentTooLarge': ('RecoverableChannelError', 311),
    'NoConsumers': ('RecoverableChannelError', 313),
    'ConnectionForced': ('RecoverableConnectionError', 320),
    'InvalidPath': ('IrrecoverableConnectionError', 402),
    'AccessRefused': ('IrrecoverableChannelError', 403),
    'NotFound': ('IrrecoverableChannelError', 404),
    'ResourceLocked': ('RecoverableChannelError', 405),
    'PreconditionFailed': ('IrrecoverableChannelError', 406),
    'FrameError': ('IrrecoverableConnectionError', 501),
    'FrameSyntaxError': ('IrrecoverableConnectionError', 502),
    'InvalidCommand': ('IrrecoverableConnectionError', 503),
    'ChannelNotOpen': ('IrrecoverableConnectionError', 504),
    'UnexpectedFrame': ('IrrecoverableConnectionError', 505),
    'ResourceError': ('RecoverableConnectionError', 506),
    'NotAllowed': ('IrrecoverableConnectionError', 530),
    'AMQPNotImplementedError': ('IrrecoverableConnectionError', 540),
    'InternalError': ('IrrecoverableConnectionError', 541),
    'MessageNacked': ('Exception', None),
    'AMQPDeprecationWarning': ('UserWarning', None),
}

# py-amqp 5.4.2 parameter names, in order (self, argsig, *args, **kw left
# out).  kombu and celery pass most of these by keyword.
PYAMQP_SIGNATURES = {
    amqp.Connection: {
        '__init__': ('host', 'userid', 'password', 'login_method',
                     'login_response', 'authentication', 'virtual_host',
                     'locale', 'client_properties', 'ssl', 'connect_timeout',
                     'channel_max', 'frame_max', 'heartbeat', 'on_open',
                     'on_blocked', 'on_unblocked', 'confirm_publish',
                     'on_tune_ok', 'read_timeout', 'write_timeout',
                     'socket_settings', 'frame_handler', 'frame_writer'),
        'Transport': ('host', 'connect_timeout', 'ssl', 'read_timeout',
                      'write_timeout', 'socket_settings'),
        'blocking_read': ('timeout',),
        'channel': ('channel_id', 'callback'),
        'close': ('reply_code', 'reply_text', 'method_sig'),
        'collect': (),
        'connect': ('callback',),
        'drain_events': ('timeout',),
        'heartbeat_tick': ('rate',),
        'is_alive': (),
        'on_inbound_method': ('channel_id', 'method_sig', 'payload',
                              'content'),
        'send_heartbeat': (),
        'then': ('on_success', 'on_error'),
    },
    amqp.Channel: {
        '__init__': ('connection', 'channel_id', 'auto_decode', 'on_open'),
        'basic_ack': ('delivery_tag', 'multiple'),
        'basic_cancel': ('consumer_tag', 'nowait'),
        'basic_consume': ('queue', 'consumer_tag', 'no_local', 'no_ack',
                          'exclusive', 'nowait', 'callback', 'arguments',
                          'on_cancel'),
        'basic_get': ('queue', 'no_ack'),
        'basic_publish': ('msg', 'exchange', 'routing_key', 'mandatory',
                          'immediate', 'timeout', 'confirm_timeout'),
        'basic_qos': ('prefetch_size', 'prefetch_count', 'a_global'),
        'basic_recover': ('requeue',),
        'basic_recover_async': ('requeue',),
        'basic_reject': ('delivery_tag', 'requeue'),
        'close': ('reply_code', 'reply_text', 'method_sig'),
        'collect': (),
        'confirm_select': ('nowait',),
        'exchange_bind': ('destination', 'source', 'routing_key', 'nowait',
                          'arguments'),
        'exchange_declare': ('exchange', 'type', 'passive', 'durable',
                             'auto_delete', 'nowait', 'arguments'),
        'exchange_delete': ('exchange', 'if_unused', 'nowait'),
        'exchange_unbind': ('destination', 'source', 'routing_key', 'nowait',
                            'arguments'),
        'flow': ('active',),
        'open': (),
        'queue_bind': ('queue', 'exchange', 'routing_key', 'nowait',
                       'arguments'),
        'queue_declare': ('queue', 'passive', 'durable', 'exclusive',
                          'auto_delete', 'nowait', 'arguments'),
        'queue_delete': ('queue', 'if_unused', 'if_empty', 'nowait'),
        'queue_purge': ('queue', 'nowait'),
        'queue_unbind': ('queue', 'exchange', 'routing_key', 'nowait',
                         'arguments'),
        'then': ('on_success', 'on_error'),
        'tx_commit': (),
        'tx_rollback': (),
        'tx_select': (),
    },
    amqp.Message: {
        '__init__': ('body', 'children', 'channel', 'properties'),
    },
}


# -- without a broker ------------------------------------------------------

def test_top_level_names_kombu_imports():
    # kombu/exceptions.py, kombu/common.py, kombu/transport/base.py,
    # celery/bin/amqp.py
    from amqp import (ChannelError, Connection,  # noqa: F401
                      ConnectionError, Message, RecoverableConnectionError,
                      ResourceError)
    assert amqp.ChannelError is amqp.exceptions.ChannelError
    assert amqp.ConnectionError is amqp.exceptions.ConnectionError
    assert amqp.ResourceError is amqp.exceptions.ResourceError
    assert amqp.RecoverableConnectionError is \
        amqp.exceptions.RecoverableConnectionError


@pytest.mark.parametrize('name', sorted(PYAMQP_EXCEPTIONS))
def test_exception_hierarchy_and_codes(name):
    base, code = PYAMQP_EXCEPTIONS[name]
    assert name in amqp.exceptions.__all__
    cls = getattr(amqp.exceptions, name)
    assert base in [b.__name__ for b in cls.__mro__[1:]], cls.__mro__
    if code is not None:
        assert cls.code == code


def test_exceptions_carry_reply_fields():
    exc = amqp.exceptions.NotFound('no queue', (50, 10), reply_code=404)
    assert (exc.reply_code, exc.reply_text, exc.method_sig) == \
        (404, 'no queue', (50, 10))
    assert isinstance(amqp.error_for_code(404, 'x', (50, 10),
                                          amqp.ChannelError),
                      amqp.exceptions.NotFound)


def test_error_classes_on_connection():
    # kombu/transport/pyamqp.py copies these four onto its Transport;
    # kombu's ensure()/autoretry retry on the recoverable ones.
    conn = amqp.Connection
    assert amqp.ConnectionError in conn.connection_errors
    assert OSError in conn.connection_errors
    assert amqp.ChannelError in conn.channel_errors
    assert amqp.RecoverableConnectionError in \
        conn.recoverable_connection_errors
    assert OSError in conn.recoverable_connection_errors
    assert amqp.exceptions.RecoverableChannelError in \
        conn.recoverable_channel_errors


def test_message_nacked_is_recoverable():
    # py-amqp 5.4.2 lists MessageNacked in recoverable_connection_errors,
    # so kombu's ensure() republishes a nacked message with
    # confirm_publish=True instead of failing at once.
    assert amqp.exceptions.MessageNacked in \
        amqp.Connection.recoverable_connection_errors


def test_protocol_named_tuples():
    # kombu/transport/virtual/base.py
    assert amqp.protocol.queue_declare_ok_t._fields == (
        'queue', 'message_count', 'consumer_count')
    assert amqp.protocol.basic_return_t._fields == (
        'reply_code', 'reply_text', 'exchange', 'routing_key', 'message')


def test_connection_module_exports_sslerror():
    assert amqp.connection.SSLError is ssl.SSLError


def test_version_inside_kombu_range():
    # pip keeps this package as the amqp kombu imports only if it fits.
    requirement = next(
        Requirement(r) for r in metadata.requires('kombu')
        if Requirement(r).name == 'amqp' and not Requirement(r).marker)
    assert requirement.specifier.contains(amqp.__version__), (
        amqp.__version__, str(requirement))
    assert amqp.VERSION[:3] == tuple(
        int(x) for x in amqp.__version__.split('.')[:3])
    assert amqp.version_info == amqp.VERSION
    # kombu's Transport.driver_version() and celery's report show it
    from kombu.transport.pyamqp import Transport
    assert Transport(client=None).driver_version() == amqp.__version__


@pytest.mark.parametrize('cls', list(PYAMQP_SIGNATURES),
                         ids=lambda c: c.__name__)
def test_signatures_match_pyamqp(cls):
    problems = []
    for name, expected in PYAMQP_SIGNATURES[cls].items():
        method = getattr(cls, name, None)
        if method is None:
            problems.append(f'{name}: missing')
            continue
        params = [p for p in inspect.signature(method).parameters
                  if p not in ('self', 'argsig', 'kwargs', 'args')]
        if tuple(params[:len(expected)]) != expected:
            problems.append(f'{name}: {params} != {list(expected)}')
    assert not problems, problems


def test_unknown_keyword_arguments_accepted():
    # kombu passes conninfo fields and every transport option verbatim.
    conn = amqp.Connection(host='127.0.0.1:1', insist=False,
                           unknown_option='x', max_retries=3,
                           confirm_publish=True)
    assert conn.confirm_publish


def test_connection_channel_class_is_overridable():
    # kombu.transport.pyamqp.Connection sets Channel = its own subclass.
    from kombu.transport import pyamqp
    assert issubclass(pyamqp.Connection, amqp.Connection)
    assert issubclass(pyamqp.Channel, amqp.Channel)
    assert pyamqp.Connection.Channel is pyamqp.Channel


def test_kombu_prepare_message_builds_amqp_message():
    # kombu's Channel.prepare_message passes these keywords to Message.
    msg = amqp.Message(b'body', priority=5, content_type='application/json',
                       content_encoding='utf-8',
                       application_headers={'h': 1}, delivery_mode=2,
                       correlation_id='c', reply_to='r', expiration='100')
    assert msg.body == b'body'
    assert msg.properties['priority'] == 5
    assert msg.properties['application_headers'] == {'h': 1}
    assert msg.properties.get('content_type') == 'application/json'
    assert msg.headers == {'h': 1}


def test_collect_without_connecting():
    conn = amqp.Connection(host='127.0.0.1:1')
    conn.collect()
    assert not conn.connected


# -- against the broker ----------------------------------------------------

@pytest.fixture
def conn(broker):
    connection = amqp.Connection(f'{broker.host}:{broker.port}',
                                 heartbeat=10)
    connection.connect()
    yield connection
    connection.close()


def test_drain_events_timeout_zero_is_immediate(conn):
    # kombu.transport.base Transport._make_reader: drain_events(timeout=0)
    # after every readable event, catching socket.timeout.
    conn.channel()
    for _ in range(5):
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            conn.drain_events(timeout=0)
        assert time.monotonic() - started < 0.05


def test_drain_events_timeout_bounds_wait(conn):
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.0


def test_transport_attributes(conn):
    # kombu's register_with_event_loop sets raise_on_initial_eintr and
    # watches connection.sock; celery reads connection._transport.sock.
    conn.transport.raise_on_initial_eintr = True
    assert conn.transport.raise_on_initial_eintr is True
    assert conn.transport is conn._transport
    assert isinstance(conn._transport.sock, socket.socket)
    assert conn.sock is conn._transport.sock
    assert conn.sock.fileno() >= 0
    assert conn.connected


def test_server_properties(conn):
    # kombu's qos_semantics_matches_spec reads product and version.
    assert conn.server_properties['product'] == 'RabbitMQ'
    version = conn.server_properties['version']
    assert isinstance(version, str) and version[0].isdigit()
    assert conn.server_properties['capabilities']['publisher_confirms']
    from kombu.transport.pyamqp import Transport
    assert Transport(client=None).qos_semantics_matches_spec(conn) is \
        (not (3, 3) <= tuple(map(int, version.split('.')[:2])) < (4, 0))


def test_channel_attributes(conn):
    channel = conn.channel()
    assert channel.channel_id in conn.channels
    assert conn.channels[channel.channel_id] is channel
    assert channel.connection is conn
    assert channel.is_open
    assert conn.channel_max > 0 and conn.frame_max >= 4096
    assert conn.heartbeat == 10
    channel.close()
    # kombu checks channel.connection to know a channel is gone.
    assert channel.connection is None
    assert not channel.is_open
    assert channel.channel_id not in conn.channels


def test_no_ack_consumers_and_events(conn, prefix):
    channel = conn.channel()
    queue, _, _ = channel.queue_declare(prefix, auto_delete=True)
    tag = channel.basic_consume(queue, no_ack=True, callback=lambda m: None)
    assert tag in channel.no_ack_consumers     # kombu/message.py ack()
    channel.basic_cancel(tag)
    assert tag not in channel.no_ack_consumers
    # kombu/messaging.py: channel.events['basic_return'].add(on_return)
    returned = []
    channel.events['basic_return'].add(
        lambda exc, exchange, routing_key, message:
        returned.append((type(exc).__name__, exchange, routing_key,
                         message.body)))
    channel.basic_publish(amqp.Message(b'lost'), exchange='',
                          routing_key=prefix + '-nowhere', mandatory=True)
    drain_until(conn, lambda: returned, what='basic.return')
    assert returned == [('NoRoute', '', prefix + '-nowhere', b'lost')] or \
        returned[0][1:] == ('', prefix + '-nowhere', b'lost'), returned


def test_confirm_publish_makes_basic_publish_confirm(broker, prefix):
    # kombu's transport_options={'confirm_publish': True} reaches here.
    with amqp.Connection(f'{broker.host}:{broker.port}',
                         confirm_publish=True) as conn:
        channel = conn.channel()
        channel.queue_declare(prefix, auto_delete=True, arguments={
            'x-max-length': 1, 'x-overflow': 'reject-publish'})
        channel.basic_publish(amqp.Message(b'1'), routing_key=prefix)
        # confirmed, so the broker has it (the count itself may lag)
        with pytest.raises(amqp.exceptions.MessageNacked):
            channel.basic_publish(amqp.Message(b'2'), routing_key=prefix)
        with pytest.raises(amqp.exceptions.NotFound):
            channel.basic_publish(amqp.Message(b'3'),
                                  exchange=prefix + '-missing')


def test_heartbeat_tick_rate(conn):
    # kombu's heartbeat_check(connection, rate=2) -> heartbeat_tick(rate=)
    conn.heartbeat_tick(rate=2)
    conn.heartbeat_tick(rate=4)
    sent = conn.bytes_sent
    conn.last_heartbeat_sent = time.monotonic() - conn.heartbeat
    conn.prev_sent = conn.bytes_sent
    conn.heartbeat_tick(rate=2)
    assert conn.bytes_sent > sent      # it sent one
    conn.send_heartbeat()


def test_collect_drops_everything_without_io(conn):
    # kombu's Connection.collect() / _collect after a connection loss.
    channel = conn.channel()
    conn.collect()
    assert not conn.connected
    assert conn._transport is None and conn.sock is None
    assert channel.connection is None
    assert conn.channels == {} or list(conn.channels) == [0]
    conn.close()     # harmless afterwards


def _fresh_venv(tmp_path, **env_extra):
    """A new virtualenv under ``tmp_path``: (its python, the environment
    to run it in, without this run's interpreter settings)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV',
                        'AMQP_NO_SPEEDUPS')}
    env.update(env_extra)
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True,
                   env=env)
    return venv / 'bin' / 'python', env


def _run_in(python, tmp_path, env, code, *args):
    """Run ``code`` with ``python`` outside the checkout; its output."""
    done = subprocess.run([str(python), '-c', code] + list(args),
                          cwd=str(tmp_path), capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_a_failed_build_installs_the_pure_package_with_one_warning(
        tmp_path, broker):
    # Issue 19: without a compiler (here CC is `false`, so every
    # compile fails), `pip install .` still installs the whole package,
    # pure Python, and says so in one line; and that package works.
    python, env = _fresh_venv(tmp_path, CC='false')
    venv = python.parent.parent
    # the source alone: a build/ left by an earlier install holds an
    # object file setuptools would reuse instead of compiling
    source = tmp_path / 'source'
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        'build', '.*', '*.so', '*.pyd', '__pycache__', '*.egg-info',
        'tests', 'docs', 'bench'))
    pip = subprocess.run(
        [str(python), '-m', 'pip', 'install', '-v',
         '--disable-pip-version-check', str(source)],
        capture_output=True, text=True, timeout=600, env=env)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    warnings = [line.strip() for line in
                (pip.stdout + pip.stderr).splitlines()
                if 'amqp._speedups not built' in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith('WARNING: amqp._speedups not built (')
    assert warnings[0].endswith(
        'installing the pure-Python package, which is complete')
    active, where = _run_in(
        python, tmp_path, env,
        'import amqp, os; '
        'print(amqp.SPEEDUPS, os.path.dirname(amqp.__file__))').split()
    assert active == 'False'
    assert where.startswith(str(venv))
    assert not [name for name in os.listdir(where)
                if name.startswith('_speedups') and
                not name.endswith(('.c', '.pyi'))]
    version = subprocess.run(
        [str(venv / 'bin' / 'amqp'), '--version'], cwd=str(tmp_path),
        capture_output=True, text=True, env=env)
    assert '(compiled speedups: off)' in version.stdout, version
    # a round trip on the installed pure package
    body = _run_in(
        python, tmp_path, env,
        'import amqp, sys\n'
        'with amqp.Connection(sys.argv[1]) as c:\n'
        '    ch = c.channel()\n'
        '    q = ch.queue_declare("", exclusive=True).queue\n'
        '    ch.confirm_select()\n'
        '    ch.basic_publish_confirm(amqp.Message(b"pure"), routing_key=q)\n'
        '    print(ch.basic_get(q, no_ack=True).body.decode())\n',
        '%s:%s' % (broker.host, broker.port))
    assert body.strip() == 'pure'


@pytest.mark.slow
def test_pip_install_with_kombu_and_celery_keeps_us(tmp_path, broker,
                                                     run_scenario):
    # The first deliverable: `pip install . kombu celery` in a
    # fresh virtualenv gives kombu this package, and kombu works on it.
    python, env = _fresh_venv(tmp_path)
    venv = python.parent.parent
    pip = subprocess.run(
        [str(python), '-m', 'pip', 'install', '-q',
         '--disable-pip-version-check', str(ROOT), 'kombu==5.7.0',
         'celery==5.7.0'],
        capture_output=True, text=True, timeout=600, env=env)
    if pip.returncode:
        pytest.skip('pip cannot install into a fresh virtualenv: '
                    + pip.stderr[-2000:])
    version, path = _run_in(
        python, tmp_path, env,
        'import amqp, amqp.cli.localbroker, kombu.transport.pyamqp, celery; '
        'print(amqp.__version__, amqp.__file__)').split()
    assert version == amqp.__version__
    assert path.startswith(str(venv))
    conflicts = subprocess.run([str(python), '-m', 'pip', 'check'],
                               capture_output=True, text=True, env=env)
    assert conflicts.returncode == 0, conflicts.stdout
    result = run_scenario('kombu_simple', broker.url, python=python,
                          ours=False)
    assert result['amqp_file'].startswith(str(venv))
    assert result['result']['empty'] is True
