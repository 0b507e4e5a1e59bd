"""The subcommands of the ``amqp`` command line (see :mod:`amqp.cli`).

Each ``cmd_NAME(args, session)`` gets the parsed arguments and a
:class:`Session` that connects on demand, and returns an exit status or
raises :class:`CLIError`.  :func:`run` turns every error into one line on
stderr and an exit status from :data:`EXIT_CODES`; passwords never appear
in what is printed (URLs are shown with ``***``).
"""
from __future__ import annotations

import argparse
import base64
import code
import json
import logging
import signal
import socket
import ssl
import sys
from datetime import datetime
from decimal import Decimal
from time import monotonic, time
from types import FrameType
from typing import (TYPE_CHECKING, Any, Callable, Dict, List, Optional,
                    TextIO, Tuple, Union)
from urllib.parse import parse_qsl, urlsplit

import amqp
from .. import exceptions
from .roundtrip import redact

if TYPE_CHECKING:
    #: what ``signal.signal`` takes and returns
    _SignalHandler = Union[Callable[[int, Optional[FrameType]], Any], int,
                           signal.Handlers, None]

__all__ = ('run', 'Session', 'CLIError', 'EXIT_CODES', 'enable_trace')

logger = logging.getLogger('amqp')

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_LOGIN = 4
EXIT_VHOST = 5
EXIT_NOT_FOUND = 6
EXIT_NOT_AMQP = 7
EXIT_REFUSED = 8
EXIT_UNCONFIRMED = 9
EXIT_EMPTY = 10
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

#: (status, meaning) of every exit status, for --help and the docs.
EXIT_CODES = (
    (EXIT_OK, 'success'),
    (EXIT_FAILURE, 'other failure, e.g. the connection was lost'),
    (EXIT_USAGE, 'bad usage: unknown option, bad URL or value'),
    (EXIT_UNREACHABLE, 'broker unreachable: connection refused, unknown '
                       'host, timeout'),
    (EXIT_LOGIN, 'login refused: wrong user name or password '
                 '(ACCESS_REFUSED)'),
    (EXIT_VHOST, 'virtual host missing or not allowed for the user '
                 '(NOT_ALLOWED)'),
    (EXIT_NOT_FOUND, 'queue or exchange not found (NOT_FOUND)'),
    (EXIT_NOT_AMQP, 'the peer is not an AMQP 0-9-1 server'),
    (EXIT_REFUSED, 'the broker refused the operation (e.g. '
                   'PRECONDITION_FAILED, ACCESS_REFUSED)'),
    (EXIT_UNCONFIRMED, 'publish: messages nacked, returned unroutable or '
                       'not confirmed in time'),
    (EXIT_EMPTY, 'get: the queue was empty; consume: --timeout ran out '
                 'before --count messages'),
    (EXIT_INTERRUPTED, 'interrupted (Ctrl-C) before the command finished'),
    (EXIT_BROKEN_PIPE, 'standard output was closed (e.g. piped into head)'),
)

#: Errors that mean the peer does not follow the protocol.
_PROTOCOL_ERRORS = (exceptions.FrameError, exceptions.FrameSyntaxError,
                    exceptions.UnexpectedFrame,
                    exceptions.AMQPNotImplementedError,
                    exceptions.InvalidCommand)

_CONNECT_TIMEOUT = 10.0
_BODY_PREVIEW = 2000
_CONFIRM_EVERY = 1000    # publishes between two waits for confirms


