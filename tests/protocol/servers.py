"""A fake broker that serves many channels at once, for the tests of
threads sharing a connection (``test_reader.py``) and of timeouts
(``test_timeouts.py``).

:class:`Server` runs the handshake, then reads methods in a loop and
answers each with a default reply (channel.open-ok, queue.declare-ok
with the queue's name, basic.consume-ok, close-ok...).  A test changes
what happens to a method by registering ``on(method_class, handler)``:
``handler(server, channel, method)`` may answer late, in another order,
not at all, or send something else first.  Everything the client sent
is recorded (``server.methods``, ``server.published``).

Frames are read and written with pika's codec, never ours.
"""
import queue
import threading

import pika.frame
from pika.spec import Basic, Channel, Confirm, Connection, Queue

from testkit import message_frames, method_frame

from .fakebroker import FakeBroker


class Server:
    """Serve one client connection from a thread; see the module doc."""

    def __init__(self, heartbeat=0, frame_max=131072):
        self.handlers = {}
        self.methods = []          # (channel, pika method), in order
        self.published = []        # (channel, body) of basic.publish
        self.errors = []
        self.heartbeat = heartbeat
        self.frame_max = frame_max
        self.confirming = set()    # channels in confirm mode
        self.delivery_tags = {}    # channel -> last publish seq (confirms)
        self._out = threading.Lock()
        self.closed = threading.Event()
        self.hung_up = False
        self.peer = None
        self.broker = FakeBroker(self._script)

    @property
    def host(self):
        return self.broker.host

    def on(self, method_class, handler):
        """``handler(server, channel, method)`` answers ``method_class``
        instead of the default reply."""
        self.handlers[method_class] = handler

    def send(self, data):
        """Write raw bytes to the client (thread-safe)."""
        with self._out:
            self.peer.send(data)

    def reply(self, channel, method):
        self.send(method_frame(method, channel))

    def deliver(self, channel, consumer_tag, delivery_tag, body,
                properties=None):
        self.send(message_frames(
            Basic.Deliver(consumer_tag, delivery_tag, False, '', 'rk'),
            body, channel, properties, self.frame_max))

    def hang_up(self):
        """Close the socket without an AMQP close (the broker
        vanishes)."""
        self.hung_up = True
        self.peer.sock.close()

    def later(self, seconds, fn, *args):
        """Run ``fn(*args)`` in ``seconds`` from a timer thread."""
        def run():
            try:
                fn(*args)
            except OSError:
                if not self.closed.is_set():
                    raise   # (sends after the client left are moot)
        timer = threading.Timer(seconds, run)
        timer.daemon = True
        timer.start()
        return timer

    def connect(self, **kwargs):
        return self.broker.connect(**kwargs)

    def finish(self, timeout=5):
        self.closed.wait(timeout)
        self.broker.finish(timeout)
        if self.errors:
            raise self.errors[0]

    # -- the script ------------------------------------------------------
    def _script(self, peer):
        self.peer = peer
        peer.handshake(heartbeat=self.heartbeat, frame_max=self.frame_max)
        content = None
        try:
            while True:
                decoded = peer.recv_frame()
                if isinstance(decoded, pika.frame.Header):
                    content = [decoded.channel_number, decoded.body_size,
                               []]
                    if not decoded.body_size:
                        self._published(content)
                        content = None
                    continue
                if isinstance(decoded, pika.frame.Body):
                    content[2].append(decoded.fragment)
                    if sum(map(len, content[2])) >= content[1]:
                        self._published(content)
                        content = None
                    continue
                channel, method = decoded.channel_number, decoded.method
                self.methods.append((channel, method))
                if self._handle(channel, method) is False:
                    return
        except EOFError:
            return
        except OSError:
            if self.hung_up:
                return
            raise
        except BaseException as exc:   # reported by finish()
            self.errors.append(exc)
            raise
        finally:
            self.closed.set()

    def _published(self, content):
        channel, _, chunks = content
        self.published.append((channel, b''.join(chunks)))
        if channel in self.confirming:
            tag = self.delivery_tags[channel] = \
                self.delivery_tags.get(channel, 0) + 1
            handler = self.handlers.get(Basic.Ack)
            if handler is not None:
                handler(self, channel, tag)
            else:
                self.reply(channel, Basic.Ack(tag, False))

    def _handle(self, channel, method):
        handler = self.handlers.get(type(method))
        if handler is not None:
            return handler(self, channel, method)
        if isinstance(method, Channel.Open):
            self.reply(channel, Channel.OpenOk())
        elif isinstance(method, Channel.Close):
            self.reply(channel, Channel.CloseOk())
        elif isinstance(method, Connection.Close):
            self.reply(0, Connection.CloseOk())
            return False
        elif isinstance(method, Queue.Declare):
            self.reply(channel, Queue.DeclareOk(method.queue or 'amq.gen',
                                                0, 0))
        elif isinstance(method, Basic.Consume):
            self.reply(channel, Basic.ConsumeOk(method.consumer_tag or
                                                'ctag'))
        elif isinstance(method, Basic.Cancel):
            self.reply(channel, Basic.CancelOk(method.consumer_tag))
        elif isinstance(method, Basic.Get):
            self.reply(channel, Basic.GetEmpty())
        elif isinstance(method, Basic.Qos):
            self.reply(channel, Basic.QosOk())
        elif isinstance(method, Confirm.Select):
            self.confirming.add(channel)
            self.reply(channel, Confirm.SelectOk())
        return None


def run_threads(*targets, timeout=10):
    """Run each callable in a thread; return their results (an exception
    is returned, not raised) in order; fail if one is still running
    after ``timeout``."""
    results = queue.Queue()

    def run(i, target):
        try:
            results.put((i, target()))
        except BaseException as exc:
            results.put((i, exc))

    threads = [threading.Thread(target=run, args=(i, t), daemon=True)
               for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), 'a thread still waits'
    out = [None] * len(targets)
    while not results.empty():
        i, value = results.get()
        out[i] = value
    return out
