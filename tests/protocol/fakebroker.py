"""A scripted fake AMQP broker on a loopback socket, for what a real
RabbitMQ will not do on demand: bad frames, 1-byte writes, silence,
closing mid-frame, missed heartbeats, SASL challenges.

A script is a function ``script(peer)`` run in a thread against the one
accepted connection; ``peer`` reads and writes frames and keeps every byte
the client sent in ``peer.received`` so tests assert on the wire.
"""
import socket
import struct
import threading
import time

from amqp.serialization import dumps, loads
from amqp import spec

FRAME_HEADER = struct.Struct('>BHI')
METHOD_SIG = struct.Struct('>HH')
HEARTBEAT = b'\x08\x00\x00\x00\x00\x00\x00\xce'

DEFAULT_PROPERTIES = {
    'product': 'FakeBroker',
    'capabilities': {
        'publisher_confirms': True,
        'consumer_cancel_notify': True,
        'connection.blocked': True,
        'authentication_failure_close': True,
        'basic.nack': True,
        'exchange_exchange_bindings': True,
    },
}


def frame(frame_type, channel, payload):
    return FRAME_HEADER.pack(frame_type, channel, len(payload)) + \
        payload + b'\xce'


def method_frame(sig, fmt='', args=(), channel=0):
    payload = METHOD_SIG.pack(*sig) + (dumps(fmt, args) if fmt else b'')
    return frame(1, channel, payload)


def start_frame(mechanisms=b'PLAIN AMQPLAIN', properties=None):
    return method_frame(spec.Connection.Start, 'ooFSS',
                        (0, 9, properties or DEFAULT_PROPERTIES,
                         mechanisms, b'en_US'))


def tune_frame(channel_max=2047, frame_max=131072, heartbeat=60):
    return method_frame(spec.Connection.Tune, 'BlB',
                        (channel_max, frame_max, heartbeat))


OPEN_OK = method_frame(spec.Connection.OpenOk, 's', ('',))
CLOSE_OK = method_frame(spec.Connection.CloseOk)


class Peer:
    """The server side of one connection."""

    def __init__(self, sock):
        self.sock = sock
        self.received = bytearray()
        self._buf = bytearray()
        self.frames = []      # every frame read: (type, channel, payload)

    def send(self, data):
        self.sock.sendall(data)

    def send_slowly(self, data, step=1):
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            time.sleep(0.0005)

    def _fill(self, n):
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('client closed the connection')
            self.received += chunk
            self._buf += chunk

    def recv_exactly(self, n):
        self._fill(n)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def expect_header(self):
        header = self.recv_exactly(8)
        assert header == spec.PROTOCOL_HEADER, header
        return header

    def recv_frame(self, skip_heartbeats=True):
        while True:
            frame_type, channel, size = FRAME_HEADER.unpack(
                self.recv_exactly(7))
            payload = self.recv_exactly(size)
            assert self.recv_exactly(1) == b'\xce'
            self.frames.append((frame_type, channel, payload))
            if frame_type == 8 and skip_heartbeats:
                continue
            return frame_type, channel, payload

    def recv_method(self):
        """Return ``(method_sig, args)`` of the next method frame."""
        frame_type, channel, payload = self.recv_frame()
        assert frame_type == 1, (frame_type, payload)
        sig = METHOD_SIG.unpack_from(payload)
        method = spec.METHODS[sig]
        args = loads(method.args, payload, 4)[0] if method.args else []
        # strings as the raw bytes on the wire, for byte-exact assertions
        args = [a.encode('utf-8', 'surrogateescape') if isinstance(a, str)
                else a for a in args]
        return sig, args

    def expect_method(self, sig):
        got, args = self.recv_method()
        assert got == sig, (got, sig)
        return args

    def handshake(self, mechanisms=b'PLAIN AMQPLAIN', channel_max=2047,
                  frame_max=131072, heartbeat=60):
        """Run a normal handshake; return the start-ok and tune-ok args."""
        self.expect_header()
        self.send(start_frame(mechanisms))
        start_ok = self.expect_method(spec.Connection.StartOk)
        self.send(tune_frame(channel_max, frame_max, heartbeat))
        tune_ok = self.expect_method(spec.Connection.TuneOk)
        self.expect_method(spec.Connection.Open)
        self.send(OPEN_OK)
        return start_ok, tune_ok

    def serve_close(self):
        """Answer the client's connection.close with close-ok."""
        self.expect_method(spec.Connection.Close)
        self.send(CLOSE_OK)

    def wait_closed(self, timeout=5):
        """Read until the client closes its side (EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.received += chunk
        except OSError:
            return


class FakeBroker:
    """Listen on 127.0.0.1, run ``script(peer)`` for the first client."""

    def __init__(self, script):
        self.script = script
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.host = '127.0.0.1:%d' % self.port
        self.peer = None
        self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.listener.settimeout(10)
            sock, _ = self.listener.accept()
            sock.settimeout(10)
            self.peer = Peer(sock)
            try:
                self.script(self.peer)
            finally:
                try:
                    sock.close()
                except OSError:
                    pass
        except (EOFError, BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: what many scripts provoke
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            self.done.set()

    def finish(self, timeout=5):
        """Wait for the script; re-raise anything it raised."""
        self.done.wait(timeout)
        self.listener.close()
        if self.error is not None:
            raise self.error
        return self.peer

    @property
    def received(self):
        return bytes(self.peer.received) if self.peer else b''
