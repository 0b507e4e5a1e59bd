"""The protocol floor for bench/e2e.py: the least a correct pure-Python
client does per message, written as tightly as we know how.

bench/floors.py measures moving pre-encoded bytes with no protocol logic
at all; no client can get there, because a client must at least encode
what the caller passes and decode what the broker sends.  This module
does exactly that and nothing more, on the connection, channel and queue
``floors.Floor`` sets up with this package:

publish      encode basic.publish with the caller's exchange, routing key
             and body (no properties), content header and one body frame;
             one ``sendall``.
consume_ack  basic.qos + basic.consume sent, then ``recv`` 64 KiB at a
             time, every frame parsed by offset (partial frames carried to
             the next read), basic.deliver decoded (consumer tag, delivery
             tag, redelivered, exchange, routing key), the body taken as
             ``bytes`` (joined when it spans frames), a callback called
             with them, which encodes and sends one basic.ack.
get          encode basic.get, send, read and parse until get-ok (or
             get-empty), header and body; return the decoded fields and
             the body.  One round trip per call.
confirm      publish as above on a channel in confirm mode, then read
             until the basic.ack for its sequence number.
pipelined    publish in confirm mode; after every WINDOW publishes read
             until the ack of the last one (acks may be multiple).
consume_1mb  a lower bound rather than a client: the raw-socket floor's
             loop (basic.qos, one basic.ack per message, as the clients
             consume) plus one copy of every body into a fresh ``bytes``.  Any
             pure-Python client whose messages carry ``bytes`` bodies pays
             at least that: no socket call receives a body split into
             frames into one ``bytes`` object, so the body is received into
             a buffer and copied once.

What it leaves out is what a library needs and a benchmark does not:
properties, channels other than one, errors, heartbeats, timeouts,
threads.  If even this misses a target of issue 11, the target cannot be
met in pure Python, and the gap between it and this package is what
remains to be won in pure Python.
"""
import struct
import time

import floors
from floors import _FRAME_END, Floor

_FRAME_HEADER = struct.Struct('>BHI')
_METHOD_HEAD = struct.Struct('>BHIHH')  # frame header, class id, method id
_HEADER_FRAME = struct.Struct('>BHIHHQH')  # + class, weight, size, flags
_BODY_HEAD = struct.Struct('>BHI')
_SIG = struct.Struct('>HH')
_U64 = struct.Struct('>Q')
_U32 = struct.Struct('>I')
_ACK = struct.Struct('>BHIHHQB')
_END = _FRAME_END[0]
READ_SIZE = 65536
DELIVER = (60, 60)
GET_OK = (60, 71)
GET_EMPTY = (60, 72)
BASIC_ACK = (60, 80)


class ProtocolError(RuntimeError):
    """The broker sent something this minimal client does not handle."""


class MinimalClient:
    """Encode and decode basic.publish/deliver/get/ack on one channel."""

    def __init__(self, sock, channel, frame_max):
        self.sock = sock
        self.channel = channel
        self.frame_max = frame_max
        self.rest = b''

    def publish(self, body, exchange, routing_key):
        ch = self.channel
        ex = exchange.encode()
        rk = routing_key.encode()
        size = len(body)
        args_len = 2 + 1 + len(ex) + 1 + len(rk) + 1
        self.sock.sendall(b''.join((
            _METHOD_HEAD.pack(1, ch, 4 + args_len, 60, 40),
            b'\x00\x00', bytes((len(ex),)), ex, bytes((len(rk),)), rk,
            b'\x00\xce',
            _HEADER_FRAME.pack(2, ch, 14, 60, 0, size, 0), _FRAME_END,
            _BODY_HEAD.pack(3, ch, size), body, _FRAME_END)))

    def ack(self, delivery_tag):
        self.sock.sendall(_ACK.pack(1, self.channel, 13, 60, 80,
                                    delivery_tag, 0) + _FRAME_END)

    def frames(self):
        """Read once; yield every complete frame as (type, payload
        start, payload end, data), keeping a partial one for later."""
        data = self.sock.recv(READ_SIZE)
        if not data:
            raise ProtocolError('connection closed')
        if self.rest:
            data = self.rest + data
        pos = 0
        n = len(data)
        while n - pos >= 7:
            frame_type, _, size = _FRAME_HEADER.unpack_from(data, pos)
            end = pos + 7 + size
            if end >= n:
                break
            if data[end] != _END:
                raise ProtocolError('bad frame end')
            yield frame_type, pos + 7, end, data
            pos = end + 1
        self.rest = data[pos:]

    def consume(self, n, on_message):
        """Handle frames until ``n`` deliveries reached ``on_message``
        (body, delivery_tag, redelivered, exchange, routing_key,
        consumer_tag)."""
        got = 0
        fields = None
        parts = []
        left = 0
        while got < n:
            for frame_type, start, end, data in self.frames():
                if frame_type == 1:
                    if _SIG.unpack_from(data, start) != DELIVER:
                        continue      # qos-ok, consume-ok
                    o = start + 4
                    k = data[o]
                    ctag = data[o + 1:o + 1 + k].decode()
                    o += 1 + k
                    tag = _U64.unpack_from(data, o)[0]
                    redelivered = bool(data[o + 8])
                    o += 9
                    k = data[o]
                    exchange = data[o + 1:o + 1 + k].decode()
                    o += 1 + k
                    k = data[o]
                    rk = data[o + 1:o + 1 + k].decode()
                    fields = (tag, redelivered, exchange, rk, ctag)
                elif frame_type == 2:
                    left = _U64.unpack_from(data, start + 4)[0]
                    if not left:
                        on_message(b'', *fields)
                        got += 1
                elif frame_type == 3:
                    parts.append(data[start:end])
                    left -= end - start
                    if not left:
                        body = parts[0] if len(parts) == 1 else \
                            b''.join(parts)
                        parts = []
                        on_message(body, *fields)
                        got += 1
        return got

    def get(self, queue):
        """One basic.get (no_ack); return (body, delivery_tag,
        redelivered, exchange, routing_key, message_count) or None."""
        q = queue.encode()
        self.sock.sendall(b''.join((
            _METHOD_HEAD.pack(1, self.channel, 4 + 2 + 1 + len(q) + 1,
                              60, 70),
            b'\x00\x00', bytes((len(q),)), q, b'\x01\xce')))
        fields = None
        parts = []
        left = -1
        while True:
            for frame_type, start, end, data in self.frames():
                if frame_type == 1:
                    sig = _SIG.unpack_from(data, start)
                    if sig == GET_EMPTY:
                        return None
                    if sig != GET_OK:
                        raise ProtocolError('unexpected method %r' % (sig,))
                    o = start + 4
                    tag = _U64.unpack_from(data, o)[0]
                    redelivered = bool(data[o + 8])
                    o += 9
                    k = data[o]
                    exchange = data[o + 1:o + 1 + k].decode()
                    o += 1 + k
                    k = data[o]
                    rk = data[o + 1:o + 1 + k].decode()
                    o += 1 + k
                    count = _U32.unpack_from(data, o)[0]
                    fields = (tag, redelivered, exchange, rk, count)
                elif frame_type == 2:
                    left = _U64.unpack_from(data, start + 4)[0]
                elif frame_type == 3:
                    parts.append(data[start:end])
                    left -= end - start
                if not left:
                    body = parts[0] if len(parts) == 1 else b''.join(parts)
                    return (body,) + fields

    def wait_ack(self, seq):
        """Read until basic.ack covering ``seq``; return its tag."""
        while True:
            for frame_type, start, end, data in self.frames():
                if frame_type == 1 and \
                        _SIG.unpack_from(data, start) == BASIC_ACK:
                    tag = _U64.unpack_from(data, start + 4)[0]
                    if tag >= seq:
                        return tag


