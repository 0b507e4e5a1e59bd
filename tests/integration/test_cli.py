"""The ``amqp`` command line, end to end: every subcommand runs as a
subprocess against the session's RabbitMQ and is checked on its output,
its exit status and, through the library, on what it did to the broker.
Error paths: unreachable broker, refused login, missing vhost, missing
queue or exchange, a peer that is not an AMQP server, bad usage."""
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

import amqp
from amqp.cli.commands import (EXIT_EMPTY, EXIT_LOGIN, EXIT_NOT_AMQP,
                               EXIT_NOT_FOUND, EXIT_REFUSED,
                               EXIT_UNCONFIRMED, EXIT_UNREACHABLE,
                               EXIT_USAGE, EXIT_VHOST)

PASSWORD_IN_URL = 'sekrit-pw'


def cli(*args, input=None, env=None, timeout=60, url=None):
    """Run ``python -m amqp ARGS``; AMQP_URL is unset unless ``env`` or
    ``url`` sets it."""
    environ = {k: v for k, v in os.environ.items() if k != 'AMQP_URL'}
    if url is not None:
        environ['AMQP_URL'] = url
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, '-m', 'amqp'] + list(args),
        input=input if input is not None else b'',
        capture_output=True, env=environ, timeout=timeout)


def out(proc):
    return proc.stdout.decode()


def err(proc):
    return proc.stderr.decode()


def one_line_error(proc):
    """The single line the command wrote to stderr."""
    lines = err(proc).strip().splitlines()
    assert len(lines) == 1, err(proc)
    assert lines[0].startswith('amqp: '), lines[0]
    return lines[0]


@pytest.fixture
def url(broker):
    return broker.url


@pytest.fixture
def queue(ch):
    """A fresh queue, deleted afterwards."""
    name = 'cli-' + uuid.uuid4().hex[:10]
    ch.queue_declare(name, auto_delete=False)
    yield name
    try:
        ch.queue_delete(name)
    except amqp.AMQPError:
        pass


def _count(ch, queue):
    return ch.queue_declare(queue, passive=True).message_count


