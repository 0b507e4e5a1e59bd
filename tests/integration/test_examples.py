"""The programs in ``examples/`` run against the session's RabbitMQ and do
what they say.  (``tests/unit/test_typing.py`` type-checks them.)"""
import os
import socket
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / 'examples'


def run_example(name, *args, timeout=120):
    environ = {k: v for k, v in os.environ.items() if k != 'AMQP_URL'}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)] + list(args),
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        env=environ, timeout=timeout, check=False)


def test_typed_client(broker):
    done = run_example('typed_client.py', broker.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ''
    lines = done.stdout.splitlines()
    assert lines[-1] == 'OK', lines
    for expected in (
            'published 3 messages, all confirmed',
            'published 1 message with confirm_publish=True',
            "basic_get: b'first'",
            "consumed and acked [b'second', b'third', b'fourth']",
            'unroutable publish: returned delivery tags [4]'):
        assert expected in lines, lines
    assert any(line.startswith('missing queue: NotFound 404: NOT_FOUND')
               for line in lines), lines


def test_typed_client_reports_an_unreachable_broker():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    done = run_example('typed_client.py',
                       'amqp://guest:guest@127.0.0.1:%d//' % port)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith('cannot talk to the broker: '), \
        done.stderr
