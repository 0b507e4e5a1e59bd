"""py-amqp behaviours that a real RabbitMQ will not show on demand, against
the scripted fake broker: what goes on the wire and what is tolerated.

- a broker that leaves out trailing *reserved* fields (connection.open-ok
  known-hosts, channel.open-ok channel-id, basic.get-empty cluster-id) is
  accepted, as py-amqp accepts it; any other truncation stays a
  FrameSyntaxError;
- a channel constructed but never opened sends its methods (the broker is
  the one to object); only a closed channel refuses before sending;
- a Message subclass's own ``_serialize_properties`` is what is published.
"""
import struct

import pytest

import amqp
from amqp import Connection, spec
from amqp.exceptions import ChannelNotOpen, FrameSyntaxError, \
    RecoverableConnectionError

from testkit import SigPeer, frame, sig_method_frame

from .fakebroker import CLOSE_OK, start_frame, tune_frame

TIMEOUT = 3
SIG = struct.Struct('>HH')


def bare(sig, channel=0):
    """A method frame with no arguments at all."""
    return frame(1, channel, SIG.pack(*sig))


def handshake(peer, open_ok):
    peer.expect_header()
    peer.send(start_frame())
    peer.expect_method(spec.Connection.StartOk)
    peer.send(tune_frame())
    peer.expect_method(spec.Connection.TuneOk)
    peer.expect_method(spec.Connection.Open)
    peer.send(open_ok)


def serve_close(peer):
    peer.expect_method(spec.Connection.Close)
    peer.send(CLOSE_OK)


def connect(broker):
    conn = Connection(broker.host, connect_timeout=TIMEOUT)
    conn.connect()
    return conn


def test_open_ok_without_known_hosts_is_accepted(fake_broker):
    def script(peer):
        peer = SigPeer(peer)
        handshake(peer, bare(spec.Connection.OpenOk))
        serve_close(peer)

    broker = fake_broker(script)
    conn = connect(broker)
    assert conn.connected
    conn.close()


def test_channel_open_ok_without_channel_id_and_bare_get_empty(fake_broker):
    def script(peer):
        peer = SigPeer(peer)
        handshake(peer, bare(spec.Connection.OpenOk))
        peer.expect_method(spec.Channel.Open)
        peer.send(bare(spec.Channel.OpenOk, channel=1))
        peer.expect_method(spec.Basic.Get)
        peer.send(bare(spec.Basic.GetEmpty, channel=1))
        serve_close(peer)

    broker = fake_broker(script)
    conn = connect(broker)
    channel = conn.channel()
    assert channel.is_open
    assert channel.basic_get('q') is None
    conn.close()


@pytest.mark.parametrize('reply, request_', [
    # queue.declare-ok without its (non-reserved) counts
    (frame(1, 1, SIG.pack(*spec.Queue.DeclareOk) + b'\x01q'),
     'queue_declare'),
    # get-empty whose cluster-id runs past the end of the frame
    (frame(1, 1, SIG.pack(*spec.Basic.GetEmpty) + b'\x05ab'), 'basic_get'),
    # get-empty with one byte too few for the field it has
    (frame(1, 1, SIG.pack(*spec.Basic.GetEmpty) + b'\x03ab'), 'basic_get'),
])
def test_other_truncations_stay_frame_syntax_errors(fake_broker, reply,
                                                    request_):
    def script(peer):
        peer = SigPeer(peer)
        handshake(peer, bare(spec.Connection.OpenOk))
        peer.expect_method(spec.Channel.Open)
        peer.send(bare(spec.Channel.OpenOk, channel=1))
        peer.recv_method()
        peer.send(reply)
        peer.wait_closed()

    broker = fake_broker(script)
    conn = connect(broker)
    channel = conn.channel()
    with pytest.raises(FrameSyntaxError):
        getattr(channel, request_)('q')
    assert not conn.connected


def test_open_ok_with_a_broken_known_hosts_is_refused(fake_broker):
    def script(peer):
        peer = SigPeer(peer)
        handshake(peer, frame(1, 0, SIG.pack(*spec.Connection.OpenOk) +
                              b'\x09/'))
        peer.wait_closed()

    broker = fake_broker(script)
    with pytest.raises(FrameSyntaxError):
        connect(broker)


def test_never_opened_channel_sends_and_the_broker_answers(fake_broker):
    seen = {}

    def script(peer):
        peer = SigPeer(peer)
        handshake(peer, sig_method_frame(spec.Connection.OpenOk, ('',)))
        seen['frame'] = peer.recv_frame()
        # RabbitMQ's answer to a method on a channel that is not open
        peer.send(sig_method_frame(spec.Connection.Close, (
            504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)))
        peer.expect_method(spec.Connection.CloseOk)

    broker = fake_broker(script)
    conn = connect(broker)
    channel = amqp.Channel(conn)          # constructed, never opened
    assert not channel.is_open
    with pytest.raises(ChannelNotOpen) as info:
        channel.queue_declare('q')
    assert info.value.reply_code == 504
    assert 'expected' in info.value.reply_text
    frame_type, channel_id, payload = seen['frame']
    assert (frame_type, channel_id) == (1, 1)
    assert SIG.unpack_from(payload) == spec.Queue.Declare
    assert not conn.connected


def test_closed_channel_refuses_before_sending(fake_broker):
    seen = {}

    def script(peer):
        peer = SigPeer(peer)
        seen['frames'] = peer.frames
        handshake(peer, sig_method_frame(spec.Connection.OpenOk, ('',)))
        peer.expect_method(spec.Channel.Open)
        peer.send(sig_method_frame(spec.Channel.OpenOk, ('',), channel=1))
        peer.expect_method(spec.Channel.Close)
        peer.send(sig_method_frame(spec.Channel.CloseOk, channel=1))
        serve_close(peer)

    broker = fake_broker(script)
    conn = connect(broker)
    channel = conn.channel()
    channel.close()
    with pytest.raises(RecoverableConnectionError):
        channel.queue_declare('q')
    conn.close()
    # nothing but channel.close and connection.close after the open
    broker.finish()
    sigs = [SIG.unpack_from(p) for t, _, p in seen['frames'] if t == 1]
    assert spec.Queue.Declare not in sigs


class RawHeaders(amqp.Message):
    """py-amqp's own tests publish table types the encoder would not pick
    (``'s'`` short int, ``'b'`` signed octet) by overriding this."""

    def _serialize_properties(self):
        table = b'\x01as\x00\x07' + b'\x01bb\xfe'
        return (b'\x20\x00' + struct.pack('>I', len(table)) + table)


def test_message_subclass_serializes_its_own_properties(fake_broker):
    seen = {}

    def script(peer):
        peer = SigPeer(peer)
        handshake(peer, sig_method_frame(spec.Connection.OpenOk, ('',)))
        peer.expect_method(spec.Channel.Open)
        peer.send(sig_method_frame(spec.Channel.OpenOk, ('',), channel=1))
        peer.expect_method(spec.Basic.Publish)
        seen['header'] = peer.recv_frame()
        seen['body'] = peer.recv_frame()
        serve_close(peer)

    broker = fake_broker(script)
    conn = connect(broker)
    channel = conn.channel()
    msg = RawHeaders('héllo')
    channel.basic_publish(msg, routing_key='q')
    conn.close()
    broker.finish()
    frame_type, _, header = seen['header']
    assert frame_type == 2
    assert header[12:] == RawHeaders()._serialize_properties()
    # a str body is encoded first, and that sets content_encoding on the
    # caller's message, as py-amqp does
    assert seen['body'][2] == 'héllo'.encode()
    assert msg.properties == {'content_encoding': 'utf-8'}
