"""Differential harness: the same scenarios on py-amqp 5.4.2 and on this
package, outcomes compared.

``diff_scenarios.py`` runs once in the py-amqp reference virtualenv and once
on this package, against one scripted fake broker (this process) and the
session's RabbitMQ.  Compared per scenario: every observation it reports
(return values, exceptions with class, reply code and text, attributes,
encoded bytes) and every frame its client wrote to the fake broker after
the handshake, plus what the handshake itself carried (start-ok mechanism
and capabilities, tune-ok).

Each difference must be listed in :data:`EXPECTED_DIFFERENCES` with the id
of its entry in ``docs/migration.rst``; the test fails on an unlisted
difference, on a listed one that no longer differs, and when the ids in
the list and in the document disagree.
"""
import json
import re
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ours import is_ours, ours_env, reference_env

HERE = Path(__file__).resolve().parent

sys.path.insert(0, str(HERE.parent))
from protocol.fakebroker import (CLOSE_OK, Peer,  # noqa: E402
                                 start_frame, tune_frame)
from testkit import SigPeer, frame, sig_method_frame  # noqa: E402

from amqp import spec  # noqa: E402

pytestmark = pytest.mark.slow

DOC = HERE.parent.parent / 'docs' / 'migration.rst'
SIG = struct.Struct('>HH')

#: (scenario, observation) -> id of its entry in docs/migration.rst.
#: ``frames`` is the bytes written to the fake broker after the handshake,
#: ``handshake`` what start-ok/tune-ok carried.
EXPECTED_DIFFERENCES = {
    # -- module-level names
    ('compat_values', 'library_properties'): 'client-properties',
    ('compat_values', 'negotiate_capabilities_asked'): 'client-properties',
    **{(name, 'handshake'): 'client-properties'
       for name in ('channel_methods', 'confirm_publish',
                    'never_opened_channel', 'bare_reserved_fields',
                    'broker_errors', 'deliveries')},
    # -- exceptions
    ('exceptions', 'error_for_code'): 'no-route',
    ('broker_errors', 'return_unhandled'): 'no-route',
    ('broker_errors', 'returns'): 'no-route',
    ('real_broker', 'unroutable'): 'no-route',
    # -- Message
    ('message_surface', 'delivery_tag_unreceived'): 'delivery-tag',
    ('message_surface', 'properties_table'): 'timestamp-property',
    # -- table and argument encoding
    **{('table_encoding', '%s.%s' % (kind, name)): ident
       for kind in ('value', 'array')
       for names, ident in (
           (('escaped_surrogate', 'lone_surrogate'), 'surrogates'),
           (('bytearray', 'memoryview'), 'byte-arrays'),
           (('int32_min', 'int32_max_plus_1', 'int32_min_minus_1',
             'int64_max', 'int64_min', 'list'), 'int64-tag'),
           (('decimal_exp',), 'decimal-exponent'),
           (('int64_max_plus_1', 'decimal_tiny', 'decimal_huge',
             'pre_epoch', 'set', 'object', 'complex'), 'encode-errors'))
       for name in names},
    ('table_encoding', 'key.too_long'): 'encode-errors',
    ('method_encoding', 'short_str_arg'): 'encode-errors',
    # -- before connect()
    ('before_connect', 'is_alive'): 'is-alive',
    ('before_connect', 'heartbeat'): 'heartbeat-default',
    ('before_connect', 'connected'): 'connected-flag',
    ('never_opened_channel', 'connected_after'): 'connected-flag',
    ('real_broker', 'connected_after'): 'connected-flag',
    ('channel_methods', 'conn_after_close'): 'connected-flag',
    # -- return values
    **{('channel_methods', name): 'return-values'
       for name in ('04.queue_bind', '05.queue_unbind', '06.exchange_bind',
                    '07.exchange_unbind', '08.basic_qos', '12.basic_publish',
                    '13.basic_publish', '14.basic_publish',
                    '15.basic_publish', '22.exchange_delete',
                    '23.tx_select', '24.tx_commit', '25.tx_rollback',
                    '28.confirm_select', '29.basic_publish', 'close',
                    '17.basic_ack', '18.basic_reject',
                    '27.basic_recover_async',
                    'conn_close')},
    **{('confirm_publish', name): 'return-values'
       for name in ('kw', 'positional', 'timeouts')},
    ('real_broker', 'publish'): 'return-values',
    ('broker_errors', 'after_unhandled_return'): 'return-values',
    # -- channels closed by us or by the broker
    ('channel_methods', 'after_close'): 'closed-channel-state',
    ('channel_methods', 'use_after_close'): 'closed-channel-state',
    ('broker_errors', 'state_after_404'): 'channel-revive',
    ('broker_errors', 'frames'): 'channel-revive',
    # -- synchronous basic.recover
    ('channel_methods', '19.basic_recover'): 'recover-waits',
    ('broker_errors', 'forced_close'): 'recover-waits',
    ('broker_errors', 'connected_after'): 'recover-waits',
    # -- tolerated reserved fields
    ('bare_reserved_fields', 'get_empty'): 'reserved-fields',
    # -- drain_events
    ('deliveries', 'drain2'): 'drain-batches',
    # -- acks sent together
    ('held_acks', 'acks_in_over_5_segments'): 'held-acks',
}