def _get(ch, queue, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = ch.basic_get(queue, no_ack=True)
        if msg is not None:
            return msg
        time.sleep(0.05)
    raise AssertionError('nothing arrived on %s' % queue)


def _publish(ch, queue, *bodies, **properties):
    for body in bodies:
        ch.basic_publish(amqp.Message(body, **properties), '', queue)
    ch.basic_qos(0, 0, False)   # a round trip: the publishes are in
    deadline = time.monotonic() + 10
    while _count(ch, queue) < len(bodies):
        assert time.monotonic() < deadline
        time.sleep(0.05)


# -- the default command and help ----------------------------------------
def test_round_trip_is_the_default_command(url):
    proc = cli('--url', url, '--count', '20', '--no-local-broker')
    assert proc.returncode == 0, err(proc)
    assert out(proc).splitlines()[-1] == 'OK'
    assert '20 published and consumed in order' in out(proc)
    assert 'guest:***@' in out(proc)


def test_round_trip_url_from_the_environment(url):
    proc = cli('--count', '5', '--no-local-broker', url=url)
    assert proc.returncode == 0, err(proc)
    assert url.split('@')[1] in out(proc)


def test_round_trip_fails_with_status_1_when_nothing_answers():
    proc = cli('--url', 'amqp://guest:guest@127.0.0.1:%d//' % _free_port(),
               '--no-local-broker')
    assert proc.returncode == 1
    assert 'nothing answers' in err(proc)


def test_help_lists_commands_and_exit_codes():
    proc = cli('--help')
    assert proc.returncode == 0
    text = out(proc)
    for command in ('ping', 'publish', 'consume', 'get', 'declare-queue',
                    'declare-exchange', 'bind', 'unbind', 'purge', 'delete',
                    'shell'):
        assert '    ' + command in text
    assert 'exit status of the commands:' in text
    for code in ('  3  broker unreachable', '  4  login refused',
                 '  5  virtual host missing', '  6  queue or exchange not',
                 '  7  the peer is not an AMQP'):
        assert code in text
    sub = cli('publish', '--help')
    assert '--routing-key' in out(sub) and 'exit status' in out(sub)


def test_console_script(url):
    script = os.path.join(os.path.dirname(sys.executable), 'amqp')
    assert os.path.exists(script), 'the amqp console script is installed'
    proc = subprocess.run([script, 'ping', '--url', url],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert b'is up' in proc.stdout


# -- ping -----------------------------------------------------------------
def test_ping(url, conn):
    proc = cli('ping', '--url', url)
    assert proc.returncode == 0, err(proc)
    lines = dict(line.split(':', 1) for line in out(proc).splitlines()[1:])
    assert lines['server'].split()[:2] == [
        'RabbitMQ', conn.server_properties['version']]
    assert int(lines['channel_max']) == conn.channel_max
    assert lines['frame_max'].split()[0] == str(conn.frame_max)
    assert lines['heartbeat'].strip().startswith('off')
    assert 'publisher_confirms' in lines['capabilities']
    assert 'ms' in lines['connect']
    assert 'over 5' in lines['round trip']
    assert out(proc).startswith('amqp://guest:***@')


def test_ping_json_with_heartbeat_from_the_environment(url):
    proc = cli('ping', '--json', '--heartbeat', '20', '--count', '2',
               url=url)
    assert proc.returncode == 0, err(proc)
    result = json.loads(out(proc))
    assert result['product'] == 'RabbitMQ'
    assert result['heartbeat'] == 20
    assert result['round_trips'] == 2
    assert 0 < result['rtt_ms_min'] <= result['rtt_ms_avg']
    assert 'guest:guest' not in out(proc)


def test_url_options_go_before_or_after_the_command(url):
    assert cli('--url', url, 'ping').returncode == 0
    bad = 'amqp://guest:guest@127.0.0.1:%d//' % _free_port()
    # after the command wins over before it
    assert cli('--url', bad, 'ping', '--url', url).returncode == 0


# -- publish --------------------------------------------------------------
def test_publish_body_properties_and_headers(url, ch, queue):
    proc = cli('publish', '--url', url, '-r', queue, 'hello wörld',
               '--content-type', 'text/plain', '--persistent',
               '--priority', '4', '--correlation-id', 'c-1',
               '--reply-to', 'replies', '--expiration', '60000',
               '--message-id', 'm-1', '--timestamp', '1700000000',
               '--type', 'greeting', '--app-id', 'cli-test',
               '--header', 'who=world', '-H', 'n:=42',
               '-H', 'tags:=["a", 1]', '-H', 'digits=007')
    assert proc.returncode == 0, err(proc)
    assert out(proc) == ("published 1 message (12 bytes) to the default "
                         "exchange with routing key '%s'\n" % queue)
    msg = _get(ch, queue)
    assert msg.body == 'hello wörld'.encode()
    props = msg.properties
    assert props['content_type'] == 'text/plain'
    assert props['delivery_mode'] == 2
    assert props['priority'] == 4
    assert props['correlation_id'] == 'c-1'
    assert props['reply_to'] == 'replies'
    assert props['expiration'] == '60000'
    assert props['message_id'] == 'm-1'
    assert props['timestamp'] == 1700000000
    assert props['type'] == 'greeting'
    assert props['app_id'] == 'cli-test'
    assert props['application_headers'] == {
        'who': 'world', 'n': 42, 'tags': ['a', 1], 'digits': '007'}


def test_publish_from_stdin_and_from_a_file(url, ch, queue, tmp_path):
    body = bytes(range(256)) * 3
    proc = cli('publish', '--url', url, '-r', queue, input=body)
    assert proc.returncode == 0, err(proc)
    assert _get(ch, queue).body == body
    path = tmp_path / 'body.bin'
    path.write_bytes(body[::-1])
    proc = cli('publish', '--url', url, '-r', queue, '--file', str(path))
    assert proc.returncode == 0, err(proc)
    assert _get(ch, queue).body == body[::-1]
    proc = cli('publish', '--url', url, '-r', queue, '-f', '-',
               input=b'dash')
    assert _get(ch, queue).body == b'dash'


def test_publish_count_with_confirms_reports_the_rate(url, ch, queue):
    proc = cli('publish', '--url', url, '-r', queue, '--count', '2500',
               '--confirm', 'x' * 100)
    assert proc.returncode == 0, err(proc)
    text = out(proc)
    assert text.startswith('published 2,500 messages of 100 bytes')
    assert 'msgs/s; all confirmed' in text
    assert _count(ch, queue) == 2500
    assert '\r' not in err(proc)   # no progress line when not a terminal


def test_publish_shows_progress_on_a_terminal(url, ch, queue):
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, '-m', 'amqp', 'publish', '--url', url,
             '-r', queue, '-n', '300', 'p'],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
            timeout=60)
        os.close(slave)
        slave = None
        terminal = b''
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:   # EIO: the other side is closed
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    assert proc.returncode == 0
    assert b'\rpublished 300 of 300 (100%)' in terminal
    assert b'published 300 messages' in proc.stdout
    assert _count(ch, queue) == 300


