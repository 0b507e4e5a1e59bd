"""The session's RabbitMQ answers the protocol header with a Connection.Start
that our wire layer decodes as pika does (AMQP 0-9-1 section 4.2.2 and class
connection): real bytes, read by the code under test and by an independent
codec.
"""
import socket
import struct

from amqp import spec
from amqp.serialization import loads
from testkit import PROTOCOL_HEADER, decode_frame, frame, naive_utc

_FRAME_HEADER = struct.Struct('>BHI')
_METHOD_IDS = struct.Struct('>HH')


def _recv_exactly(sock, n):
    buf = b''
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f'connection closed after {len(buf)} of {n} bytes'
        buf += chunk
    return buf


def test_connection_start(broker):
    with socket.create_connection((broker.host, broker.port), 10) as sock:
        sock.settimeout(10)
        sock.sendall(PROTOCOL_HEADER)
        frame_type, channel, size = _FRAME_HEADER.unpack(
            _recv_exactly(sock, _FRAME_HEADER.size))
        payload = _recv_exactly(sock, size)
        frame_end = _recv_exactly(sock, 1)

    assert frame_type == spec.FRAME_METHOD
    assert channel == 0
    assert frame_end[0] == spec.FRAME_END == 0xCE
    assert _METHOD_IDS.unpack_from(payload) == (10, 10)

    start = spec.METHODS[(10, 10)]
    values, offset = loads(start.args, payload, _METHOD_IDS.size)
    assert offset == size
    args = dict(zip(start.arg_names, values))
    assert (args['version_major'], args['version_minor']) == (0, 9)
    props = args['server_properties']
    assert props['product'] == 'RabbitMQ'
    assert props['capabilities']['publisher_confirms'] is True
    mechanisms = args['mechanisms']
    if isinstance(mechanisms, bytes):
        mechanisms = mechanisms.decode()
    assert 'PLAIN' in mechanisms.split()
    theirs = decode_frame(frame(frame_type, channel, payload)).method
    assert naive_utc(theirs.server_properties) == props
    assert theirs.mechanisms.decode() == mechanisms
