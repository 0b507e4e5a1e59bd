"""Reprs of Connection and Channel show their state at a glance (the
REPL and ``amqp shell``) and never the password."""
import re

import amqp


def test_connection_repr_through_its_life(broker):
    conn = amqp.Connection('%s:%s' % (broker.host, broker.port),
                           userid='guest', password='guest')
    assert re.match(r"<AMQP Connection guest@[\d.]+:\d+ vhost='/' not "
                    r"connected at 0x[0-9a-f]+>$", repr(conn))
    conn.connect()
    try:
        ch = conn.channel()
        conn.channel()
        text = repr(conn)
        assert "vhost='/' open, 2 channels" in text
        assert 'channel_max=%d frame_max=%d heartbeat=0' % (
            conn.channel_max, conn.frame_max) in text
        assert 'guest@' in text and 'password' not in text
        ch.close()
        assert 'open, 1 channel,' in repr(conn)
    finally:
        conn.close()
    assert "vhost='/' closed, channel_max=" in repr(conn)


def test_password_never_in_repr(broker):
    url = 'amqp://guest:guest@%s:%s//' % (broker.host, broker.port)
    conn = amqp.Connection.from_url(url)
    conn.connect()
    try:
        assert ':guest' not in repr(conn)
        assert ':guest' not in repr(conn.channel())
    finally:
        conn.close()


def test_channel_repr_shows_consumers_confirms_and_broker_close(conn):
    ch = conn.channel()
    assert re.match(r'<AMQP Channel \d+ open at 0x[0-9a-f]+>$', repr(ch))
    queue = ch.queue_declare('', exclusive=True).queue
    tag = ch.basic_consume(queue, callback=lambda m: None)
    ch.confirm_select()
    ch.basic_publish(amqp.Message(b'x'), '', 'no-such-queue-for-repr')
    text = repr(ch)
    assert 'consumers=[%r]' % tag in text
    assert 'confirm mode (1 unconfirmed)' in text
    ch.wait_for_confirms(10)
    assert 'confirm mode (0 unconfirmed)' in repr(ch)
    try:
        ch.queue_declare('no-such-queue-for-repr', passive=True)
    except amqp.NotFound:
        pass
    assert 'closed by the broker (404), reopens on next use' in repr(ch)
    ch.close()
    assert re.match(r'<AMQP Channel \d+ closed at 0x[0-9a-f]+>$', repr(ch))


def test_received_message_repr(conn, ch):
    queue = ch.queue_declare('', exclusive=True).queue
    ch.basic_publish(amqp.Message(b'hello', content_type='text/plain'),
                     '', queue)
    msg = None
    while msg is None:
        msg = ch.basic_get(queue)
    text = repr(msg)
    assert "routing_key='%s'" % queue in text
    assert "content_type='text/plain'" in text
    assert "body=b'hello'" in text
    assert 'message_count=0' in text