def test_publish_to_an_exchange_with_a_routing_key(url, ch, queue):
    exchange = 'cli-x-' + uuid.uuid4().hex[:8]
    ch.exchange_declare(exchange, 'topic', auto_delete=False)
    try:
        ch.queue_bind(queue, exchange, 'logs.*')
        proc = cli('publish', '--url', url, '-e', exchange,
                   '-r', 'logs.error', '--confirm', 'boom')
        assert proc.returncode == 0, err(proc)
        assert "to exchange '%s' with routing key 'logs.error'" % exchange \
            in out(proc)
        msg = _get(ch, queue)
        assert msg.body == b'boom'
        assert msg.delivery_info['exchange'] == exchange
    finally:
        ch.exchange_delete(exchange)


def test_publish_mandatory_unroutable_exits_9(url):
    proc = cli('publish', '--url', url, '-r', 'cli-nobody-' + uuid.uuid4().hex,
               '--mandatory', '-n', '3', 'lost')
    assert proc.returncode == EXIT_UNCONFIRMED
    line = one_line_error(proc)
    assert '3 of 3 messages not accepted: 3 returned unroutable' in line


@pytest.mark.parametrize('confirm', [[], ['--confirm']])
def test_publish_to_a_missing_exchange_exits_6(url, confirm):
    proc = cli('publish', '--url', url, '-e', 'cli-no-such-exchange',
               'x', *confirm)
    assert proc.returncode == EXIT_NOT_FOUND
    assert "no exchange 'cli-no-such-exchange'" in one_line_error(proc)


def test_publish_without_a_body_is_a_usage_error(url):
    proc = cli('publish', '--url', url, 'a', '--file', '/etc/hostname')
    assert proc.returncode == EXIT_USAGE
    assert 'not both' in one_line_error(proc)
    proc = cli('publish', '--url', url, '--file', '/nonexistent/body')
    assert proc.returncode == EXIT_USAGE
    assert 'cannot read /nonexistent/body' in one_line_error(proc)


# -- consume --------------------------------------------------------------
def test_consume_count_prints_and_acks(url, ch, queue):
    _publish(ch, queue, b'one', b'two', b'three', b'four',
             content_type='text/plain')
    proc = cli('consume', queue, '--url', url, '--count', '3')
    assert proc.returncode == 0, err(proc)
    text = out(proc)
    assert text.count('--- message ') == 3
    assert "--- message 1: routing key '%s' from the default exchange, " \
        "delivery tag 1" % queue in text
    assert 'content_type: text/plain' in text
    assert text.splitlines()[2] == 'one'
    assert 'four' not in text
    assert err(proc).strip() == "consumed 3 messages from queue '%s'" % queue
    # the three printed were acked; the fourth stays, never delivered
    assert _count(ch, queue) == 1
    assert not _get(ch, queue).delivery_info['redelivered']


def test_consume_count_above_prefetch_takes_no_extra_message(url, ch,
                                                             queue):
    _publish(ch, queue, *[b'%d' % i for i in range(10)])
    proc = cli('consume', queue, '--url', url, '-n', '7', '--prefetch', '2',
               '--body-only')
    assert proc.returncode == 0, err(proc)
    assert out(proc).split() == [str(i) for i in range(7)]
    assert _count(ch, queue) == 3
    for i in (7, 8, 9):
        msg = _get(ch, queue)
        assert (msg.body, msg.delivery_info['redelivered']) == (
            b'%d' % i, False)


