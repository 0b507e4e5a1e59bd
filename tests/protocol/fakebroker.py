"""A scripted fake AMQP broker on a loopback socket, for what a real
RabbitMQ will not do on demand: bad frames, 1-byte writes, silence,
closing mid-frame, missed heartbeats, SASL challenges.

A script is a function ``script(peer)`` run in a thread against the one
accepted connection; ``peer`` reads and writes frames and keeps every byte
the client sent in ``peer.received`` so tests assert on the wire.

Frames are encoded and decoded by pika (``testkit``), never by the codec
under test, so a bug shared by our encoder and decoder cannot hide.
"""
import socket
import struct
import threading
import time
import types

import pika.frame
from pika.spec import Channel, Connection

from testkit import PROTOCOL_HEADER, decode_frame, method_frame

TIMEOUT = 3     # seconds: connect_timeout of FakeBroker.connect
_ENVELOPE = struct.Struct('>BHI')

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


def start_frame(mechanisms=b'PLAIN AMQPLAIN', properties=None):
    return method_frame(Connection.Start(
        0, 9, properties or DEFAULT_PROPERTIES, mechanisms, b'en_US'))


def tune_frame(channel_max=2047, frame_max=131072, heartbeat=60):
    return method_frame(Connection.Tune(channel_max, frame_max, heartbeat))


OPEN_OK = method_frame(Connection.OpenOk())
CLOSE_OK = method_frame(Connection.CloseOk())


def handshake_then_close(body=None, **handshake):
    """A script: the handshake, ``body(peer)``, then close-ok for the
    client's close."""
    def script(peer):
        peer.handshake(**handshake)
        if body is not None:
            body(peer)
        peer.serve_close()
    return script


class Peer:
    """The server side of one connection.

    Frames are read and written with pika's codec (``testkit``), not the
    one under test; methods are ``pika.spec`` instances, whose arguments
    are attributes (``tune_ok.heartbeat``).
    """

    def __init__(self, sock):
        self.sock = sock
        self.received = bytearray()
        self._buf = bytearray()
        self.frames = []      # every frame read, as pika.frame objects

    def send(self, data):
        self.sock.sendall(data)

    def send_method(self, method, channel=0):
        self.send(method_frame(method, channel))

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
        assert header == PROTOCOL_HEADER, header
        return header

    def recv_frame(self, skip_heartbeats=True):
        """The next frame, decoded by pika (heartbeats skipped)."""
        while True:
            envelope = self.recv_exactly(_ENVELOPE.size)
            _, _, size = _ENVELOPE.unpack(envelope)
            decoded = decode_frame(envelope + self.recv_exactly(size + 1))
            self.frames.append(decoded)
            if isinstance(decoded, pika.frame.Heartbeat) and skip_heartbeats:
                continue
            return decoded

    def recv_method(self):
        """The next method, a ``pika.spec`` method instance."""
        decoded = self.recv_frame()
        assert isinstance(decoded, pika.frame.Method), decoded
        return decoded.method

    def expect_method(self, cls):
        """The next method, which must be a ``cls`` (a ``pika.spec``
        method class such as ``Connection.StartOk``)."""
        method = self.recv_method()
        assert isinstance(method, cls), (method, cls)
        return method

    def start(self, mechanisms=b'PLAIN AMQPLAIN', properties=None):
        """Read the protocol header, send start; return the start-ok."""
        self.expect_header()
        self.send(start_frame(mechanisms, properties))
        return self.expect_method(Connection.StartOk)

    def tune_and_open(self, channel_max=2047, frame_max=131072,
                      heartbeat=60):
        """Send tune, read tune-ok and open, send open-ok; return the
        tune-ok and open."""
        self.send(tune_frame(channel_max, frame_max, heartbeat))
        tune_ok = self.expect_method(Connection.TuneOk)
        open_ = self.expect_method(Connection.Open)
        self.send(OPEN_OK)
        return tune_ok, open_

    def handshake(self, mechanisms=b'PLAIN AMQPLAIN', channel_max=2047,
                  frame_max=131072, heartbeat=60):
        """Run a normal handshake; return what the client sent in it
        (``start_ok``, ``tune_ok``, ``open``)."""
        start_ok = self.start(mechanisms)
        tune_ok, open_ = self.tune_and_open(channel_max, frame_max,
                                            heartbeat)
        return types.SimpleNamespace(start_ok=start_ok, tune_ok=tune_ok,
                                     open=open_)

    def serve_channel_open(self, channel=1):
        """Answer the client's channel.open with open-ok."""
        self.expect_method(Channel.Open)
        self.send_method(Channel.OpenOk(), channel)

    def serve_close(self):
        """Answer the client's connection.close with close-ok."""
        self.expect_method(Connection.Close)
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
                # a script may have replaced peer.sock (TLS wraps it, and
                # the wrapper owns the descriptor): close what it uses, so
                # a failed script hangs up instead of leaving the client
                # waiting for ever
                for s in (self.peer.sock, sock):
                    try:
                        s.close()
                    except OSError:
                        pass
        except (EOFError, BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: what many scripts provoke
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            self.done.set()

    def connect(self, **kwargs):
        """A ``amqp.Connection`` connected to this broker (the script
        must serve the handshake)."""
        from amqp import Connection as AMQPConnection
        kwargs.setdefault('connect_timeout', TIMEOUT)
        conn = AMQPConnection(self.host, **kwargs)
        conn.connect()
        return conn

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