# -- the fake broker ---------------------------------------------------------

class Server:
    """Accepts any number of clients; each runs the script its virtual
    host names (``LABEL/SCENARIO``) and its frames are kept by label."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(16)
        self.host = '127.0.0.1:%d' % self.listener.getsockname()[1]
        self.seen = {}      # (label, scenario) -> observations
        self.errors = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.settimeout(10)
            threading.Thread(target=self._serve, args=(sock,),
                             daemon=True).start()

    def close(self):
        self._stop = True
        self.listener.close()

    def _serve(self, sock):
        peer = SigPeer(Peer(sock))
        record = {'frames': []}
        try:
            peer.expect_header()
            peer.send(start_frame())
            props, mechanism, _response, locale = peer.expect_method(
                spec.Connection.StartOk)
            peer.send(tune_frame(channel_max=2047, frame_max=131072,
                                 heartbeat=0))
            tune_ok = peer.expect_method(spec.Connection.TuneOk)
            vhost = peer.expect_method(spec.Connection.Open)[0].decode()
            label, name = vhost.split('/', 1)
            record['handshake'] = {
                'mechanism': mechanism.decode(), 'locale': locale.decode(),
                'capabilities': sorted(props.get('capabilities', {})),
                'product': props.get('product'), 'tune_ok': tune_ok}
            self.seen[(label, name)] = record
            start = len(peer.frames)
            Responder(peer, name).run()
        except (EOFError, OSError, socket.timeout):
            pass
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))
        finally:
            if 'handshake' in record:
                record['frames'] = [
                    [t, ch, payload.hex()]
                    for t, ch, payload in peer.frames[start:]]
            sock.close()


def _content(channel, body, properties=b'\x00\x00', chunks=1):
    header = struct.pack('>HHQ', 60, 0, len(body)) + properties
    out = frame(2, channel, header)
    step = max(1, -(-len(body) // chunks))
    for i in range(0, len(body), step):
        out += frame(3, channel, body[i:i + step])
    return out


#: content_type 'text/plain', content_encoding 'utf-8', a header table,
#: delivery_mode 2
_DELIVERY_PROPS = (b'\xd0\x00' b'\x0atext/plain' b'\x05utf-8'
                   b'\x00\x00\x00\x0d' b'\x01aI\x00\x00\x00\x01'
                   b'\x01bt\x01' b'\x02')


class Responder:
    """Answers like RabbitMQ would, with per-scenario twists."""

    def __init__(self, peer, name):
        self.peer = peer
        self.name = name
        self.open = set()
        self.confirm = {}
        self.bare = name == 'bare_reserved_fields'

    def send(self, sig, fmt='', args=(), channel=0):
        self.peer.send(sig_method_frame(sig, args, channel))

    def run(self):
        peer = self.peer
        if self.bare:
            peer.send(frame(1, 0, SIG.pack(*spec.Connection.OpenOk)))
        else:
            self.send(spec.Connection.OpenOk, 's', ('',))
        while True:
            frame_type, channel, payload = peer.recv_frame()
            if frame_type != 1:
                continue
            sig = SIG.unpack_from(payload)
            method = spec.METHODS[sig]
            from amqp.serialization import loads
            args = loads(method.args, payload, 4)[0] if method.args else []
            if method.content:
                peer.recv_frame()  # header
                size = struct.unpack_from('>Q', peer.frames[-1][2], 4)[0]
                got = 0
                while got < size:
                    got += len(peer.recv_frame()[2])
            if self.handle(sig, args, channel) == 'stop':
                return

    def handle(self, sig, args, ch):
        C, B = spec.Connection, spec.Basic
        if sig == C.Close:
            self.peer.send(CLOSE_OK)
            return 'stop'
        if sig == C.CloseOk:
            return 'stop'
        if sig == spec.Channel.Open:
            self.open.add(ch)
            if self.bare:
                self.peer.send(frame(1, ch, SIG.pack(*spec.Channel.OpenOk)))
            else:
                self.send(spec.Channel.OpenOk, 'S', ('',), ch)
            return None
        if ch and ch not in self.open and sig != spec.Channel.CloseOk:
            # what RabbitMQ does with a method on a channel never opened
            self.send(C.Close, 'BsBB', (504, "CHANNEL_ERROR - expected "
                                        "'channel.open'", sig[0], sig[1]))
            return None
        if sig == spec.Channel.Close:
            self.open.discard(ch)
            self.send(spec.Channel.CloseOk, channel=ch)
            return None
        if sig == spec.Channel.CloseOk:
            self.open.discard(ch)
            return None
        if sig == spec.Queue.Declare:
            if args[2] and args[1] == 'missing':   # passive
                self.open.discard(ch)
                self.send(spec.Channel.Close, 'BsBB', (
                    404, "NOT_FOUND - no queue 'missing' in vhost 'v'",
                    50, 10), ch)
                return None
            if not args[6]:
                self.send(spec.Queue.DeclareOk, 'sll',
                          (args[1] or 'amq.gen-fake', 0, 0), ch)
            return None
        if sig == B.Consume:
            tag = args[2] or 'amq.ctag-fake'
            if not args[6]:
                self.send(B.ConsumeOk, 's', (tag,), ch)
            if self.name == 'deliveries':
                self.peer.send(
                    sig_method_frame(B.Deliver,
                                     (tag, 1, False, 'ex', 'rk'), ch) +
                    _content(ch, 'h\u00e9llo'.encode(), _DELIVERY_PROPS) +
                    sig_method_frame(B.Deliver,
                                     (tag, 2, True, '', 'q'), ch) +
                    _content(ch, b'x' * 10, chunks=3))
            return None
        if sig == B.Get:
            if self.name == 'deliveries':
                self.peer.send(sig_method_frame(B.GetOk,
                                                (3, False, '', 'q', 7), ch) +
                               _content(ch, b'got'))
            elif self.bare:
                self.peer.send(frame(1, ch, SIG.pack(*B.GetEmpty)))
            else:
                self.send(B.GetEmpty, 's', ('',), ch)
            return None
        if sig == B.Publish:
            if args[3] and args[2] == 'nowhere':   # mandatory, unroutable
                self.peer.send(sig_method_frame(
                    B.Return, (312, 'NO_ROUTE', args[1], args[2]),
                    ch) + _content(ch, b'lost'))
            if ch in self.confirm:
                self.confirm[ch] += 1
                self.send(B.Ack, 'Lb', (self.confirm[ch], False), ch)
            return None
        if sig == spec.Confirm.Select:
            self.confirm.setdefault(ch, 0)
            if not args[0]:
                self.send(spec.Confirm.SelectOk, channel=ch)
            return None
        if sig == B.Recover and self.name == 'broker_errors':
            self.send(C.Close, 'BsBB', (
                320, "CONNECTION_FORCED - broker forced connection closure "
                "with reason 'shutdown'", 0, 0))
            return None
        if sig == B.Cancel:
            if not args[1]:
                self.send(B.CancelOk, 's', (args[0],), ch)
            return None
        if sig == spec.Channel.Flow:
            self.send(spec.Channel.FlowOk, 'b', (args[0],), ch)
            return None
        replies = spec.METHODS[sig].replies
        if not replies:
            return None
        nowait = {spec.Exchange.Declare: 7, spec.Exchange.Delete: 3,
                  spec.Exchange.Bind: 4, spec.Exchange.Unbind: 4,
                  spec.Queue.Bind: 4, spec.Queue.Purge: 2,
                  spec.Queue.Delete: 4}.get(sig)
        if nowait is not None and args[nowait]:
            return None
        reply = spec.METHODS[replies[0]]
        values = tuple(0 for _ in reply.args)
        self.send(reply.sig, reply.args, values, ch)
        return None


# -- running both sides ------------------------------------------------------

def _run(python, env, label, server, broker_host):
    proc = subprocess.run(
        [str(python), str(HERE / 'diff_scenarios.py'), label, server.host,
         broker_host], env=env, cwd='/', capture_output=True, text=True,
        timeout=300)
    lines = [line for line in proc.stdout.splitlines()
             if line.startswith('RESULT:')]
    assert proc.returncode == 0 and lines, (
        f'{label} failed (rc={proc.returncode}):\n'
        f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return json.loads(lines[-1][len('RESULT:'):])


@pytest.fixture(scope='module')
def outcomes(broker, reference_python):
    server = Server()
    try:
        broker_host = f'{broker.host}:{broker.port}'
        ours = _run(sys.executable, ours_env(), 'ours', server, broker_host)
        theirs = _run(reference_python, reference_env(), 'theirs', server,
                      broker_host)
    finally:
        server.close()
    assert not server.errors, server.errors
    assert is_ours(ours['amqp_file'])
    assert not is_ours(theirs['amqp_file'])
    assert theirs['amqp_version'] == '5.4.2'
    for label, run in (('ours', ours), ('theirs', theirs)):
        for (seen_label, name), record in server.seen.items():
            if seen_label == label:
                run['results'].setdefault(name, {}).update(
                    frames=record['frames'], handshake=record['handshake'])
    return ours['results'], theirs['results']


def _differences(ours, theirs):
    found = {}
    for name in sorted(set(ours) | set(theirs)):
        a, b = ours.get(name, {}), theirs.get(name, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key, '<absent>') != b.get(key, '<absent>'):
                found[(name, key)] = (a.get(key, '<absent>'),
                                      b.get(key, '<absent>'))
    return found


def test_no_scenario_broke(outcomes):
    for results in outcomes:
        broken = {name: r['scenario_failed'] for name, r in results.items()
                  if 'scenario_failed' in r}
        assert not broken, broken


def test_every_difference_is_expected(outcomes):
    found = _differences(*outcomes)
    unexpected = {k: v for k, v in found.items()
                  if k not in EXPECTED_DIFFERENCES}
    assert not unexpected, json.dumps(
        {'%s:%s' % k: {'ours': v[0], 'py-amqp': v[1]}
         for k, v in unexpected.items()}, indent=1)[:20000]


def test_every_expected_difference_still_differs(outcomes):
    found = _differences(*outcomes)
    stale = sorted(k for k in EXPECTED_DIFFERENCES if k not in found)
    assert not stale, stale


def test_scenarios_saw_the_fake_broker(outcomes):
    ours, theirs = outcomes
    for name in ('channel_methods', 'confirm_publish', 'deliveries'):
        assert ours[name]['frames'] and theirs[name]['frames'], name
    # the bytes of every publish, including a Message subclass's own
    # properties, match py-amqp's exactly
    assert ours['confirm_publish']['frames'] == \
        theirs['confirm_publish']['frames']


def _doc_ids():
    text = DOC.read_text(encoding='utf-8')
    return set(re.findall(r'^\.\. _migration-([a-z0-9-]+):$', text, re.M))


def test_expected_differences_match_the_migration_doc():
    listed = set(EXPECTED_DIFFERENCES.values())
    documented = _doc_ids()
    assert listed == documented, {
        'in the harness only': sorted(listed - documented),
        'in the doc only': sorted(documented - listed)}


def test_migration_doc_is_in_the_toctree():
    index = (DOC.parent / 'index.rst').read_text(encoding='utf-8')
    assert re.search(r'^\s+migration$', index, re.M)


def test_doc_ids_are_unique():
    text = DOC.read_text(encoding='utf-8')
    ids = re.findall(r'^\.\. _migration-([a-z0-9-]+):$', text, re.M)
    assert len(ids) == len(set(ids))



# -- a fleet running both during a migration ---------------------------------

_CROSS_SCRIPT = r'''
import json, sys, time, amqp
from decimal import Decimal
from datetime import datetime
host, mode, queue = sys.argv[1:4]
conn = amqp.Connection(host, connect_timeout=5)
conn.connect()
ch = conn.channel()
if mode == 'publish':
    ch.basic_publish(amqp.Message(b'x', application_headers={
        'text': 'caf\xe9', 'bytes': b'raw', 'binary': b'\xff\x00',
        'small': 7, 'negative': -2 ** 31, 'big': 2 ** 40, 'flag': True,
        'price': Decimal('12.34'), 'when': datetime(2024, 1, 2, 3, 4, 5),
        'nested': {'list': [1, 'a', None, b'b']}, 'none': None,
        'float': 1.5}), routing_key=queue)
else:
    deadline = time.monotonic() + 10
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = ch.basic_get(queue, no_ack=True)
        time.sleep(0.02)
    print('RESULT:' + repr(sorted(msg.headers.items())))
conn.close()
'''


def _cross(python, env, host, mode, queue):
    proc = subprocess.run([str(python), '-c', _CROSS_SCRIPT, host, mode,
                           queue], env=env, cwd='/', capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines()
            if line.startswith('RESULT:')]


def test_headers_read_the_same_whichever_library_published(
        broker, reference_python):
    # a fleet mid-migration: every publisher/consumer pairing of the two
    # libraries sees the same header values (bytes as str, 64-bit ints,
    # decimals, datetimes, nested tables)
    import amqp
    host = f'{broker.host}:{broker.port}'
    libraries = {'ours': (sys.executable, ours_env()),
                 'py-amqp': (reference_python, reference_env())}
    seen = {}
    with amqp.Connection(host) as conn:
        ch = conn.channel()
        for publisher in libraries:
            for consumer in libraries:
                queue = ch.queue_declare('', auto_delete=False).queue
                try:
                    _cross(*libraries[publisher], host, 'publish', queue)
                    seen[publisher, consumer] = _cross(
                        *libraries[consumer], host, 'get', queue)
                finally:
                    ch.queue_delete(queue)
    assert len(set(map(tuple, seen.values()))) == 1, seen
    assert "('bytes', 'raw')" in seen['ours', 'py-amqp'][0]
