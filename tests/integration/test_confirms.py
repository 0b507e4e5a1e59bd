"""Publisher confirms against RabbitMQ: per-message waits
(``confirm_publish``), pipelined ``wait_for_confirms``, per-publish
callbacks, real nacks from an ``x-overflow=reject-publish`` queue, returns,
and kombu 5.7's ``Producer.batch()`` on top of ``create_publish_batch``
(RabbitMQ publisher confirms extension)."""
import socket

import kombu
import pytest

from amqp import Message
from amqp.exceptions import MessageNacked, NoRoute, PublishConfirmError
from testkit import unique_name


@pytest.fixture
def cconn(broker):
    c = broker.connect(confirm_publish=True)
    yield c
    c.close()


def _reject_queue(ch, max_length=1):
    return ch.queue_declare('', exclusive=True, arguments={
        'x-max-length': max_length, 'x-overflow': 'reject-publish'}).queue


def test_confirm_publish_waits_and_raises_on_nack(cconn):
    ch = cconn.channel()
    q = _reject_queue(ch)
    assert ch.basic_publish(Message('1'), '', q) is None
    assert ch.queue_declare(q, passive=True).message_count == 1  # acked
    with pytest.raises(MessageNacked):
        ch.basic_publish(Message('2'), '', q, confirm_timeout=5)
    assert ch.is_open
    assert ch.basic_get(q, no_ack=True).body == '1'
    assert ch.basic_publish(Message('3'), '', q) is None


def test_confirm_publish_returned_mandatory_raises(cconn):
    ch = cconn.channel()
    with pytest.raises(NoRoute):
        ch.basic_publish(Message('x'), '', unique_name('nowhere'),
                         mandatory=True)
    returned = []
    ch.events['basic_return'].add(lambda *a: returned.append(a))
    ch.basic_publish(Message('y'), '', unique_name('nowhere'), mandatory=True)
    assert len(returned) == 1 and returned[0][3].body == b'y'


def test_basic_publish_confirm_on_plain_connection(conn):
    ch = conn.channel()
    q = _reject_queue(ch)
    ch.basic_publish_confirm(Message('a'), '', q)
    with pytest.raises(MessageNacked):
        ch.basic_publish_confirm(Message('b'), '', q)


def test_confirm_timeout_bounds_the_wait(broker, cconn):
    ch = cconn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    # Block publishing on the broker so no confirm can come.
    broker.ctl('set_vm_memory_high_watermark', '0')
    try:
        with pytest.raises(socket.timeout):
            ch.basic_publish(Message('x'), '', q, confirm_timeout=0.5)
    finally:
        broker.ctl('set_vm_memory_high_watermark', '0.4')


def test_pipelined_all_acked(conn):
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    ch.confirm_select()
    tags = [ch.basic_publish(Message(str(i)), '', q) for i in range(200)]
    assert tags == list(range(1, 201))
    assert ch.wait_for_confirms(10) is True
    assert ch.queue_declare(q, passive=True).message_count == 200
    assert ch.wait_for_confirms(1) is True     # nothing outstanding


def test_pipelined_nacks_name_exact_tags(conn):
    ch = conn.channel()
    q = _reject_queue(ch, max_length=3)
    ch.confirm_select()
    for i in range(5):
        ch.basic_publish(Message(str(i)), '', q)
    with pytest.raises(PublishConfirmError) as info:
        ch.wait_for_confirms(10)
    assert info.value.nacked == (4, 5)
    assert info.value.returned == () and info.value.unconfirmed == ()
    # state is reset: a following good batch passes
    ch.queue_purge(q)
    ch.basic_publish(Message('ok'), '', q)
    assert ch.wait_for_confirms(5) is True


def test_pipelined_returns_name_exact_tags(conn):
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    ch.confirm_select()
    for i in range(6):
        rk = q if i % 2 == 0 else unique_name('nowhere')
        ch.basic_publish(Message(str(i)), '', rk, mandatory=True)
    with pytest.raises(PublishConfirmError) as info:
        ch.wait_for_confirms(10)
    assert info.value.returned == (2, 4, 6)
    assert info.value.nacked == ()


def test_pipelined_unconfirmed_on_timeout(broker, conn):
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    ch.confirm_select()
    broker.ctl('set_vm_memory_high_watermark', '0')
    try:
        ch.basic_publish(Message('a'), '', q)
        ch.basic_publish(Message('b'), '', q)
        with pytest.raises(PublishConfirmError) as info:
            ch.wait_for_confirms(0.5)
        assert info.value.unconfirmed == (1, 2)
    finally:
        broker.ctl('set_vm_memory_high_watermark', '0.4')
    assert ch.wait_for_confirms(10) is True


def test_wait_for_confirms_needs_confirm_mode(conn):
    from amqp.exceptions import ChannelError
    with pytest.raises(ChannelError):
        conn.channel().wait_for_confirms(1)


def test_per_publish_callbacks(conn):
    ch = conn.channel()
    q = _reject_queue(ch, max_length=1)
    outcomes = []

    def record(tag, outcome):
        outcomes.append((tag, outcome))

    # on_confirm turns confirm mode on by itself
    assert ch.basic_publish(Message('a'), '', q, on_confirm=record) == 1
    assert ch.basic_publish(Message('b'), '', q, on_confirm=record) == 2
    assert ch.basic_publish(Message('c'), '', unique_name('nowhere'),
                            mandatory=True, on_confirm=record) == 3
    ch.basic_publish(Message('d'), '', q)        # no callback
    with pytest.raises(PublishConfirmError) as info:
        ch.wait_for_confirms(10)
    assert sorted(outcomes) == [(1, 'ack'), (2, 'nack'), (3, 'returned')]
    assert info.value.nacked == (2, 4) and info.value.returned == (3,)


