"""An in-process TCP proxy between the client and a real broker, with
faults the tests switch on and off: cut every connection, stall a
direction (stop reading it, so the sender's socket buffers fill), drop a
direction (read and discard), trickle a direction one byte at a time.

Each direction of each connection is pumped by its own thread; every
byte read from the client is kept (``Link.upstream``) so tests count the
frames that went towards the broker.
"""
import select
import socket
import struct
import threading
import time

UP = 'up'        # client -> broker
DOWN = 'down'    # broker -> client

PASS = 'pass'
STALL = 'stall'
DROP = 'drop'
TRICKLE = 'trickle'

_FRAME_HEADER = struct.Struct('>BHI')
_METHOD_SIG = struct.Struct('>HH')
_PROTOCOL_HEADER_SIZE = 8


def parse_frames(data):
    """Split a client's byte stream (protocol header first) into frames.

    Returns ``(frames, rest)``: ``frames`` a list of ``(type, channel,
    payload)`` for every complete frame, ``rest`` the bytes of a frame cut
    off at the end of ``data``.
    """
    frames = []
    offset = _PROTOCOL_HEADER_SIZE
    while len(data) - offset >= 7:
        frame_type, channel, size = _FRAME_HEADER.unpack_from(data, offset)
        end = offset + 7 + size + 1
        if end > len(data):
            break
        frames.append((frame_type, channel, bytes(data[offset + 7:end - 1])))
        offset = end
    return frames, bytes(data[offset:])


def method_sigs(frames):
    """The (class id, method id) of each method frame in ``frames``."""
    return [_METHOD_SIG.unpack_from(payload) for frame_type, _, payload
            in frames if frame_type == 1]


class Link:
    """One client connection through the proxy and its broker side."""

    def __init__(self, proxy, client, server):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.upstream = bytearray()    # every byte read from the client
        self.downstream = 0            # bytes read from the broker
        self.client_eof = threading.Event()
        self.closed = False
        self._threads = [
            threading.Thread(target=self._pump, args=(UP, client, server),
                             daemon=True, name='proxy-up'),
            threading.Thread(target=self._pump, args=(DOWN, server, client),
                             daemon=True, name='proxy-down'),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, direction, src, dst):
        proxy = self.proxy
        try:
            while not self.closed:
                mode = proxy.modes[direction]
                if mode == STALL:
                    time.sleep(0.002)
                    continue
                ready, _, _ = select.select([src], [], [], 0.02)
                # the mode may have changed while we waited
                mode = proxy.modes[direction]
                if not ready or mode == STALL:
                    continue
                trickle = mode == TRICKLE
                data = src.recv(1 if trickle else 65536)
                if not data:
                    if direction == UP:
                        self.client_eof.set()
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                if direction == UP:
                    self.upstream += data
                else:
                    self.downstream += len(data)
                if mode == DROP:
                    continue
                dst.sendall(data)
                if trickle and proxy.trickle_delay:
                    time.sleep(proxy.trickle_delay)
        except OSError:
            if direction == UP:
                self.client_eof.set()
            self.cut()

    def cut(self):
        """Close both sides at once, as a dead route or a killed peer
        would look to each."""
        self.closed = True
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def frames_up(self):
        """Frames the client sent (see :func:`parse_frames`)."""
        return parse_frames(self.upstream)


class Proxy:
    """Listen on 127.0.0.1 (a free port) and forward every accepted
    connection to ``target_host:target_port``."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.modes = {UP: PASS, DOWN: PASS}
        self.trickle_delay = 0.0
        self.links = []
        self._listener = socket.socket()
        self._listener.bind(('127.0.0.1', 0))
        self._listener.listen(16)
        self.host = '127.0.0.1'
        self.port = self._listener.getsockname()[1]
        self.address = '%s:%d' % (self.host, self.port)
        self._stopped = False
        self._accepter = threading.Thread(target=self._accept, daemon=True,
                                          name='proxy-accept')
        self._accepter.start()

    def _accept(self):
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.links.append(Link(self, client, server))

    def set(self, up=None, down=None, trickle_delay=None):
        """Change the mode of one or both directions (for every link)."""
        if up is not None:
            self.modes[UP] = up
        if down is not None:
            self.modes[DOWN] = down
        if trickle_delay is not None:
            self.trickle_delay = trickle_delay

    def cut(self):
        """Cut every connection through the proxy (new ones still work)."""
        for link in list(self.links):
            link.cut()

    def wait_links(self, n, timeout=5):
        deadline = time.monotonic() + timeout
        while len(self.links) < n:
            assert time.monotonic() < deadline, 'no connection through proxy'
            time.sleep(0.01)
        return self.links[n - 1]

    def close(self):
        self._stopped = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        try:
            self._listener.close()
        except OSError:
            pass
        self.cut()
