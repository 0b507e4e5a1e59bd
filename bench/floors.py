"""Floors for bench/e2e.py: what a client costs that does nothing but move
pre-encoded frames through the socket.

The connection, channel and queue are set up with this package (handshake,
channel.open, queue.declare); then the floor takes ``conn.sock``, makes it
blocking and runs a loop with no protocol logic in it:

publish      one ``sendall`` of a pre-encoded basic.publish (method, header
             and body frames) per message.  For 1 MB bodies this is the
             raw-socket floor, for 100-byte bodies the pure-Python floor.
consume_ack  basic.qos + basic.consume (manual ack) sent raw; then one
             ``recv_into`` per read into a reusable buffer, counting bytes
             of the known delivery layout, and per message one
             ``struct.pack_into`` of the delivery tag into a pre-encoded
             basic.ack frame and one ``sendall``.
             For 1 MB bodies (prefetch 16, as the clients consume them)
             this is the raw-socket floor.

The frames are encoded here, from the AMQP 0-9-1 layout, not with the
codec under test.  After each loop the floor checks what it assumed: the
queue depth after publishing, no stray bytes after consuming, a frame-end
octet where the last delivery ends.
"""
import signal
import socket
import struct
import time

_FRAME = struct.Struct('>BHI')
_U16 = struct.Struct('>H')
_U32 = struct.Struct('>I')
_U64 = struct.Struct('>Q')
_SIG = struct.Struct('>HH')
_CONTENT_HEADER = struct.Struct('>HHQH')  # class, weight, body size, flags
_FRAME_END = b'\xce'
_OVERHEAD = _FRAME.size + 1
BASIC = 60
CONSUMER_TAG = b'floor'
RECV_BUFFER = 1 << 20
#: a floor that waits longer than this for bytes has miscounted
ALARM_SECONDS = 120


def _shortstr(s):
    s = s.encode() if isinstance(s, str) else s
    return bytes((len(s),)) + s


def frame(type_, channel, payload):
    return _FRAME.pack(type_, channel, len(payload)) + payload + _FRAME_END


def method(channel, method_id, args):
    return frame(1, channel, _SIG.pack(BASIC, method_id) + args)


def publish_frames(channel, routing_key, body, frame_max):
    """basic.publish to the default exchange, a content header with no
    properties, and the body split at ``frame_max``: one bytes object."""
    parts = [method(channel, 40, _U16.pack(0) + _shortstr('')
                    + _shortstr(routing_key) + b'\x00'),
             frame(2, channel, _CONTENT_HEADER.pack(BASIC, 0, len(body), 0))]
    chunk = frame_max - _OVERHEAD
    for i in range(0, len(body), chunk):
        parts.append(frame(3, channel, body[i:i + chunk]))
    return b''.join(parts)


def qos_frame(channel, prefetch_count):
    return method(channel, 10, _U32.pack(0) + _U16.pack(prefetch_count)
                  + b'\x00')


def consume_frame(channel, queue, no_ack):
    bits = 0b10 if no_ack else 0
    return method(channel, 20, _U16.pack(0) + _shortstr(queue)
                  + _shortstr(CONSUMER_TAG) + bytes((bits,))
                  + _U32.pack(0))


def ack_frame(channel):
    """basic.ack, delivery tag 0 (packed in at ``ACK_TAG_OFFSET``)."""
    return bytearray(method(channel, 80, _U64.pack(0) + b'\x00'))


ACK_TAG_OFFSET = _FRAME.size + _SIG.size
QOS_OK_BYTES = _OVERHEAD + _SIG.size
CONSUME_OK_BYTES = _OVERHEAD + _SIG.size + 1 + len(CONSUMER_TAG)