def test_consume_json_lines(url, ch, queue):
    _publish(ch, queue, b'{"a": 1}', content_type='application/json',
             application_headers={'k': 'v', 'n': 7})
    _publish(ch, queue, b'\xff\x00binary')
    proc = cli('consume', queue, '--url', url, '-n', '2', '--json')
    assert proc.returncode == 0, err(proc)
    first, second = [json.loads(line) for line in out(proc).splitlines()]
    assert first['body'] == '{"a": 1}'
    assert first['body_encoding'] == 'utf-8'
    assert first['properties'] == {'content_type': 'application/json',
                                   'application_headers': {'k': 'v',
                                                           'n': 7}}
    assert first['delivery_info']['routing_key'] == queue
    assert first['delivery_info']['redelivered'] is False
    assert second['body_encoding'] == 'base64'
    import base64
    assert base64.b64decode(second['body']) == b'\xff\x00binary'


def test_consume_no_ack_and_body_only(url, ch, queue):
    _publish(ch, queue, b'a', b'b')
    proc = cli('consume', queue, '--url', url, '-n', '2', '--no-ack',
               '--body-only')
    assert proc.returncode == 0, err(proc)
    assert out(proc) == 'a\nb\n'
    assert _count(ch, queue) == 0


def test_consume_timeout_before_count_exits_10(url, ch, queue):
    _publish(ch, queue, b'only')
    started = time.monotonic()
    proc = cli('consume', queue, '--url', url, '-n', '2', '--timeout', '1',
               '--body-only')
    assert proc.returncode == EXIT_EMPTY
    assert out(proc) == 'only\n'
    assert 'no message for 1 s' in err(proc)
    assert time.monotonic() - started < 15
    # --timeout without --count: an idle queue is not an error
    proc = cli('consume', queue, '--url', url, '--timeout', '0.5')
    assert proc.returncode == 0, err(proc)


def test_consume_stops_cleanly_on_sigint(url, ch, queue):
    _publish(ch, queue, b'before')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'amqp', 'consume', queue, '--url', url,
         '--body-only'],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout.readline() == b'before\n'
        ch.basic_publish(amqp.Message(b'after'), '', queue)
        assert proc.stdout.readline() == b'after\n'
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert stdout == b''
    assert b'Traceback' not in stderr
    assert stderr.decode().strip() == (
        "consumed 2 messages from queue '%s' (interrupted)" % queue)
    info = ch.queue_declare(queue, passive=True)
    assert (info.message_count, info.consumer_count) == (0, 0)


def test_consume_missing_queue_exits_6(url):
    proc = cli('consume', 'cli-no-such-queue', '--url', url)
    assert proc.returncode == EXIT_NOT_FOUND
    line = one_line_error(proc)
    assert "no queue 'cli-no-such-queue'" in line


# -- get ------------------------------------------------------------------
def test_get_acks_by_default(url, ch, queue):
    _publish(ch, queue, b'first', b'second', message_id='m1')
    proc = cli('get', queue, '--url', url)
    assert proc.returncode == 0, err(proc)
    assert '1 more in the queue' in out(proc)
    assert 'message_id: m1' in out(proc)
    assert out(proc).splitlines()[-1] == 'first'
    assert _count(ch, queue) == 1


def test_get_requeue_and_count(url, ch, queue):
    _publish(ch, queue, b'1', b'2', b'3')
    proc = cli('get', queue, '--url', url, '-n', '2', '--requeue',
               '--body-only')
    assert proc.returncode == 0, err(proc)
    assert out(proc) == '1\n2\n'
    assert _count(ch, queue) == 3
    proc = cli('get', queue, '--url', url, '-n', '5', '--json')
    assert proc.returncode == 0, err(proc)
    got = [json.loads(line) for line in out(proc).splitlines()]
    assert [m['body'] for m in got] == ['1', '2', '3']
    assert got[0]['delivery_info']['redelivered'] is True
    assert 'got 3 of 5 messages' in err(proc)
    assert _count(ch, queue) == 0


