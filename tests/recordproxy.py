"""A TLS front for the TLS node's plain listener that puts
``basic.consume-ok`` and the deliveries right behind it in one TLS record.

Whether RabbitMQ itself writes them in one record is its writer's timing:
usually, but not on a loaded machine.  Clients behave differently when it
happens (the reply wait decrypts deliveries with the reply and leaves them
buffered, where polling the socket does not see them), so the tests about
that case connect here, where it always happens.

Everything else is relayed as it comes.  After a consume-ok the front holds
the broker's bytes until at least one more frame came and then nothing for
``QUIET`` seconds (or ``HOLD_ALONE`` passed with nothing behind it: a
consumer of an empty queue), and writes what it holds with one TLS write:
one record, up to 16 KiB of it.  The front runs an asyncio loop in a
daemon thread; its TLS server uses the node's server certificate.
"""
import asyncio
import ssl
import struct
import threading

__all__ = ('RecordProxy',)

QUIET = 0.05         # nothing more from the broker for this long: flush
HOLD_ALONE = 0.3     # a consume-ok with nothing behind it waits this long
RECORD = 16384       # TLS plaintext per record

_FRAME_HEAD = struct.Struct('>BHI')
_CONSUME_OK = struct.pack('>HH', 60, 21)


class RecordProxy:
    """``start()`` it with the node's certificates and plain port; clients
    connect to ``port`` with TLS (the node's CA verifies it)."""

    def __init__(self, certs, upstream_port, host='127.0.0.1'):
        self.certs = certs
        self.upstream = (host, upstream_port)
        self.host = host
        self.port = None
        #: how many consume-ok records carried frames behind the reply
        self.coalesced = 0
        self._loop = None
        self._thread = None
        self._server = None

    # -- lifecycle -----------------------------------------------------
    def start(self):
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._listen())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name='record-proxy',
                                        daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError('the TLS record proxy did not start')
        return self

    def stop(self):
        if self._loop is None:
            return

        async def close():
            self._server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    async def _listen(self):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.certs['server_cert'],
                            self.certs['server_key'])
        self._server = await asyncio.start_server(
            self._serve, self.host, 0, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    # -- one client ----------------------------------------------------
    async def _serve(self, client_r, client_w):
        try:
            broker_r, broker_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        up = asyncio.ensure_future(self._relay(client_r, broker_w))
        down = asyncio.ensure_future(self._down(broker_r, client_w))
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for writer in (client_w, broker_w):
            writer.close()

    @staticmethod
    async def _relay(reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            writer.write(data)
            await writer.drain()

    async def _down(self, reader, writer):
        """Broker to client: frame by frame, holding after a consume-ok.
        A frame read is never cancelled (that would lose its bytes): one
        still under way when the hold ends is awaited next."""
        reading = None
        while True:
            if reading is None:
                reading = asyncio.ensure_future(_read_frame(reader))
            frame, reading = await reading, None
            if frame is None:
                return
            if not _is_consume_ok(frame):
                writer.write(frame)
                await writer.drain()
                continue
            held, behind, timeout = bytearray(frame), 0, HOLD_ALONE
            while len(held) < RECORD:
                reading = asyncio.ensure_future(_read_frame(reader))
                done, _ = await asyncio.wait({reading}, timeout=timeout)
                if not done:
                    break
                more, reading = reading.result(), None
                if more is None:
                    break
                held += more
                behind += 1
                timeout = QUIET
            if behind:
                self.coalesced += 1
            writer.write(bytes(held[:RECORD]))      # one TLS record
            if len(held) > RECORD:
                writer.write(bytes(held[RECORD:]))
            await writer.drain()


async def _read_frame(reader):
    """One whole frame's bytes, or None at end of stream."""
    try:
        head = await reader.readexactly(_FRAME_HEAD.size)
        size = _FRAME_HEAD.unpack(head)[2]
        return head + await reader.readexactly(size + 1)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _is_consume_ok(frame):
    return frame[0] == 1 and frame[7:11] == _CONSUME_OK