class Minimal(Floor):
    """The protocol floor's scenarios, timed like the floors'."""

    def client(self):
        self._take()
        return MinimalClient(self.sock, self.ch.channel_id, self.frame_max)

    def publish(self, n, body, name, clock):
        client = self.client()
        publish, q = client.publish, self.queue
        t0 = clock.start(name)
        for _ in range(n):
            publish(body, '', q)
        c1 = clock.stop(name)
        self._give_back()
        self._wait_depth(n)
        return clock.sample(n, t0, c1)

    def _wait_depth(self, n):
        deadline = time.monotonic() + floors.ALARM_SECONDS
        while self.depth() < n:
            if time.monotonic() > deadline:
                raise RuntimeError('minimal: the broker holds %d of %d'
                                   % (self.depth(), n))
            time.sleep(0.001)

    def consume_ack(self, n, body_size, prefetch, name, clock):
        client = self.client()
        channel = self.ch.channel_id
        ack = client.ack
        sizes = []

        def on_message(body, tag, *fields):
            ack(tag)
            if len(sizes) < 1:
                sizes.append(len(body))

        t0 = clock.start(name)
        self.sock.sendall(floors.qos_frame(channel, prefetch) +
                          floors.consume_frame(channel, self.queue,
                                               no_ack=False))
        client.consume(n, on_message)
        c1 = clock.stop(name)
        if sizes != [body_size] or client.rest:
            raise RuntimeError('minimal: body of %r bytes, %d bytes left '
                               'over' % (sizes, len(client.rest)))
        self._no_stray_bytes()
        self._give_back()
        return clock.sample(n, t0, c1)

    def get(self, n, name, clock):
        client = self.client()
        get, q = client.get, self.queue
        got = 0
        t0 = clock.start(name)
        for _ in range(n):
            if get(q) is not None:
                got += 1
        c1 = clock.stop(name)
        self._give_back()
        if got != n:
            raise RuntimeError('minimal: got %d of %d' % (got, n))
        return clock.sample(n, t0, c1)

    def confirm(self, n, body, name, clock):
        self.ch.confirm_select()
        client = self.client()
        publish, wait, q = client.publish, client.wait_ack, self.queue
        t0 = clock.start(name)
        for seq in range(1, n + 1):
            publish(body, '', q)
            wait(seq)
        c1 = clock.stop(name)
        self._give_back()
        self._wait_depth(n)
        return clock.sample(n, t0, c1)

    def pipelined(self, n, body, window, name, clock):
        """Publish in confirm mode, reading acks only after every
        ``window`` publishes, until the last one is acked."""
        self.ch.confirm_select()
        client = self.client()
        publish, wait, q = client.publish, client.wait_ack, self.queue
        t0 = clock.start(name)
        for seq in range(1, n + 1):
            publish(body, '', q)
            if seq % window == 0 or seq == n:
                wait(seq)
        c1 = clock.stop(name)
        self._give_back()
        self._wait_depth(n)
        return clock.sample(n, t0, c1)

    def consume_1mb(self, n, body_size, prefetch, name, clock):
        """The raw-socket floor (basic.qos, one basic.ack per message) plus
        one copy of each body into a fresh ``bytes``."""
        return Floor.consume_ack(self, n, body_size, prefetch, name, clock,
                                 copy_bodies=True)

