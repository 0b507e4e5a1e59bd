"""Messages cross between pika 1.x (BlockingConnection) and this package
with all 14 basic properties intact, including nested header tables and
arrays (AMQP 0-9-1 class basic content properties)."""
import datetime
import decimal

import pika
import pytest

from amqp import Message
from testkit import drain_until, get_eventually, unique_name, wait_until

TIMESTAMP = 1700000000

HEADERS = {
    'str': 'value',
    'int': 42,
    'negative': -7,
    'big': 2 ** 40,
    'bool': True,
    'nested': {'inner': {'deep': 'x', 'n': 1}, 'list': [1, 'two', [3]]},
    'array': [1, 'a', {'t': 'table'}, [True, False]],
    'bytes': b'\x00\x01binary',
    'decimal': decimal.Decimal('3.14'),
    'empty_table': {},
    'empty_array': [],
}


def _props():
    return dict(content_type='application/json', content_encoding='utf-8',
                application_headers=HEADERS, delivery_mode=2, priority=5,
                correlation_id='corr-1', reply_to='reply.q',
                expiration='60000', message_id='msg-1',
                timestamp=TIMESTAMP, type='test.type', user_id='guest',
                app_id='interop-test', cluster_id='cluster-x')


def _pika_props():
    p = dict(_props())
    p['headers'] = p.pop('application_headers')
    return pika.BasicProperties(**p)


def _normalise(value):
    """pika decodes header byte strings as bytes or str depending on type
    tag; compare on text."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, bytes):
        return value.decode('latin-1')
    return value


@pytest.fixture
def pika_channel(broker):
    params = pika.ConnectionParameters(
        host=broker.host, port=broker.port,
        credentials=pika.PlainCredentials('guest', 'guest'))
    connection = pika.BlockingConnection(params)
    yield connection.channel()
    connection.close()


def _queue(ch):
    # not exclusive: the pika connection uses it too
    return ch.queue_declare(unique_name('interop'), auto_delete=False).queue


def _check_our_props(props):
    expected = _props()
    assert set(props) == set(expected)
    for key, value in expected.items():
        got = props[key]
        if key == 'timestamp':
            if isinstance(got, datetime.datetime):
                got = int(got.replace(tzinfo=datetime.timezone.utc)
                          .timestamp())
            assert got == value
        elif key == 'application_headers':
            assert _normalise(got) == _normalise(value)
        else:
            assert got == value, key


@pytest.mark.parametrize('body', [b'', b'{"k": "v"}', bytes(range(256)),
                                  b'x' * 300000])
def test_pika_to_amqp(pika_channel, ch, body):
    q = _queue(ch)
    try:
        pika_channel.basic_publish('', q, body, _pika_props())
        m = get_eventually(ch, q, no_ack=True)
        _check_our_props(m.properties)
        expected = body.decode('utf-8') if body != bytes(range(256)) \
            else body
        assert m.body == expected
        assert m.delivery_info['routing_key'] == q
    finally:
        ch.queue_delete(q)


@pytest.mark.parametrize('body', [b'', b'{"k": "v"}', bytes(range(256)),
                                  b'x' * 300000])
def test_amqp_to_pika(pika_channel, ch, body):
    q = _queue(ch)
    try:
        ch.basic_publish(Message(body, **_props()), '', q)

        def pika_get():
            method, props, got = pika_channel.basic_get(q, auto_ack=True)
            return method is not None and (props, got)

        props, got = wait_until(pika_get, what='a message for pika')
        assert got == body
        theirs = {k: getattr(props, k) for k in (
            'content_type', 'content_encoding', 'delivery_mode', 'priority',
            'correlation_id', 'reply_to', 'expiration', 'message_id',
            'timestamp', 'type', 'user_id', 'app_id', 'cluster_id')}
        theirs['application_headers'] = props.headers
        _check_our_props(theirs)
    finally:
        ch.queue_delete(q)


def test_amqp_consumes_pika_stream(pika_channel, conn, ch):
    q = _queue(ch)
    got = []
    ch.basic_consume(q, callback=got.append, no_ack=True)
    for i in range(50):
        pika_channel.basic_publish('', q, str(i).encode(),
                                   pika.BasicProperties(
                                       content_encoding='utf-8',
                                       headers={'i': i}))
    drain_until(conn, lambda: len(got) >= 50, timeout=10)
    assert [m.body for m in got] == [str(i) for i in range(50)]
    assert [m.headers['i'] for m in got] == list(range(50))
    ch.basic_cancel(got[0].delivery_info['consumer_tag'])
    ch.queue_delete(q)
