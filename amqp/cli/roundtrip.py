"""The default command of ``python -m amqp``: a publish/consume round trip
against a real broker.

Connects to ``--url`` (default ``$AMQP_URL`` or
``amqp://guest:guest@localhost:5672//``); when nothing answers there it
starts a throwaway RabbitMQ on 127.0.0.1 (see ``amqp.cli.localbroker``).
Then, through the public API only, it declares an exclusive auto-delete
queue, checks one message through ``basic_get``, publishes ``--count``
messages with properties and headers, consumes them with
``basic_consume`` and ``drain_events``, checks that every body and
property arrived intact and in order, and prints a short report.

Exit status: 0 on success, 1 when the round trip fails, 2 on bad usage.
"""
from __future__ import annotations

import socket
import sys
import time
import uuid
from typing import Dict, List, Optional, TextIO, Tuple, TypedDict
from urllib.parse import unquote, urlsplit

import amqp
from . import localbroker
from amqp.serialization import EncodableValue

DEFAULT_URL = 'amqp://guest:guest@localhost:5672//'
_PATTERN = bytes(range(256)) * 1200        # bodies are slices of this
_BIG = 300000                               # > frame_max: several frames
_SIZES = (10, 100, 1000, 4000, 0)


class RoundTripError(Exception):
    """The broker answered, but something did not arrive as it was sent."""


class URLParams(TypedDict):
    """What :func:`parse_url` makes of a URL."""

    host: str
    port: int
    userid: str
    password: str
    virtual_host: str
    ssl: bool


class RoundTripResult(TypedDict):
    """What :func:`round_trip` measured, for :func:`report`."""

    product: object
    version: object
    count: int
    bytes: int
    publish: float
    consume: float
    elapsed: float


def parse_url(url: str) -> URLParams:
    """Split ``amqp://user:pass@host:port/vhost`` into Connection arguments.

    An empty path or ``/`` means the default vhost ``/``; otherwise the
    path after the first slash, percent-decoded, is the vhost (so ``//``
    is ``/`` and ``/%2f`` is ``/`` too).  Raises ValueError.
    """
    parts = urlsplit(url)
    if parts.scheme not in ('amqp', 'amqps'):
        raise ValueError('URL scheme must be amqp or amqps: {0}'.format(
            redact(url)))
    if not parts.hostname:
        raise ValueError('URL has no host: {0}'.format(redact(url)))
    port = parts.port or (5671 if parts.scheme == 'amqps' else 5672)
    path = parts.path
    vhost = '/' if path in ('', '/') else unquote(path[1:])
    return {
        'host': parts.hostname,
        'port': port,
        'userid': unquote(parts.username or 'guest'),
        'password': unquote(parts.password or 'guest'),
        'virtual_host': vhost,
        'ssl': parts.scheme == 'amqps',
    }


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition('@')
    user = netloc[0].partition(':')[0]
    return parts._replace(netloc=user + ':***@' + netloc[2]).geturl()


def _hostport(host: str, port: object) -> str:
    return '[{0}]:{1}'.format(host, port) if ':' in host else \
        '{0}:{1}'.format(host, port)


def _expected(i: int, run: str) -> Tuple[bytes, Dict[str, EncodableValue]]:
    """Body and properties of message ``i`` of run ``run``."""
    if i % 250 == 249:
        size = _BIG
    else:
        size = _SIZES[i % len(_SIZES)]
    body = b'' if i % 97 == 0 else b'%08d|' % i + _PATTERN[:size]
    properties: Dict[str, EncodableValue] = {
        'content_type': 'application/octet-stream',
        'delivery_mode': 1,
        'priority': i % 10,
        'correlation_id': '{0}-{1}'.format(run, i),
        'message_id': str(i),
        'type': 'amqp.round-trip',
        'app_id': 'python -m amqp',
        'application_headers': {
            'seq': i,
            'run': run,
            'big': 2 ** 40 + i,
            'negative': -i,
            'even': i % 2 == 0,
            'ratio': i / 8,
            'tags': ['amqp', i],
            'nested': {'k': 'v', 'n': i},
        },
    }
    return body, properties


