"""What starts an automatic recovery, against scripted brokers (RabbitMQ
cannot be made to send every close code on demand): the broker's
CONNECTION_FORCED and INTERNAL_ERROR (what a node that shuts down sends)
are recovered, on the next host; a close for a protocol error is not
(the same client would break the protocol again)."""
import pytest
from pika.spec import Connection, Queue

from amqp.exceptions import ConnectionError as AMQPConnectionError
from amqp.exceptions import FrameError, RecoverableConnectionError



@pytest.fixture
def servers(many_channel_server):
    return many_channel_server


def _closing_on_declare(reply_code, reply_text):
    def on_declare(s, channel, method):
        s.reply(0, Connection.Close(reply_code, reply_text, 50, 10))
    return on_declare


@pytest.mark.parametrize('reply_code, reply_text', [
    (320, 'CONNECTION_FORCED - broker forced connection closure with '
          "reason 'shutdown'"),
    (541, 'INTERNAL_ERROR'),
])
def test_a_broker_close_of_a_stopping_node_is_recovered(servers, reply_code,
                                                       reply_text):
    first, second = servers(), servers()
    first.on(Queue.Declare, _closing_on_declare(reply_code, reply_text))
    first.on(Connection.CloseOk, lambda s, ch, m: False)
    started, succeeded = [], []
    conn = first.connect(
        recover=True, recover_hosts=[second.host], connect_timeout=2,
        on_recovery_started=lambda c, exc: started.append(exc),
        on_recovery_succeeded=succeeded.append)
    ch = conn.channel()
    with pytest.raises(AMQPConnectionError) as raised:
        ch.queue_declare('q')          # in flight: raised, as documented
    assert raised.value.reply_code == reply_code
    assert [getattr(e, 'reply_code', None) for e in started] == [reply_code]
    # the next call recovers (on the next host) and goes through
    assert ch.queue_declare('q').queue == 'q'
    assert succeeded == [conn] and conn.recoveries == 1
    assert conn.host == second.host
    assert [type(m).__name__ for _, m in second.methods] == [
        'Open', 'Declare']
    conn.close()


def test_a_close_for_a_protocol_error_is_not_recovered(servers):
    srv = servers()
    srv.on(Queue.Declare, _closing_on_declare(501, 'FRAME_ERROR'))
    srv.on(Connection.CloseOk, lambda s, ch, m: False)
    started = []
    conn = srv.connect(
        recover=True, connect_timeout=2,
        on_recovery_started=lambda c, exc: started.append(exc))
    ch = conn.channel()
    with pytest.raises(FrameError):
        ch.queue_declare('q')
    assert started == [] and not conn.recovering()
    assert not conn.connected
    with pytest.raises(RecoverableConnectionError):
        ch.queue_declare('q')