class CLIError(Exception):
    """An error to report in one line, with the exit status to use."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _one_line(text: object) -> str:
    return ' '.join(str(text).split())


def _q(name: object) -> str:
    """A queue, exchange or key name as the user would type it."""
    return repr(name) if name else "''"


def _exchange(name: object) -> str:
    return 'exchange {0}'.format(_q(name)) if name else 'the default exchange'


def _reply_text(exc: exceptions.AMQPError) -> str:
    """What the broker said, e.g. "NOT_FOUND - no queue 'x' in vhost '/'"."""
    return _one_line(exc.reply_text or type(exc).__name__)


def enable_trace(stream: Optional[TextIO] = None
                 ) -> logging.StreamHandler[TextIO]:
    """Log every frame at DEBUG through the ``amqp.wire`` logger to
    ``stream`` (stderr)."""
    wire = logging.getLogger('amqp.wire')
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter('%(message)s'))
    wire.addHandler(handler)
    wire.setLevel(logging.DEBUG)
    return handler


def _warnings_to_stderr() -> logging.StreamHandler[TextIO]:
    """The library's warnings as ``amqp: warning: ...`` lines (not
    logging's bare fallback output)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter('amqp: warning: %(message)s'))
    logger.addHandler(handler)
    return handler


class Session:
    """The connection of one command, opened on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.conn: Optional[amqp.Connection] = None
        self.where: Optional[str] = None          # host:port
        self.connect_seconds: Optional[float] = None

    def _connection_kwargs(self, **extra: object) -> Dict[str, Any]:
        args = self.args
        parts = urlsplit(args.url)
        query = dict(parse_qsl(parts.query))
        kwargs: Dict[str, Any] = {}
        if args.connect_timeout is not None:
            kwargs['connect_timeout'] = args.connect_timeout
        elif 'connect_timeout' not in query:
            kwargs['connect_timeout'] = _CONNECT_TIMEOUT
        tls: Dict[str, object] = {}
        if args.cacert:
            tls['ca_certs'] = args.cacert
        if args.cert:
            tls['certfile'] = args.cert
        if args.key:
            tls['keyfile'] = args.key
        if args.insecure:
            tls['cert_reqs'] = ssl.CERT_NONE
        if tls:
            if parts.scheme != 'amqps':
                raise CLIError(EXIT_USAGE, '--cacert, --cert, --key and '
                               '--insecure need an amqps:// URL')
            kwargs['ssl'] = tls
        kwargs.update((k, v) for k, v in extra.items() if v is not None)
        return kwargs

    def connect(self, **extra: object) -> amqp.Connection:
        """Open the connection; raise CLIError saying what went wrong."""
        url = self.args.url
        try:
            conn = amqp.Connection.from_url(
                url, **self._connection_kwargs(**extra))
        except (ValueError, TypeError) as exc:
            raise CLIError(EXIT_USAGE, 'bad URL {0}: {1}'.format(
                redact(url), _one_line(exc))) from None
        self.where = where = conn.host
        started = monotonic()
        try:
            conn.connect()
        except exceptions.AccessRefused as exc:
            raise CLIError(EXIT_LOGIN, (
                'login refused by {0} for user {1!r}: check the user name '
                'and password ({2})').format(
                    where, conn.userid, _reply_text(exc))) from None
        except exceptions.NotAllowed as exc:
            raise CLIError(EXIT_VHOST, (
                'virtual host {0!r} on {1} does not exist or user {2!r} '
                'may not use it ({3})').format(
                    conn.virtual_host, where, conn.userid,
                    _reply_text(exc))) from None
        except _PROTOCOL_ERRORS as exc:
            raise CLIError(EXIT_NOT_AMQP, 'no AMQP 0-9-1 server at {0}: '
                           '{1}'.format(where, _one_line(exc))) from None
        except exceptions.RecoverableConnectionError as exc:
            if exc.reply_code:   # e.g. 320 CONNECTION_FORCED: shutting down
                raise CLIError(EXIT_REFUSED, '{0} closed the connection: '
                               '{1}'.format(where, _reply_text(exc))) \
                    from None
            # the transport's ConnectionLost (also an OSError): no reply
            raise CLIError(EXIT_NOT_AMQP, (
                '{0} closed the connection during the AMQP handshake ({1}); '
                'is it an AMQP 0-9-1 server, and does the URL scheme (amqp '
                'or amqps) match the port?').format(
                    where, _one_line(exc))) from None
        except exceptions.AMQPError as exc:
            raise CLIError(EXIT_REFUSED, '{0} refused the connection: '
                           '{1}'.format(where, _one_line(exc))) from None
        except ssl.SSLCertVerificationError as exc:
            raise CLIError(EXIT_UNREACHABLE, (
                'TLS with {0}: the broker certificate was not accepted '
                '({1}); give its CA with --cacert').format(
                    where, _one_line(exc.verify_message or exc))) from None
        except ssl.SSLError as exc:
            raise CLIError(EXIT_UNREACHABLE, 'TLS handshake with {0} '
                           'failed: {1}'.format(where, _one_line(
                               exc.reason or exc))) from None
        except socket.timeout as exc:
            raise CLIError(EXIT_UNREACHABLE, 'cannot connect to {0}: '
                           '{1}'.format(where, _one_line(
                               exc or 'timed out'))) from None
        except OSError as exc:
            raise CLIError(EXIT_UNREACHABLE, 'cannot connect to {0}: '
                           '{1}'.format(where, _one_line(
                               exc.strerror or exc or type(exc).__name__))
                           ) from None
        self.connect_seconds = monotonic() - started
        self.conn = conn
        return conn

    def channel(self, **extra: object) -> amqp.Channel:
        """Connect if needed and open a channel that leaves bodies as
        bytes."""
        conn = self.conn or self.connect(**extra)
        ch = conn.channel()
        ch.auto_decode = False
        return ch

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except (OSError, exceptions.AMQPError) as exc:
                logger.debug('closing %s: %r', self.where, exc)


def run(args: argparse.Namespace) -> int:
    """Run ``args.handler``; return the exit status."""
    warnings = _warnings_to_stderr()
    trace = enable_trace() if args.trace else None
    session = Session(args)
    handler: Callable[[argparse.Namespace, Session], Optional[int]] = \
        args.handler
    try:
        try:
            return handler(args, session) or EXIT_OK
        finally:
            session.close()
    except CLIError as exc:
        return _fail(exc.status, str(exc))
    except exceptions.NotFound as exc:
        return _fail(EXIT_NOT_FOUND, _broker_said(exc))
    except exceptions.PublishConfirmError as exc:
        return _fail(EXIT_UNCONFIRMED, _one_line(exc))
    except exceptions.AMQPError as exc:
        return _fail(EXIT_REFUSED, _broker_said(exc))
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, 'interrupted')
    except OSError as exc:
        return _fail(EXIT_FAILURE, 'connection to {0} failed: {1}'.format(
            session.where, _one_line(exc or type(exc).__name__)))
    finally:
        logger.removeHandler(warnings)
        if trace is not None:
            logging.getLogger('amqp.wire').removeHandler(trace)


def _broker_said(exc: exceptions.AMQPError) -> str:
    text = _reply_text(exc)
    if exc.method_name:
        return '{0} ({1})'.format(text, exc.method_name)
    return text


def _fail(status: int, message: str) -> int:
    print('amqp: ' + _one_line(message), file=sys.stderr)
    return status


def _silence_stdout() -> None:
    """After EPIPE: send what is left to /dev/null so that the flush at
    exit does not raise again."""
    import os
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# -- ping ---------------------------------------------------------------
def cmd_ping(args: argparse.Namespace, session: Session) -> int:
    """Connect, time a few round trips, print what was negotiated."""
    conn = session.connect(heartbeat=args.heartbeat)
    ch = conn.channel()
    rtts: List[float] = []
    for _ in range(args.count):
        t = monotonic()
        ch.basic_qos(0, 0, False)   # a round trip that changes nothing
        rtts.append(monotonic() - t)
    props = conn.server_properties
    caps = conn.server_capabilities
    # both set by connect()
    assert session.where is not None and session.connect_seconds is not None
    result: Dict[str, Any] = {
        'url': redact(args.url),
        'server': '{0}:{1}'.format(*_host_port(session.where)),
        'product': _text(props.get('product')),
        'version': _text(props.get('version')),
        'platform': _text(props.get('platform')),
        'cluster_name': _text(props.get('cluster_name')),
        'protocol': 'AMQP 0-9-1',
        'channel_max': conn.channel_max,
        'frame_max': conn.frame_max,
        'heartbeat': conn.heartbeat,
        'server_heartbeat': conn.server_heartbeat,
        'capabilities': sorted(k for k, v in caps.items() if v),
        'connect_ms': round(session.connect_seconds * 1000, 3),
        'rtt_ms_min': round(min(rtts) * 1000, 3),
        'rtt_ms_avg': round(sum(rtts) / len(rtts) * 1000, 3),
        'round_trips': len(rtts),
    }
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    heartbeat = '{0} s'.format(result['heartbeat']) if result['heartbeat'] \
        else 'off'
    print('{0} is up'.format(result['url']))
    print('server:       {0} {1} on {2}{3}'.format(
        result['product'], result['version'], result['platform'],
        ', cluster ' + result['cluster_name'] if result['cluster_name']
        else ''))
    print('protocol:     {0}'.format(result['protocol']))
    print('channel_max:  {0}'.format(result['channel_max']))
    print('frame_max:    {0} bytes'.format(result['frame_max']))
    print('heartbeat:    {0} (server proposed {1} s)'.format(
        heartbeat, result['server_heartbeat']))
    print('capabilities: {0}'.format(', '.join(result['capabilities'])
                                     or 'none'))
    print('connect:      {0:.1f} ms (TCP and AMQP handshake)'.format(
        result['connect_ms']))
    print('round trip:   {0:.2f} ms min, {1:.2f} ms avg over {2} '
          '(basic.qos)'.format(result['rtt_ms_min'], result['rtt_ms_avg'],
                               result['round_trips']))
    return EXIT_OK


def _host_port(where: str) -> Tuple[str, str]:
    host, _, port = where.rpartition(':')
    return host, port


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return '' if value is None else str(value)


# -- publish ------------------------------------------------------------
def _read_body(args: argparse.Namespace) -> bytes:
    body: Optional[str] = args.body
    if body is not None and args.file is not None:
        raise CLIError(EXIT_USAGE, 'publish: give the body as an argument '
                       'or with --file, not both')
    if body is not None:
        return body.encode('utf-8', 'surrogateescape')
    if args.file is None and sys.stdin.isatty():
        raise CLIError(EXIT_USAGE, 'publish: no body: give it as an '
                       'argument, with --file PATH, or on standard input')
    if args.file in (None, '-'):
        return sys.stdin.buffer.read()
    try:
        with open(args.file, 'rb') as f:
            return f.read()
    except OSError as exc:
        raise CLIError(EXIT_USAGE, 'publish: cannot read {0}: {1}'.format(
            args.file, exc.strerror or exc)) from None


_PROPERTY_OPTIONS = (
    'content_type', 'content_encoding', 'delivery_mode', 'priority',
    'correlation_id', 'reply_to', 'expiration', 'message_id', 'user_id',
    'app_id',
)


def _properties(args: argparse.Namespace) -> Dict[str, Any]:
    props = {name: getattr(args, name) for name in _PROPERTY_OPTIONS
             if getattr(args, name) is not None}
    if args.message_type is not None:
        props['type'] = args.message_type
    if args.timestamp is not None:
        props['timestamp'] = int(time()) if args.timestamp == 'now' \
            else args.timestamp
    if args.header:
        props['application_headers'] = dict(args.header)
    return props


class _Progress:
    """``published 1,234 of 10,000`` rewritten in place on a terminal."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.next_update = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = monotonic()
        if now < self.next_update and not force:
            return
        self.next_update = now + 0.1
        self.stream.write('\rpublished {0:,} of {1:,} ({2:.0%})'.format(
            done, self.total, done / self.total))
        self.stream.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        self.stream.write('\n')
        self.stream.flush()