def _check(msg: amqp.Message, i: int, run: str, queue: str) -> None:
    body, properties = _expected(i, run)
    got = msg.body or b''  # py-amqp leaves an empty body as ''
    if got != body:
        raise RoundTripError(
            'message {0}: body differs ({1} bytes sent, {2} received)'.format(
                i, len(body), len(got)))
    for name, value in properties.items():
        got_value = msg.properties.get(name)
        if got_value != value:
            raise RoundTripError('message {0}: {1} sent as {2!r}, received '
                                 'as {3!r}'.format(i, name, value, got_value))
    info = msg.delivery_info
    assert info is not None  # set on every delivered message
    if info.get('routing_key') != queue:
        raise RoundTripError('message {0}: routing key {1!r}'.format(
            i, info.get('routing_key')))


def round_trip(params: URLParams, count: int,
               timeout: Optional[float] = None) -> RoundTripResult:
    """Run the round trip; return a dict for the report.

    Raises RoundTripError, amqp.AMQPError or OSError.
    """
    run = uuid.uuid4().hex[:12]
    timeout = timeout or 60 + count * 0.02
    conn = amqp.Connection(
        host=_hostport(params['host'], params['port']),
        userid=params['userid'], password=params['password'],
        virtual_host=params['virtual_host'], ssl=params['ssl'],
        connect_timeout=10)
    started = time.monotonic()
    conn.connect()
    try:
        server = conn.server_properties
        ch = conn.channel()
        queue = ch.queue_declare('', exclusive=True, auto_delete=True).queue

        # basic_get first: an auto-delete queue goes once its consumer is
        # cancelled, so the get cannot come after the consumer.
        body, properties = _get_message(run)
        ch.basic_publish(_message(body, properties), exchange='',
                         routing_key=queue)
        msg = None
        deadline = time.monotonic() + 10
        while msg is None and time.monotonic() < deadline:
            msg = ch.basic_get(queue, no_ack=False)
            if msg is None:
                time.sleep(0.05)
        if msg is None:
            raise RoundTripError('basic_get returned nothing in 10 s')
        if msg.body != body or msg.properties.get(
                'application_headers') != properties['application_headers']:
            raise RoundTripError('basic_get: got {0!r}'.format(msg))
        ch.basic_ack(msg.delivery_tag)
        if ch.basic_get(queue, no_ack=True) is not None:
            raise RoundTripError('basic_get: queue not empty after one get')

        received: List[amqp.Message] = []

        def on_message(message: amqp.Message) -> None:
            received.append(message)
            message.ack()

        ch.basic_qos(0, 200, False)
        tag = ch.basic_consume(queue, callback=on_message, no_ack=False)

        t0 = time.monotonic()
        nbytes = 0
        for i in range(count):
            body, properties = _expected(i, run)
            nbytes += len(body)
            ch.basic_publish(_message(body, properties),
                             exchange='', routing_key=queue)
        t1 = time.monotonic()
        deadline = t1 + timeout
        while len(received) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RoundTripError(
                    'timed out after {0:.0f} s: {1} of {2} messages '
                    'received'.format(timeout, len(received), count))
            try:
                conn.drain_events(timeout=min(left, 5.0))
            except socket.timeout:
                pass
        t2 = time.monotonic()
        if len(received) != count:
            raise RoundTripError('{0} messages received, {1} sent'.format(
                len(received), count))
        for i, message in enumerate(received):
            _check(message, i, run, queue)
        ch.basic_cancel(tag)
        ch.close()
    except BaseException:
        try:
            conn.close()
        except Exception:  # the first error is the one to report
            pass
        raise
    conn.close()
    return {
        'product': server.get('product', '?'),
        'version': server.get('version', '?'),
        'count': count,
        'bytes': nbytes,
        'publish': t1 - t0,
        'consume': t2 - t0,
        'elapsed': time.monotonic() - started,
    }


