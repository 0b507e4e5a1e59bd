"""amqp.recovery without a broker: what the topology record keeps, forgets
and renames, and how a recovering connection is asked for."""
import pytest

import amqp
from amqp.recovery import RecoveringConnection, Topology


def _queue(name, **kwargs):
    record = {'queue': name, 'server_named': False, 'durable': False,
              'exclusive': False, 'auto_delete': False, 'arguments': None}
    record.update(kwargs)
    return record


def _binding(destination, source, kind='queue', routing_key='k'):
    return {'kind': kind, 'destination': destination, 'source': source,
            'routing_key': routing_key, 'arguments': None}


def _consumer(queue, channel='ch'):
    return {'channel': channel, 'queue': queue, 'no_local': False,
            'no_ack': False, 'exclusive': False, 'arguments': None,
            'callback': None, 'on_cancel': None}


def test_a_renamed_server_named_queue_takes_its_bindings_and_consumers():
    t = Topology()
    t.queue('amq.gen-old', _queue('amq.gen-old', server_named=True))
    t.bind(_binding('amq.gen-old', 'x'))
    t.bind(_binding('other', 'x'))
    t.consumer('c1', _consumer('amq.gen-old'))
    t.rename_queue('amq.gen-old', 'amq.gen-new')
    assert list(t.queues) == ['amq.gen-new']
    assert [b['destination'] for b in t.bindings] == ['amq.gen-new', 'other']
    assert t.consumers['c1']['queue'] == 'amq.gen-new'


def test_deleting_a_queue_forgets_its_bindings_and_consumers():
    t = Topology()
    t.queue('q', _queue('q'))
    t.bind(_binding('q', 'x'))
    t.bind(_binding('x2', 'x', kind='exchange'))
    t.consumer('c1', _consumer('q'))
    t.forget_queue('q')
    assert t.queues == {} and t.consumers == {}
    assert t.bindings == [_binding('x2', 'x', kind='exchange')]


def test_deleting_an_exchange_forgets_the_bindings_it_is_in():
    t = Topology()
    t.exchange('x', {'exchange': 'x'})
    t.exchange('', {'exchange': ''})       # the default: never recorded
    t.bind(_binding('q', 'x'))
    t.bind(_binding('x', 'y', kind='exchange'))
    t.bind(_binding('q', 'y'))
    t.forget_exchange('x')
    assert t.exchanges == {}
    assert t.bindings == [_binding('q', 'y')]


def test_bindings_are_recorded_once_and_unbound():
    t = Topology()
    t.bind(_binding('q', 'x'))
    t.bind(_binding('q', 'x'))
    assert len(t.bindings) == 1
    t.unbind(_binding('q', 'x'))
    t.unbind(_binding('q', 'x'))      # harmless
    assert t.bindings == []


def test_the_last_consumer_of_an_auto_delete_queue_takes_it_along():
    t = Topology()
    t.queue('auto', _queue('auto', auto_delete=True))
    t.queue('kept', _queue('kept'))
    t.bind(_binding('auto', 'x'))
    for tag, queue in (('a1', 'auto'), ('a2', 'auto'), ('k1', 'kept')):
        t.consumer(tag, _consumer(queue))
    t.forget_consumer('a1')
    assert 'auto' in t.queues          # a2 still consumes from it
    t.forget_consumer('a2')
    assert 'auto' not in t.queues and t.bindings == []
    t.forget_consumer('k1')
    assert 'kept' in t.queues          # not auto-delete
    t.forget_consumer('unknown')       # harmless


def test_consumers_of_a_channel_and_forgetting_a_channel():
    t = Topology()
    t.consumer('c1', _consumer('q', channel='one'))
    t.consumer('c2', _consumer('q', channel='two'))
    assert [tag for tag, _ in t.consumers_of('one')] == ['c1']
    t.forget_channel('one')
    assert list(t.consumers) == ['c2']


def test_recover_true_asks_for_a_recovering_connection():
    assert type(amqp.Connection('localhost:1')) is amqp.Connection
    conn = amqp.Connection('localhost:1', recover=True,
                           recover_hosts='h2:5672,h3:5672')
    assert isinstance(conn, RecoveringConnection)
    assert conn.recover_hosts == ['localhost:1', 'h2:5672', 'h3:5672']
    url = amqp.Connection.from_url(
        'amqp://u:p@h1:5672//?recover=true&recover_hosts=h2:5672'
        '&recover_timeout=30')
    assert isinstance(url, RecoveringConnection)
    assert url.recover_hosts == ['h1:5672', 'h2:5672']
    assert url.recover_timeout == 30


def test_a_subclass_keeps_its_own_methods_with_recovery():
    class Mine(amqp.Connection):
        def mine(self):
            return 'mine'

    conn = Mine('localhost:1', recover=True)
    assert isinstance(conn, Mine) and isinstance(conn, RecoveringConnection)
    assert conn.mine() == 'mine'
    assert type(Mine('localhost:1', recover=True)) is type(conn)
    assert type(Mine('localhost:1')) is Mine


@pytest.mark.parametrize('name', ['recover_interval',
                                  'recover_max_interval'])
def test_bad_intervals_are_refused(name):
    with pytest.raises(ValueError, match=name):
        amqp.Connection('localhost:1', recover=True, **{name: -1})


def test_recover_hosts_may_be_urls_of_the_same_user_and_vhost():
    conn = amqp.Connection(
        'h1:5672', recover=True,
        recover_hosts='amqp://guest:guest@h2/, h3:5673,amqp://h4:5674/%2F')
    assert conn.recover_hosts == ['h1:5672', 'h2:5672', 'h3:5673',
                                  'h4:5674']
    conn = amqp.Connection.from_url(
        'amqps://u:p@h1/v?recover=true&recover_hosts='
        'amqps%3A%2F%2Fu%3Ap%40h2%2Fv,amqps%3A%2F%2Fu%40h3%3A5999%2Fv')
    assert conn.recover_hosts == ['h1:5671', 'h2:5671', 'h3:5999']


@pytest.mark.parametrize('url, problem', [
    ('amqp://bob:hunter2@h2/', "user 'bob'"),
    ('amqp://guest:hunter2@h2/other', "virtual host 'other'"),
    ('amqps://guest:hunter2@h2/', 'no TLS'),
])
def test_a_recover_hosts_url_for_another_user_vhost_or_tls_is_refused(
        url, problem):
    with pytest.raises(ValueError) as raised:
        amqp.Connection('h1:5672', recover=True, recover_hosts=[url])
    assert problem in str(raised.value)
    assert 'h2:' in str(raised.value)
    assert 'hunter2' not in str(raised.value)