def cmd_publish(args: argparse.Namespace, session: Session) -> int:
    """Publish the body ``--count`` times; report the rate."""
    body = _read_body(args)
    message = amqp.Message(body, **_properties(args))
    confirm = args.confirm or args.mandatory
    ch = session.channel()
    if confirm:
        ch.confirm_select()
    count: int = args.count
    progress = _Progress(count, sys.stderr) \
        if count > 1 and sys.stderr.isatty() else None
    failed = {'nacked': 0, 'returned': 0, 'unconfirmed': 0}

    def settle() -> None:
        try:
            ch.wait_for_confirms(args.confirm_timeout)
        except exceptions.PublishConfirmError as exc:
            failed['nacked'] += len(exc.nacked)
            failed['returned'] += len(exc.returned)
            failed['unconfirmed'] += len(exc.unconfirmed)

    publish: Callable[..., object] = ch.basic_publish
    exchange, key, mandatory = args.exchange, args.routing_key, \
        args.mandatory
    started = monotonic()
    for i in range(1, count + 1):
        publish(message, exchange, key, mandatory)
        if confirm and i % _CONFIRM_EVERY == 0:
            settle()
        if progress is not None:
            progress.update(i)
    if confirm:
        settle()
    else:
        # An error caused by a publish (404 for a missing exchange) comes
        # back as an asynchronous channel.close; one round trip on the
        # channel makes sure it is reported rather than lost at close.
        ch.basic_qos(0, 0, False)
    elapsed = monotonic() - started
    if progress is not None:
        progress.finish(count)
    size = len(body)
    what = '1 message ({0:,} bytes)'.format(size) if count == 1 else \
        '{0:,} messages of {1:,} bytes'.format(count, size)
    line = 'published {0} to {1} with routing key {2}'.format(
        what, _exchange(exchange), _q(key))
    if count > 1:
        line += ' in {0:.3f} s: {1}'.format(elapsed, _rate(count, elapsed))
    bad = sum(failed.values())
    if confirm and not bad:
        line += '; all confirmed'
    print(line)
    if bad:
        details = []
        if failed['returned']:
            details.append('{0} returned unroutable (no queue is bound to {1} '
                           'for routing key {2})'.format(
                               failed['returned'], _exchange(exchange),
                               _q(key)))
        if failed['nacked']:
            details.append('{0} nacked by the broker'.format(
                failed['nacked']))
        if failed['unconfirmed']:
            details.append('{0} not confirmed within {1:g} s'.format(
                failed['unconfirmed'], args.confirm_timeout))
        raise CLIError(EXIT_UNCONFIRMED, '{0} of {1} messages not accepted: '
                       '{2}'.format(bad, count, '; '.join(details)))
    return EXIT_OK