def test_get_no_ack(url, ch, queue):
    _publish(ch, queue, b'gone')
    proc = cli('get', queue, '--url', url, '--no-ack', '--body-only')
    assert (proc.returncode, out(proc)) == (0, 'gone\n')
    assert _count(ch, queue) == 0
    proc = cli('get', queue, '--url', url, '--no-ack', '--requeue')
    assert proc.returncode == EXIT_USAGE


def test_get_empty_queue_exits_10(url, queue):
    proc = cli('get', queue, '--url', url)
    assert proc.returncode == EXIT_EMPTY
    assert one_line_error(proc) == "amqp: queue '%s' is empty" % queue
    assert out(proc) == ''


def test_get_missing_queue_exits_6(url):
    proc = cli('get', 'cli-no-such-queue', '--url', url)
    assert proc.returncode == EXIT_NOT_FOUND
    assert one_line_error(proc) == (
        "amqp: NOT_FOUND - no queue 'cli-no-such-queue' in vhost '/' "
        "(Basic.get)")


# -- topology -------------------------------------------------------------
def test_declare_queue_with_arguments(url, ch):
    name = 'cli-dq-' + uuid.uuid4().hex[:8]
    proc = cli('declare-queue', name, '--url', url, '--durable',
               '--arg', 'x-max-length:=2', '--arg', 'x-overflow=drop-head')
    try:
        assert proc.returncode == 0, err(proc)
        assert out(proc) == ("queue '%s' declared (classic, durable): "
                             "0 messages, 0 consumers\n" % name)
        _publish(ch, name, b'1', b'2')
        ch.basic_publish(amqp.Message(b'3'), '', name)
        assert _get(ch, name).body == b'2'   # x-max-length dropped 1
        # same name, different durability: the broker refuses
        proc = cli('declare-queue', name, '--url', url)
        assert proc.returncode == EXIT_REFUSED
        assert 'PRECONDITION_FAILED' in one_line_error(proc)
        proc = cli('declare-queue', name, '--url', url, '--passive',
                   '--json')
        assert json.loads(out(proc)) == {
            'queue': name, 'message_count': 1, 'consumer_count': 0}
    finally:
        ch.queue_delete(name)


def test_declare_queue_server_named_and_quorum(url, ch):
    proc = cli('declare-queue', '--url', url, '--json')
    assert proc.returncode == 0, err(proc)
    name = json.loads(out(proc))['queue']
    assert name.startswith('amq.gen-')
    ch.queue_delete(name)
    name = 'cli-qq-' + uuid.uuid4().hex[:8]
    proc = cli('declare-queue', name, '--url', url, '--type', 'quorum')
    try:
        assert proc.returncode == 0, err(proc)
        assert '(quorum, durable)' in out(proc)
        # declaring it as a classic queue now is refused: it is quorum
        with pytest.raises(amqp.PreconditionFailed):
            ch.queue_declare(name, durable=True, auto_delete=False)
    finally:
        ch = ch.connection.channel()
        ch.queue_delete(name)


def test_declare_queue_passive_missing_exits_6(url):
    proc = cli('declare-queue', 'cli-no-such-queue', '--passive',
               '--url', url)
    assert proc.returncode == EXIT_NOT_FOUND


def test_declare_exchange(url, ch):
    name = 'cli-dx-' + uuid.uuid4().hex[:8]
    proc = cli('declare-exchange', name, '--type', 'fanout', '--durable',
               '--url', url)
    try:
        assert proc.returncode == 0, err(proc)
        assert out(proc) == "exchange '%s' declared (fanout, durable)\n" \
            % name
        ch.exchange_declare(name, 'fanout', passive=True)
        proc = cli('declare-exchange', name, '--passive', '--url', url)
        assert out(proc) == "exchange '%s' exists\n" % name
        proc = cli('declare-exchange', name, '--type', 'topic',
                   '--url', url)
        assert proc.returncode == EXIT_REFUSED
        assert 'PRECONDITION_FAILED' in one_line_error(proc)
    finally:
        ch.exchange_delete(name)
    proc = cli('declare-exchange', name, '--type', 'no-such-type',
               '--url', url)
    assert proc.returncode == EXIT_REFUSED
    assert "unknown exchange type 'no-such-type'" in one_line_error(proc)