def test_on_confirm_must_be_callable(conn):
    ch = conn.channel()
    with pytest.raises(TypeError, match='on_confirm'):
        ch.basic_publish(Message('a'), '', 'q', on_confirm='nope')
    assert ch.queue_declare('', exclusive=True)


def test_events_basic_ack_and_nack(conn):
    ch = conn.channel()
    q = _reject_queue(ch)
    acks, nacks = [], []
    ch.events['basic_ack'].add(lambda tag, multiple: acks.append(tag))
    ch.events['basic_nack'].add(lambda tag, multiple: nacks.append(tag))
    ch.confirm_select()
    ch.basic_publish(Message('a'), '', q)
    ch.basic_publish(Message('b'), '', q)
    with pytest.raises(PublishConfirmError):
        ch.wait_for_confirms(5)
    assert max(acks) == 1 and nacks == [2]


@pytest.mark.parametrize('how', ['on_confirm', 'events', 'confirm_publish'])
def test_confirm_callbacks_may_make_calls_that_read(broker, how):
    """A confirm is handled as soon as it is read only while settling it
    runs no application code: a callback (per publish, or in
    ``events``) that waits for a reply of its own runs after the read,
    and does not hang on the read the confirm came in."""
    conn = broker.connect(confirm_publish=how == 'confirm_publish')
    conn.reply_timeout = 5     # a callback stuck inside the read ends soon
    ch, other = conn.channel(), conn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    seen = []

    def depth(*args):
        seen.append((args, other.queue_declare(q, passive=True)
                     .message_count))

    kwargs = {}
    if how == 'on_confirm':
        kwargs['on_confirm'] = depth
    else:
        ch.events['basic_ack'].add(depth)
        ch.confirm_select()
    ch.basic_publish(Message('a'), '', q, **kwargs)
    ch.basic_publish(Message('b'), '', q)    # (no callback of its own)
    assert ch.wait_for_confirms(10)
    if how == 'on_confirm':
        assert [args for args, _ in seen] == [(1, 'ack')]
    elif how == 'confirm_publish':    # one wait, one ack per publish
        assert seen == [((1, False), 1), ((2, False), 2)]
    else:
        assert seen[-1][0][0] == 2
    assert all(n >= 1 for _, n in seen)
    conn.close()


# -- kombu 5.7 Producer.batch() -------------------------------------------

def test_kombu_producer_batch(broker):
    import amqp
    url = 'pyamqp://guest:guest@%s:%s//' % (broker.host, broker.port)
    with kombu.Connection(url, transport_options={'confirm_publish': True}
                          ) as kconn:
        assert isinstance(kconn.connection, amqp.Connection)
        assert hasattr(amqp.Channel, 'wait_for_confirms')  # ours, not py-amqp
        channel = kconn.channel()
        q = kombu.Queue(unique_name('kbatch'), exclusive=True, channel=channel)
        q.declare()
        producer = kombu.Producer(channel)
        assert channel.supports_batch_publish
        with producer.batch(max_size=4):
            for i in range(10):
                producer.publish({'i': i}, routing_key=q.name)
        got = []
        for _ in range(10):
            m = q.get(no_ack=True)
            got.append(m.payload['i'])
        assert got == list(range(10))
        # an exception inside the batch discards what was not flushed
        with pytest.raises(RuntimeError):
            with producer.batch(max_size=100):
                producer.publish({'i': 'lost'}, routing_key=q.name)
                raise RuntimeError('abort')
        assert q.get(no_ack=True) is None


def test_kombu_batch_reports_nacks(broker):
    url = 'pyamqp://guest:guest@%s:%s//' % (broker.host, broker.port)
    with kombu.Connection(url, transport_options={'confirm_publish': True}
                          ) as kconn:
        channel = kconn.channel()
        name = unique_name('kbatchnack')
        q = kombu.Queue(name, exclusive=True, channel=channel,
                        queue_arguments={'x-max-length': 2,
                                         'x-overflow': 'reject-publish'})
        q.declare()
        producer = kombu.Producer(channel)
        with pytest.raises(PublishConfirmError) as info:
            with producer.batch():
                for i in range(4):
                    producer.publish({'i': i}, routing_key=name)
        assert info.value.nacked == (3, 4)


def test_publish_batch_directly(conn):
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True).queue
    batch = ch.create_publish_batch(max_size=3)
    assert batch.channel is ch
    for i in range(2):
        batch.publish(Message(str(i)), exchange='', routing_key=q)
    assert ch.basic_get(q) is None               # not sent yet
    with pytest.raises(ValueError, match='routing_key'):
        batch.publish(Message('x'), routing_key='r' * 300)
    batch.flush()
    assert ch.basic_get(q, no_ack=True).body == '0'
    batch.publish(Message('gone'), routing_key=q)
    batch.discard()
    batch.flush()
    batch.close()
    with pytest.raises(RuntimeError):
        batch.publish(Message('x'), routing_key=q)
    assert ch.basic_get(q, no_ack=True).body == '1'
    assert ch.basic_get(q) is None