def _rate(n: int, seconds: float) -> str:
    return '{0:,.0f} msgs/s'.format(n / seconds) if seconds > 0 else \
        'too fast to time'


# -- printing messages --------------------------------------------------
def _json_value(value: object) -> Union[str, Dict[str, str]]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        try:
            return value.decode('utf-8')
        except UnicodeDecodeError:
            return {'base64': base64.b64encode(value).decode('ascii')}
    if isinstance(value, datetime):
        return value.isoformat() + 'Z'   # decoded timestamps are UTC
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError('cannot show %s as JSON' % type(value).__name__)


def _body_bytes(body: Union[None, str, bytes, bytearray, memoryview]
                ) -> bytes:
    if body is None:
        return b''
    if isinstance(body, str):
        return body.encode('utf-8', 'surrogateescape')
    return bytes(body)


class MessagePrinter:
    """Prints received messages: readable, ``--json`` or ``--body-only``."""

    def __init__(self, args: argparse.Namespace,
                 stream: Optional[TextIO] = None) -> None:
        self.json: bool = args.json
        self.body_only: bool = args.body_only
        self.stream = stream or sys.stdout

    def __call__(self, msg: amqp.Message, n: int) -> None:
        body = _body_bytes(msg.body)
        if self.json:
            self._write(json.dumps(self._as_dict(msg, body),
                                   default=_json_value) + '\n')
        elif self.body_only:
            self._write_body(body, msg)
        else:
            self._write(self._header(msg, n))
            self._write_body(body, msg)

    def _as_dict(self, msg: amqp.Message, body: bytes) -> Dict[str, object]:
        try:
            text, encoding = body.decode('utf-8'), 'utf-8'
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode('ascii'), 'base64'
        return {'body': text, 'body_encoding': encoding,
                'properties': msg.properties,
                'delivery_info': msg.delivery_info}

    def _header(self, msg: amqp.Message, n: int) -> str:
        info = msg.delivery_info or {}
        parts = ['--- message {0}: routing key {1} from {2}, delivery tag '
                 '{3}'.format(n, _q(info.get('routing_key')),
                              _exchange(info.get('exchange')),
                              info.get('delivery_tag'))]
        if info.get('redelivered'):
            parts.append(', redelivered')
        if info.get('message_count') is not None:
            parts.append(', {0} more in the queue'.format(
                info['message_count']))
        lines = [''.join(parts)]
        for name, value in msg.properties.items():
            if value is None:
                continue
            lines.append('{0}: {1}'.format(
                'headers' if name == 'application_headers' else name,
                _text(value) if isinstance(value, str) else repr(value)))
        return '\n'.join(lines) + '\n'

    def _write_body(self, body: bytes, msg: amqp.Message) -> None:
        encoding = str(msg.properties.get('content_encoding') or 'utf-8')
        try:
            text = body.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            text = repr(body)
        if not text.endswith('\n'):
            text += '\n'
        self._write(text)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# -- consume and get ----------------------------------------------------