def delivery_bytes(queue, body_size, frame_max):
    """Bytes on the wire of one basic.deliver from the default exchange
    with routing key ``queue``: method, header (no properties), body."""
    args = (1 + len(CONSUMER_TAG)) + 8 + 1 + 1 + (1 + len(queue.encode()))
    n = _OVERHEAD + _SIG.size + args
    n += _OVERHEAD + _CONTENT_HEADER.size
    chunk = frame_max - _OVERHEAD
    frames = -(-body_size // chunk)
    return n + frames * _OVERHEAD + body_size


def _on_alarm(signum, frame):
    raise RuntimeError('floor: no bytes for %d s; the delivery layout '
                       'assumed here is not what the broker sent'
                       % ALARM_SECONDS)


class Floor:
    """One connection, channel and exclusive queue set up with this
    package; the loops below own its socket while they run."""

    def __init__(self, connect):
        self.conn = connect()
        self.ch = self.conn.channel()
        self.queue = self.ch.queue_declare('', exclusive=True)[0]
        self.sock = self.conn.sock
        self.frame_max = self.conn.frame_max
        signal.signal(signal.SIGALRM, _on_alarm)

    def _take(self):
        self._timeout = self.sock.gettimeout()
        self.sock.settimeout(None)  # blocking: no poll before each call
        signal.alarm(ALARM_SECONDS)

    def _give_back(self):
        signal.alarm(0)
        self.sock.settimeout(self._timeout)

    def depth(self):
        return self.ch.queue_declare(self.queue, passive=True)[1]

    def _no_stray_bytes(self):
        self.sock.settimeout(0.2)
        try:
            extra = self.sock.recv(65536)
        except socket.timeout:
            extra = b''
        if extra:
            raise RuntimeError('floor: %d bytes more than counted'
                               % len(extra))

    def publish(self, n, body, name, clock):
        """n ``sendall`` calls of one pre-encoded publish; wall time runs
        until the broker holds all n (as for the libraries).

        ``clock`` (bench/e2e.py's Clock) times the loop under ``name``;
        every loop here returns e2e's sample record.
        """
        data = publish_frames(self.ch.channel_id, self.queue, body,
                              self.frame_max)
        before = self.depth()
        self._take()
        sendall = self.sock.sendall
        t0 = clock.start(name)
        for _ in range(n):
            sendall(data)
        c1 = clock.stop(name)
        self._give_back()
        deadline = time.monotonic() + ALARM_SECONDS
        while self.depth() < before + n:
            if time.monotonic() > deadline:
                raise RuntimeError('floor: the broker holds %d of %d '
                                   'publishes' % (self.depth() - before, n))
            time.sleep(0.001)
        return clock.sample(n, t0, c1)

    def consume_ack(self, n, body_size, prefetch, name, clock,
                    copy_bodies=False):
        """Consume n queued messages with one basic.ack each (and, with
        ``copy_bodies``, one copy of a body's worth of bytes into a fresh
        ``bytes`` per message: the protocol floor's 1 MiB consume)."""
        channel = self.ch.channel_id
        per_message = delivery_bytes(self.queue, body_size, self.frame_max)
        ack = ack_frame(channel)
        start = qos_frame(channel, prefetch) + consume_frame(
            channel, self.queue, no_ack=False)
        buf = bytearray(max(RECV_BUFFER, body_size))
        view = memoryview(buf)
        body_view = view[:body_size] if copy_bodies else None
        bodies = 0
        self._take()
        sock = self.sock
        recv_into, sendall, pack_into = sock.recv_into, sock.sendall, \
            _U64.pack_into
        t0 = clock.start(name)
        sendall(start)
        received = got = r = 0
        next_end = QOS_OK_BYTES + CONSUME_OK_BYTES + per_message
        while got < n:
            r = recv_into(view)
            received += r
            while received >= next_end:
                if body_view is not None:
                    bodies += len(body_view.tobytes())
                got += 1
                pack_into(ack, ACK_TAG_OFFSET, got)
                sendall(ack)
                next_end += per_message
        c1 = clock.stop(name)
        signal.alarm(0)
        last = buf[r - 1]
        self._check_end(received, next_end - per_message, last)
        self._no_stray_bytes()
        self._give_back()
        if copy_bodies and bodies != n * body_size:
            raise RuntimeError('floor: copied %d body bytes' % bodies)
        return clock.sample(n, t0, c1)

    @staticmethod
    def _check_end(received, expected, last_octet):
        if received != expected or last_octet != _FRAME_END[0]:
            raise RuntimeError(
                'floor: read %d bytes, expected %d ending in a frame-end '
                'octet (last octet %#x)' % (received, expected, last_octet))

    def close(self):
        """Leave the consumer's channel to the broker: closing the
        connection ends it."""
        try:
            self.conn.close()
        except Exception:  # the client never saw the consumer
            self.conn.collect()
