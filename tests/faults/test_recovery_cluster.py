"""Recovery across the loss of a quorum queue's leader, on a three-node
RabbitMQ cluster started here (three throwaway nodes on 127.0.0.1 sharing
an Erlang cookie, joined with ``rabbitmqctl join_cluster``).

A publisher with confirms and a consumer with manual acks use a quorum
queue replicated on the three nodes, both connected (``recover=True``,
``recover_hosts`` listing every node) to the node that leads the queue.
Twenty times that node's RabbitMQ application is stopped: the clients lose
their connection at the moment the queue loses its leader, reconnect to
the next node, declare the queue and consume again while the two
remaining members elect a new leader.  The node is then started again,
rejoins, and the next round moves the queue's leadership to wherever the
clients now are.  Every confirmed message is delivered at least once."""
import os
import re
import threading
import uuid
from time import monotonic

import pytest

from amqp.cli import localbroker

from .conftest import FaultNode
from .endurance import Consumer, Publisher, finish, wait

ROUNDS = 20
BETWEEN = 20
COOKIE = 'AMQPTESTSCLUSTERCOOKIE'


class ClusterNode(FaultNode):
    """A throwaway node with the cluster's Erlang cookie."""

    node_prefix = 'amqp-cluster'

    def _spawn(self):
        cookie = os.path.join(self.directory, '.erlang.cookie')
        with open(cookie, 'w') as f:
            f.write(COOKIE)
        os.chmod(cookie, 0o400)
        super()._spawn()

    @property
    def address(self):
        return '%s:%d' % (self.host, self.port)


@pytest.fixture(scope='module')
def cluster():
    nodes = [ClusterNode(timeout=120) for _ in range(3)]
    errors = []

    def start(node):
        try:
            node.start()
        except localbroker.BrokerError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            pytest.fail('cluster node did not start: %s' % errors[0])
        first = nodes[0]
        for node in nodes[1:]:
            node.ctl('stop_app')
            node.ctl('join_cluster', first.node)
            node.ctl('start_app')
            node.wait_ready()
        running = first.ctl('eval', 'rabbit_nodes:all_running().')
        assert all(n.node in running for n in nodes), running
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _members(node, queue):
    """(the node name that leads ``queue``, how many of its members are
    up), as the cluster reports them: one ``rabbitmqctl`` call, which
    starts an Erlang VM (about a second here)."""
    out = node.ctl('list_queues', '-q', '--no-table-headers', 'name',
                   'leader', 'online')
    for line in out.splitlines():
        parts = line.split('\t')
        if len(parts) == 3 and parts[0] == queue:
            return (parts[1].strip() or None,
                    len(re.findall(r'@', parts[2])))
    return None, 0


def _leader(node, queue):
    """The node name that leads ``queue``, as the cluster reports it."""
    return _members(node, queue)[0]


def _move_leader(node, queue, to):
    """Hand ``queue``'s leadership to the node named ``to`` (what
    RabbitMQ's maintenance mode does before a node goes down)."""
    node.ctl('eval', (
        '{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, '
        '<<"%s">>)), rabbit_quorum_queue:transfer_leadership(Q, \'%s\').'
    ) % (queue, to))


@pytest.mark.stress
@pytest.mark.slow
def test_losing_a_quorum_queues_leader_loses_nothing(cluster):
    by_address = {n.address: n for n in cluster}
    hosts = [n.address for n in cluster]
    queue = 'qq-endurance-%s' % uuid.uuid4().hex[:6]
    options = dict(recover_hosts=hosts, recover_interval=0.1)
    lost = []      # when the consumer's connection went down
    consumer = Consumer(hosts[0], queue, {'x-queue-type': 'quorum'},
                        on_recovery_started=lambda c, e: lost.append(
                            monotonic()),
                        **options)
    publisher = Publisher(hosts[0], queue, **options)
    consumer.start()
    publisher.start()
    gaps = []
    try:
        for _ in range(ROUNDS):
            # both clients are on one node (the first of recover_hosts
            # that is up): make it the queue's leader, then stop it
            assert publisher.conn.host == consumer.conn.host
            node = by_address[consumer.conn.host]
            others = [n for n in cluster if n is not node]
            members = []   # (the leader seen when all are up)

            def all_up():
                members[:] = [_members(node, queue)]
                return members[0][1] == 3

            wait(all_up, 60, 'all members')
            if members[0][0] != node.node:
                _move_leader(node, queue, node.node)
                wait(lambda: _leader(node, queue) == node.node, 30,
                     'leadership moved to %s' % node.node)
            before = consumer.deliveries()
            wait(lambda: consumer.deliveries() >= before + BETWEEN, 30,
                 'deliveries before the fault')
            recovered = consumer.conn.recoveries
            del lost[:]
            node.ctl('stop_app')
            wait(lambda: consumer.conn.recoveries > recovered and
                 consumer.last > lost[0], 30, 'deliveries after the fault')
            gaps.append(consumer.last - lost[0])
            # (the remaining members elect a leader: list_queues may show
            # none for a moment)
            wait(lambda: _leader(others[0], queue) in (
                others[0].node, others[1].node), 30, 'a new leader')
            node.ctl('start_app')
            node.wait_ready()
    finally:
        confirmed, missing, duplicates = finish(publisher, consumer)
    print('measured: recovery endurance (quorum queue leader lost, 3 '
          'nodes), %d failures, %d confirmed, %d delivered, %d '
          'duplicates, %d lost; receiving again %.2f s at most after the '
          'connection to the leader was lost (median %.2f s); %d '
          'recoveries' % (
              ROUNDS, len(confirmed), consumer.deliveries(), duplicates,
              len(missing), max(gaps), sorted(gaps)[len(gaps) // 2],
              consumer.conn.recoveries))
    assert not missing, sorted(missing)[:20]
    assert max(gaps) < 2.0, gaps
    # (a round may take two recoveries: a connection made to a node while
    # its application stops is closed again)
    assert consumer.conn.recoveries >= ROUNDS
    assert publisher.conn.recoveries >= ROUNDS
    ch = consumer.conn.channel()
    ch.queue_delete(queue)
    consumer.conn.close()
    publisher.conn.close()