class _StopSignals:
    """SIGINT/SIGTERM ask the consume loop to stop after the message in
    hand; a second one interrupts at once."""

    def __init__(self) -> None:
        self.stop = False
        self._previous: Dict[signal.Signals, _SignalHandler] = {}

    def __enter__(self) -> _StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not in the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def cmd_consume(args: argparse.Namespace, session: Session) -> int:
    """Consume from a queue until --count, --timeout or Ctrl-C, across
    lost connections unless --no-recover."""
    def lost(conn: amqp.Connection, exc: BaseException) -> None:
        print('connection to {0} lost ({1}); reconnecting'.format(
            conn.host, _one_line(exc)), file=sys.stderr, flush=True)

    def recovered(conn: amqp.Connection) -> None:
        print('reconnected to {0}; consuming again'.format(conn.host),
              file=sys.stderr, flush=True)

    if args.no_recover:
        ch = session.channel()
    else:
        ch = session.channel(recover=True, on_recovery_started=lost,
                             on_recovery_succeeded=recovered)
    count = args.count
    prefetch = args.prefetch
    if count is not None and (prefetch == 0 or prefetch > count):
        prefetch = count   # do not take messages we will not print
    if args.ack and prefetch:
        ch.basic_qos(0, prefetch, False)
    printer = MessagePrinter(args)
    state: Dict[str, Any] = {'received': 0, 'last': monotonic()}

    def on_message(msg: amqp.Message) -> None:
        if count is not None and state['received'] >= count:
            if args.ack:   # beyond --count: leave it to the next consumer
                ch.basic_reject(msg.delivery_tag, requeue=True)
            return
        state['received'] += 1
        state['last'] = monotonic()
        printer(msg, state['received'])
        if args.ack:
            # Each ack lets the broker send one more: near the end of
            # --count, acks wait until the consumer is cancelled, so that
            # no message is taken only to be handed back (redelivered).
            if count is not None and prefetch and \
                    state['received'] + prefetch > count:
                state['last_tag'] = msg.delivery_tag
            else:
                ch.basic_ack(msg.delivery_tag)

    timed_out = False
    conn = session.conn
    assert conn is not None  # session.channel() connected
    with _StopSignals() as signals:
        tag = ch.basic_consume(args.queue, callback=on_message,
                               no_ack=not args.ack)
        while not signals.stop and (count is None or
                                    state['received'] < count):
            wait = 0.25
            if args.timeout is not None:
                left = state['last'] + args.timeout - monotonic()
                if left <= 0:
                    timed_out = True
                    break
                wait = min(wait, left)
            try:
                conn.drain_events(timeout=wait)
            except socket.timeout:
                pass
        ch.basic_cancel(tag)
        if state.get('last_tag') is not None:
            ch.basic_ack(state['last_tag'], multiple=True)
    received = state['received']
    reason = 'interrupted' if signals.stop else \
        'no message for {0:g} s'.format(args.timeout) if timed_out else ''
    print('consumed {0} message{1} from queue {2}{3}'.format(
        received, '' if received == 1 else 's', _q(args.queue),
        ' ({0})'.format(reason) if reason else ''), file=sys.stderr)
    if timed_out and count is not None and received < count:
        return EXIT_EMPTY
    return EXIT_OK