def test_bind_and_unbind_a_queue(url, ch, queue):
    exchange = 'cli-bx-' + uuid.uuid4().hex[:8]
    ch.exchange_declare(exchange, 'direct', auto_delete=False)
    try:
        proc = cli('bind', exchange, queue, '-r', 'k1', '--url', url)
        assert proc.returncode == 0, err(proc)
        assert out(proc) == ("bound queue '%s' to exchange '%s' with "
                             "routing key 'k1'\n" % (queue, exchange))
        ok = cli('publish', '-e', exchange, '-r', 'k1', '--mandatory', 'm',
                 '--url', url)
        assert ok.returncode == 0, err(ok)
        assert _get(ch, queue).body == b'm'
        proc = cli('unbind', exchange, queue, '-r', 'k1', '--url', url)
        assert proc.returncode == 0, err(proc)
        assert out(proc).startswith("unbound queue '%s' from exchange"
                                    % queue)
        lost = cli('publish', '-e', exchange, '-r', 'k1', '--mandatory',
                   'm', '--url', url)
        assert lost.returncode == EXIT_UNCONFIRMED
    finally:
        ch.exchange_delete(exchange)


def test_bind_an_exchange_to_an_exchange(url, ch, queue):
    source = 'cli-src-' + uuid.uuid4().hex[:8]
    dest = 'cli-dst-' + uuid.uuid4().hex[:8]
    ch.exchange_declare(source, 'fanout', auto_delete=False)
    ch.exchange_declare(dest, 'fanout', auto_delete=False)
    ch.queue_bind(queue, dest)
    try:
        proc = cli('bind', source, dest, '--to-exchange', '--url', url)
        assert proc.returncode == 0, err(proc)
        assert out(proc).startswith("bound exchange '%s' to exchange '%s'"
                                    % (dest, source))
        assert cli('publish', '-e', source, '--confirm', 'via',
                   '--url', url).returncode == 0
        assert _get(ch, queue).body == b'via'
        proc = cli('unbind', source, dest, '--to-exchange', '--url', url)
        assert proc.returncode == 0, err(proc)
    finally:
        ch.exchange_delete(source)
        ch.exchange_delete(dest)


def test_bind_to_a_missing_exchange_exits_6(url, queue):
    proc = cli('bind', 'cli-no-such-exchange', queue, '--url', url)
    assert proc.returncode == EXIT_NOT_FOUND
    assert "no exchange 'cli-no-such-exchange'" in one_line_error(proc)


def test_purge(url, ch, queue):
    _publish(ch, queue, b'1', b'2', b'3')
    proc = cli('purge', queue, '--url', url)
    assert proc.returncode == 0, err(proc)
    assert out(proc) == "purged 3 messages from queue '%s'\n" % queue
    assert _count(ch, queue) == 0
    proc = cli('purge', 'cli-no-such-queue', '--url', url)
    assert proc.returncode == EXIT_NOT_FOUND


def test_delete_queue(url, ch, queue):
    _publish(ch, queue, b'1')
    proc = cli('delete', 'queue', queue, '--if-empty', '--url', url)
    assert proc.returncode == EXIT_REFUSED
    assert 'PRECONDITION_FAILED' in one_line_error(proc)
    proc = cli('delete', 'queue', queue, '--url', url)
    assert proc.returncode == 0, err(proc)
    assert out(proc) == "deleted queue '%s' (1 message)\n" % queue
    with pytest.raises(amqp.NotFound):
        ch.queue_declare(queue, passive=True)
    proc = cli('delete', 'queue', queue, '--url', url)
    assert proc.returncode == EXIT_NOT_FOUND
    assert "no queue '%s'" % queue in one_line_error(proc)