def _message(body: bytes,
             properties: Dict[str, EncodableValue]) -> 'amqp.Message[bytes]':
    """``Message(body, **properties)``, spelled so that a type checker
    cannot take a property for the ``channel`` argument."""
    msg = amqp.Message(body)
    msg.properties = dict(properties)
    return msg


def _get_message(run: str) -> Tuple[bytes, Dict[str, EncodableValue]]:
    return (b'basic_get ' + run.encode(),
            {'application_headers': {'run': run, 'via': 'basic_get'}})


def _rate(n: int, seconds: float) -> str:
    return '{0:,.0f} msgs/s'.format(n / seconds) if seconds > 0 else '-'


def report(result: RoundTripResult, where: str,
           out: TextIO = sys.stdout) -> None:
    n = result['count']
    print('amqp {0} round trip with {1} {2} at {3}'.format(
        amqp.__version__, result['product'], result['version'], where),
        file=out)
    print('  messages:  {0:,} published and consumed in order, bodies and '
          'properties intact ({1:,.1f} MB)'.format(
              n, result['bytes'] / 1e6), file=out)
    print('  basic_get: 1 message, intact', file=out)
    print('  publish:   {0:.3f} s ({1})'.format(
        result['publish'], _rate(n, result['publish'])), file=out)
    print('  delivered: {0:.3f} s from first publish to last delivery '
          '({1})'.format(
        result['consume'], _rate(n, result['consume'])), file=out)
    print('  elapsed:   {0:.3f} s including connect and close'.format(
        result['elapsed']), file=out)


def _answers(host: str, port: int) -> bool:
    """True if an AMQP broker answers at host:port, False if nothing
    listens there; raises RoundTripError if something else does."""
    try:
        if localbroker.probe(host, port, timeout=5.0):
            return True
    except OSError:
        return False
    raise RoundTripError('{0} accepts connections but does not answer the '
                         'AMQP 0-9-1 protocol header'.format(
                             _hostport(host, port)))


def run(url: str, count: int, no_local_broker: bool = False) -> int:
    """Run the round trip against ``url`` and print the report; return the
    exit status (0 OK, 1 failed, 2 bad URL, 130 interrupted).

    When nothing answers at ``url`` a throwaway local RabbitMQ is started
    for the run, unless ``no_local_broker``.
    """
    try:
        params = parse_url(url)
    except ValueError as exc:
        print('FAILED: {0}'.format(exc), file=sys.stderr)
        return 2

    broker: Optional[localbroker.LocalBroker] = None
    where = redact(url)
    try:
        if not _answers(params['host'], params['port']):
            if no_local_broker:
                raise RoundTripError('nothing answers at {0}'.format(where))
            print('Nothing answers at {0}; starting a throwaway RabbitMQ on '
                  '127.0.0.1 ...'.format(where), flush=True)
            t = time.monotonic()
            broker = localbroker.LocalBroker().start()
            print('RabbitMQ node {0} ready on port {1} in {2:.1f} s'.format(
                broker.node, broker.port, time.monotonic() - t), flush=True)
            params = parse_url(broker.url)
            where = redact(broker.url) + ' (throwaway local node)'
        result = round_trip(params, count)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except (RoundTripError, localbroker.BrokerError) as exc:
        print('FAILED: {0}'.format(exc), file=sys.stderr)
        return 1
    except amqp.AMQPError as exc:
        print('FAILED: the broker at {0} said {1}: {2}'.format(
            where, type(exc).__name__, exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print('FAILED: network error talking to {0}: {1}'.format(
            where, exc or type(exc).__name__), file=sys.stderr)
        return 1
    finally:
        if broker is not None:
            broker.stop()
    report(result, where)
    print('OK')
    return 0