def cmd_get(args: argparse.Namespace, session: Session) -> int:
    """Fetch up to --count messages with basic.get."""
    ch = session.channel()
    printer = MessagePrinter(args)
    last_tag = None
    n = 0
    for n in range(1, args.count + 1):
        msg = ch.basic_get(args.queue, no_ack=not args.ack)
        if msg is None:
            n -= 1
            break
        printer(msg, n)
        if args.requeue:
            last_tag = msg.delivery_tag
        elif args.ack:
            ch.basic_ack(msg.delivery_tag)
    if last_tag is not None:
        ch.basic_nack(last_tag, multiple=True, requeue=True)
    if n == 0:
        raise CLIError(EXIT_EMPTY, 'queue {0} is empty'.format(
            _q(args.queue)))
    if n < args.count:
        print('got {0} of {1} messages: queue {2} is empty now'.format(
            n, args.count, _q(args.queue)), file=sys.stderr)
    return EXIT_OK


# -- topology -----------------------------------------------------------
def cmd_declare_queue(args: argparse.Namespace, session: Session) -> int:
    arguments = dict(args.arguments)
    durable = args.durable
    if args.queue_type:
        arguments['x-queue-type'] = args.queue_type
        if args.queue_type in ('quorum', 'stream'):
            durable = True
    ch = session.channel()
    ok = ch.queue_declare(args.queue, passive=args.passive, durable=durable,
                          exclusive=False, auto_delete=args.auto_delete,
                          arguments=arguments or None)
    if args.json:
        print(json.dumps({'queue': ok.queue,
                          'message_count': ok.message_count,
                          'consumer_count': ok.consumer_count}))
        return EXIT_OK
    flags = [args.queue_type or 'classic',
             'durable' if durable else 'transient']
    if args.auto_delete:
        flags.append('auto-delete')
    print('queue {0} {1}: {2} messages, {3} consumers'.format(
        _q(ok.queue), 'exists' if args.passive else
        'declared ({0})'.format(', '.join(flags)),
        ok.message_count, ok.consumer_count))
    return EXIT_OK