def test_delete_exchange(url, ch):
    name = 'cli-del-' + uuid.uuid4().hex[:8]
    ch.exchange_declare(name, 'topic', auto_delete=False)
    proc = cli('delete', 'exchange', name, '--url', url)
    assert proc.returncode == 0, err(proc)
    assert out(proc) == "deleted exchange '%s'\n" % name
    proc = cli('delete', 'exchange', name, '--url', url)
    assert proc.returncode == EXIT_NOT_FOUND
    proc = cli('delete', 'exchange', 'amq.direct', '--url', url)
    assert proc.returncode == EXIT_REFUSED
    assert 'ACCESS_REFUSED' in one_line_error(proc)
    proc = cli('delete', 'exchange', name, '--if-empty', '--url', url)
    assert proc.returncode == EXIT_USAGE


# -- shell ----------------------------------------------------------------
SHELL_SCRIPT = b'''\
import logging
wire = logging.getLogger('amqp.wire')
print('wire level', wire.getEffectiveLevel())
print('wire to stderr', any(getattr(h, 'stream', None) is sys.stderr
                            for h in wire.handlers))
print('open', connection.connected, channel.is_open)
q = channel.queue_declare('', exclusive=True).queue
channel.basic_publish(Message(b'from the shell'), '', q)
m = None
while m is None: m = channel.basic_get(q)

print('got', m.body)
'''


def test_shell_binds_connection_and_channel_with_the_trace_on(url):
    proc = cli('shell', '--url', url, input=b'import sys\n' + SHELL_SCRIPT)
    assert proc.returncode == 0, err(proc)
    text = out(proc)
    assert 'wire level 10' in text          # logging.DEBUG
    assert 'wire to stderr True' in text
    assert 'open True True' in text
    assert "got b'from the shell'" in text
    banner = err(proc)
    assert 'connected to amqp://guest:***@' in banner
    assert '<AMQP Connection guest@' in banner
    assert 'guest:guest' not in banner


def test_shell_no_trace(url):
    proc = cli('shell', '--no-trace', '--url', url,
               input=b'import sys\n' + SHELL_SCRIPT)
    assert proc.returncode == 0, err(proc)
    assert 'wire level 10' not in out(proc)
    assert 'wire to stderr False' in out(proc)


# -- errors a shell user can act on ---------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _assert_no_password(proc):
    assert PASSWORD_IN_URL.encode() not in proc.stdout + proc.stderr


@pytest.mark.parametrize('command', [['ping'], ['get', 'q'],
                                     ['publish', 'x']])
def test_unreachable_broker_exits_3(command):
    port = _free_port()
    proc = cli(*command, '--url', 'amqp://guest:%s@127.0.0.1:%d//' % (
        PASSWORD_IN_URL, port))
    assert proc.returncode == EXIT_UNREACHABLE
    line = one_line_error(proc)
    assert 'cannot connect to 127.0.0.1:%d' % port in line
    _assert_no_password(proc)


def test_unknown_host_exits_3():
    proc = cli('ping', '--url', 'amqp://guest:guest@no-such-host.invalid//')
    assert proc.returncode == EXIT_UNREACHABLE
    assert 'no-such-host.invalid:5672' in one_line_error(proc)


def test_login_refused_exits_4(broker):
    proc = cli('ping', '--url', 'amqp://guest:%s@%s:%s//' % (
        PASSWORD_IN_URL, broker.host, broker.port))
    assert proc.returncode == EXIT_LOGIN
    line = one_line_error(proc)
    assert line.startswith("amqp: login refused by %s:%s for user 'guest'"
                           % (broker.host, broker.port))
    assert 'ACCESS_REFUSED' in line
    _assert_no_password(proc)


def test_missing_vhost_exits_5(broker):
    proc = cli('purge', 'q', '--url', 'amqp://guest:guest@%s:%s/no-vhost'
               % (broker.host, broker.port))
    assert proc.returncode == EXIT_VHOST
    line = one_line_error(proc)
    assert "virtual host 'no-vhost' on %s:%s" % (broker.host, broker.port) \
        in line
    assert 'NOT_ALLOWED' in line


