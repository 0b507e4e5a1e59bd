"""The ``amqp.wire`` trace against the real broker: one line per method
and heartbeat, in order, with credentials redacted; nothing when off."""
import logging
import re
import uuid

import pytest

from amqp import Connection, Message


@pytest.fixture
def secret_user(broker):
    """A user whose password appears nowhere else."""
    name = 'wire-%s' % uuid.uuid4().hex[:8]
    password = 'S3cret-%s' % uuid.uuid4().hex
    broker.ctl('add_user', name, password)
    broker.ctl('set_permissions', '-p', '/', name, '.*', '.*', '.*')
    yield name, password
    broker.ctl('delete_user', name)


def _connect(broker, user, password, **kwargs):
    conn = Connection('%s:%s' % (broker.host, broker.port), userid=user,
                      password=password, connect_timeout=10, **kwargs)
    conn.connect()
    return conn


def test_publish_and_get_traced_line_by_line(broker, secret_user, caplog):
    user, password = secret_user
    caplog.set_level(logging.DEBUG, logger='amqp.wire')
    conn = _connect(broker, user, password, login_method='PLAIN')
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    ch.basic_publish(Message(b'hello', content_type='text/plain',
                             application_headers={'k': 1}), '', q)
    assert ch.basic_get(q, no_ack=True).body == b'hello'
    conn.close()
    lines = [r.getMessage() for r in caplog.records if r.name == 'amqp.wire']
    host = '%s:%s' % (broker.host, broker.port)
    assert all(line.startswith(host + ' ') for line in lines)
    lines = [line[len(host) + 1:] for line in lines]
    expected = [
        r"> protocol header b'AMQP\\x00\\x00\\t\\x01'",
        r"< ch0 connection\.start\(version_major=0, version_minor=9, "
        r"server_properties=\{.*, mechanisms='.*PLAIN.*', "
        r"locales='en_US'\)",
        r"> ch0 connection\.start-ok\(client_properties=\{'product': "
        r"'amqp'.*, mechanism='PLAIN', response=<redacted \d+ bytes>, "
        r"locale='en_US'\)",
        r"< ch0 connection\.tune\(channel_max=\d+, frame_max=\d+, "
        r"heartbeat=\d+\)",
        r"> ch0 connection\.tune-ok\(channel_max=\d+, frame_max=\d+, "
        r"heartbeat=0\)",
        r"> ch0 connection\.open\(virtual_host='/', capabilities='', "
        r"insist=False\)",
        r"< ch0 connection\.open-ok\(known_hosts=''\)",
        r"> ch1 channel\.open\(out_of_band=''\)",
        r"< ch1 channel\.open-ok\(channel_id=''\)",
        r"> ch1 queue\.declare\(queue='', passive=False, durable=False, "
        r"exclusive=True, auto_delete=True, nowait=False, arguments=\{\}\)",
        r"< ch1 queue\.declare-ok\(queue='%s', message_count=0, "
        r"consumer_count=0\)" % re.escape(q),
        r"> ch1 basic\.publish\(exchange='', routing_key='%s', "
        r"mandatory=False, immediate=False\) \+content 5 bytes "
        r"\{'content_type': 'text/plain', 'application_headers': "
        r"\{'k': 1\}\}" % re.escape(q),
        r"> ch1 basic\.get\(queue='%s', no_ack=True\)" % re.escape(q),
        r"< ch1 basic\.get-ok\(delivery_tag=1, redelivered=False, "
        r"exchange='', routing_key='%s', message_count=0\) \+content 5 "
        r"bytes \{'content_type': 'text/plain', 'application_headers': "
        r"\{'k': 1\}\}" % re.escape(q),
        r"> ch0 connection\.close\(reply_code=0, reply_text='', "
        r"class_id=0, method_id=0\)",
        r"< ch0 connection\.close-ok\(\)",
    ]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert not any(password in line for line in lines)
    assert not any('hello' in line for line in lines)   # bodies: size only


def test_heartbeats_and_update_secret_are_traced_redacted(broker, caplog):
    caplog.set_level(logging.DEBUG, logger='amqp.wire')
    conn = broker.connect(heartbeat=1)
    try:
        conn.send_heartbeat()
        conn.update_secret('Tok3n-never-logged', 'refresh')
    finally:
        conn.close()
    lines = [r.getMessage() for r in caplog.records if r.name == 'amqp.wire']
    assert any(line.endswith('> heartbeat') for line in lines)
    secret_lines = [line for line in lines if 'update-secret(' in line]
    assert len(secret_lines) == 1
    assert 'new_secret=<redacted 18 bytes>' in secret_lines[0]
    assert "reason='refresh'" in secret_lines[0]
    assert not any('Tok3n' in line for line in lines)


def test_trace_off_wraps_nothing(broker, caplog):
    """Off at connect time: the frame writer and handler are the plain
    ones (so the trace costs nothing) and no record is made."""
    from amqp.method_framing import frame_writer
    caplog.set_level(logging.INFO, logger='amqp.wire')
    conn = broker.connect()
    try:
        plain = frame_writer(conn, conn.transport)
        # the plain writer: a function, or its compiled twin
        assert type(conn.frame_writer) is type(plain)
        assert getattr(conn.frame_writer, '__qualname__', None) == \
            getattr(plain, '__qualname__', None)
        ch = conn.channel()
        ch.queue_declare('', exclusive=True)
    finally:
        conn.close()
    assert [r for r in caplog.records if r.name == 'amqp.wire'] == []