def cmd_declare_exchange(args: argparse.Namespace,
                         session: Session) -> int:
    ch = session.channel()
    ch.exchange_declare(args.exchange, args.exchange_type,
                        passive=args.passive, durable=args.durable,
                        auto_delete=args.auto_delete,
                        arguments=dict(args.arguments) or None)
    if args.passive:
        print('exchange {0} exists'.format(_q(args.exchange)))
    else:
        flags = [args.exchange_type,
                 'durable' if args.durable else 'transient']
        if args.auto_delete:
            flags.append('auto-delete')
        print('exchange {0} declared ({1})'.format(
            _q(args.exchange), ', '.join(flags)))
    return EXIT_OK


def _binding(args: argparse.Namespace, session: Session,
             unbind: bool) -> int:
    ch = session.channel()
    arguments = dict(args.arguments) or None
    if args.to_exchange:
        exchange_method: Callable[..., object] = \
            ch.exchange_unbind if unbind else ch.exchange_bind
        exchange_method(args.destination, args.source, args.routing_key,
                        arguments=arguments)
        what = 'exchange'
    else:
        queue_method: Callable[..., object] = \
            ch.queue_unbind if unbind else ch.queue_bind
        queue_method(args.destination, args.source, args.routing_key,
                     arguments=arguments)
        what = 'queue'
    print('{0} {1} {2} {3} {4} with routing key {5}'.format(
        'unbound' if unbind else 'bound', what, _q(args.destination),
        'from' if unbind else 'to', _exchange(args.source),
        _q(args.routing_key)))
    return EXIT_OK