@pytest.fixture
def http_server():
    """A TCP server answering every connection like a confused web
    server; yields its port."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                sock, _ = server.accept()
            except socket.timeout:
                continue
            with sock:
                sock.settimeout(5)
                try:
                    sock.recv(64)
                    sock.sendall(b'HTTP/1.1 400 Bad Request\r\n\r\n')
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def test_peer_that_is_not_an_amqp_server_exits_7(http_server):
    proc = cli('ping', '--url', 'amqp://guest:%s@127.0.0.1:%d//' % (
        PASSWORD_IN_URL, http_server))
    assert proc.returncode == EXIT_NOT_AMQP
    assert '127.0.0.1:%d' % http_server in one_line_error(proc)
    _assert_no_password(proc)


def test_peer_that_closes_during_the_handshake_exits_7():
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)

    def close_at_once():
        sock, _ = server.accept()
        sock.recv(8)
        sock.close()

    thread = threading.Thread(target=close_at_once, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    try:
        proc = cli('ping', '--url', 'amqp://127.0.0.1:%d//' % port)
    finally:
        thread.join(5)
        server.close()
    assert proc.returncode == EXIT_NOT_AMQP
    assert '127.0.0.1:%d closed the connection' % port in \
        one_line_error(proc)


@pytest.mark.parametrize('args,expected', [
    (['ping', '--url', 'http://guest:%s@h//' % PASSWORD_IN_URL],
     "bad URL http://guest:***@h//: unsupported URL scheme 'http'"),
    (['ping', '--url', 'amqp://h//', '--cacert', 'ca.pem'],
     'need an amqps:// URL'),
])
def test_usage_errors_exit_2(args, expected):
    proc = cli(*args)
    assert proc.returncode == EXIT_USAGE
    assert expected in one_line_error(proc)
    _assert_no_password(proc)


def test_argument_errors_exit_2():
    for args in (['publish', '-H', 'novalue', 'x'],
                 ['publish', '-H', 'k:={bad json', 'x'],
                 ['consume', 'q', '--count', '0'],
                 ['publish', '--priority', '256', 'x'],
                 ['no-such-command']):
        proc = cli(*args)
        assert proc.returncode == EXIT_USAGE, args
        assert b'error:' in proc.stderr


# -- other users, --trace, closed stdout -----------------------------------
@pytest.fixture(scope='module')
def other_user(broker):
    """A user with a password distinct from its name, allowed on '/'."""
    name = 'cli-user-' + uuid.uuid4().hex[:6]
    broker.ctl('add_user', name, PASSWORD_IN_URL)
    broker.ctl('set_permissions', '-p', '/', name, '.*', '.*', '.*')
    yield 'amqp://%s:%s@%s:%s//' % (name, PASSWORD_IN_URL, broker.host,
                                    broker.port)
    broker.ctl('delete_user', name)


def test_trace_and_output_never_show_the_password(other_user, queue):
    proc = cli('--trace', 'publish', '-r', queue, 'traced',
               url=other_user)
    assert proc.returncode == 0, err(proc)
    proc = cli('get', queue, '--trace', '--json', url=other_user)
    assert proc.returncode == 0, err(proc)
    assert json.loads(out(proc))['body'] == 'traced'
    proc = cli('ping', '--trace', url=other_user)
    assert proc.returncode == 0, err(proc)
    assert out(proc).startswith('amqp://cli-user-')
    assert ':***@' in out(proc)
    _assert_no_password(proc)
    proc = cli('shell', url=other_user, input=b'print(connection)\n')
    assert proc.returncode == 0, err(proc)
    assert '<AMQP Connection cli-user-' in out(proc)
    _assert_no_password(proc)


def test_consume_into_a_closed_pipe_exits_141_and_keeps_the_rest(url, ch,
                                                                 queue):
    # Bodies big enough that two fill the pipe: the command is blocked
    # writing when the reader goes away, however slow this test runs.
    filler = b'.' * 40000
    _publish(ch, queue, *[b'line %d ' % i + filler for i in range(50)])
    proc = subprocess.Popen(
        [sys.executable, '-m', 'amqp', 'consume', queue, '--url', url,
         '--body-only', '--prefetch', '1'],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()          # like `| head -1`
        stderr = proc.stderr.read()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first == b'line 0 ' + filler + b'\n'
    assert proc.returncode == 141, stderr
    assert b'Traceback' not in stderr
    # what could not be written was not acknowledged: it is back
    deadline = time.monotonic() + 10
    while ch.queue_declare(queue, passive=True).consumer_count:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    left = _count(ch, queue)
    assert 45 <= left <= 49