def cmd_bind(args: argparse.Namespace, session: Session) -> int:
    return _binding(args, session, unbind=False)


def cmd_unbind(args: argparse.Namespace, session: Session) -> int:
    return _binding(args, session, unbind=True)


def cmd_purge(args: argparse.Namespace, session: Session) -> int:
    ch = session.channel()
    n = ch.queue_purge(args.queue)
    print('purged {0} message{1} from queue {2}'.format(
        n, '' if n == 1 else 's', _q(args.queue)))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, session: Session) -> int:
    if args.kind == 'exchange' and args.if_empty:
        raise CLIError(EXIT_USAGE, 'delete: --if-empty applies to queues '
                       'only')
    ch = session.channel()
    # RabbitMQ answers delete-ok for a name that does not exist; a passive
    # declare first turns a typo into "not found".
    if args.kind == 'queue':
        ch.queue_declare(args.name, passive=True)
        n = ch.queue_delete(args.name, if_unused=args.if_unused,
                            if_empty=args.if_empty)
        print('deleted queue {0} ({1} message{2})'.format(
            _q(args.name), n, '' if n == 1 else 's'))
    else:
        ch.exchange_declare(args.name, 'direct', passive=True)
        ch.exchange_delete(args.name, if_unused=args.if_unused)
        print('deleted exchange {0}'.format(_q(args.name)))
    return EXIT_OK


# -- shell --------------------------------------------------------------
_SHELL_BANNER = '''\
amqp {version} shell, connected to {url}
  connection  {conn!r}
  channel     {channel!r}
  amqp, Message
Frames are logged to stderr (amqp.wire); logging.getLogger('amqp.wire')\
.setLevel('INFO') stops it.
Ctrl-D (Ctrl-Z Enter on Windows) leaves and closes the connection.'''


def cmd_shell(args: argparse.Namespace, session: Session) -> int:
    """An interactive interpreter with ``connection`` and ``channel``."""
    if not args.no_trace:
        enable_trace()
    conn = session.connect(heartbeat=args.heartbeat,
                           heartbeat_thread=True if args.heartbeat
                           else None)
    ch = conn.channel()
    namespace: Dict[str, object] = {'__name__': '__console__', 'amqp': amqp,
                 'Message': amqp.Message, 'connection': conn,
                 'channel': ch}
    try:
        import readline
        import rlcompleter
        readline.set_completer(rlcompleter.Completer(namespace).complete)
        readline.parse_and_bind('tab: complete')
    except ImportError:   # pragma: no cover - no readline on this Python
        pass
    banner = _SHELL_BANNER.format(version=amqp.__version__,
                                  url=redact(args.url), conn=conn,
                                  channel=ch)
    if args.no_trace:
        banner = '\n'.join(line for line in banner.splitlines()
                           if 'amqp.wire' not in line)
    code.interact(banner=banner, local=namespace, exitmsg='')
    return EXIT_OK
