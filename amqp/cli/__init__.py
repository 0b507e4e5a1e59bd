"""The ``amqp`` command line (also ``python -m amqp``).

Without a subcommand it runs the publish/consume round trip of
:mod:`amqp.cli.roundtrip` (and starts a throwaway local RabbitMQ when
nothing answers at the URL).  The subcommands poke at a broker from the
shell: ``ping``, ``publish``, ``consume``, ``get``, ``declare-queue``,
``declare-exchange``, ``bind``, ``unbind``, ``purge``, ``delete`` and
``shell``.  They are implemented in :mod:`amqp.cli.commands`; this module
builds the argument parser and turns errors into exit codes and one-line
messages (:data:`EXIT_CODES`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import textwrap
from typing import Any, Optional, Sequence, Tuple, Union

import amqp

from . import commands
from . import roundtrip as cli_roundtrip
from .commands import EXIT_CODES

__all__ = ('main', 'build_parser', 'EXIT_CODES')

DEFAULT_URL = cli_roundtrip.DEFAULT_URL


def _epilog() -> str:
    lines = ['exit status of the commands:']
    for code, meaning in EXIT_CODES:
        lines.extend(textwrap.wrap(
            meaning, 76, initial_indent='  {0:>3}  '.format(code),
            subsequent_indent=' ' * 7))
    lines.append('The round trip (no command) exits 0, or 1 on any failure '
                 '(2: bad usage, 130: Ctrl-C).')
    lines.append('Errors are one line on stderr, starting "amqp: "; '
                 'passwords are shown as ***.')
    return '\n'.join(lines)


def _key_value(text: str) -> Tuple[str, Any]:
    """``k=v`` (a string) or ``k:=JSON`` (any JSON value) -> (k, value)."""
    key, sep, value = text.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            'expected KEY=VALUE or KEY:=JSON, got {0!r}'.format(text))
    if key.endswith(':'):
        try:
            return key[:-1], json.loads(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                'the value of {0} is not valid JSON: {1}'.format(
                    key[:-1], exc)) from None
    return key, value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            'expected a whole number of at least 1, got {0!r}'.format(text))
    return value


def _non_negative_int(text: str, limit: Optional[int] = None) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (limit is not None and value > limit):
        raise argparse.ArgumentTypeError(
            'expected a whole number from 0 to {0}, got {1!r}'.format(
                limit if limit is not None else 'any', text))
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(
            'expected a number of seconds above 0, got {0!r}'.format(text))
    return value


def _priority(text: str) -> int:
    return _non_negative_int(text, 255)


def _prefetch(text: str) -> int:
    return _non_negative_int(text, 65535)


def _delivery_mode(text: str) -> int:
    modes = {'1': 1, '2': 2, 'transient': 1, 'persistent': 2}
    try:
        return modes[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            'expected 1, 2, transient or persistent, got {0!r}'.format(
                text)) from None


def _timestamp(text: str) -> Union[int, str]:
    if text == 'now':
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            'expected seconds since the epoch or "now", got {0!r}'.format(
                text)) from None


def _common_options(parser: argparse.ArgumentParser,
                    top_level: bool) -> None:
    """Connection options, accepted before and after the subcommand."""
    # On a subcommand they default to SUPPRESS, so that an option given
    # before the subcommand is not reset by the subcommand's default.
    default: Optional[str] = None if top_level else argparse.SUPPRESS
    group = parser.add_argument_group('connection')
    group.add_argument(
        '--url', default=default, metavar='URL',
        help='broker URL amqp[s]://user:password@host:port/vhost[?options] '
             '(default: $AMQP_URL or {0})'.format(DEFAULT_URL))
    group.add_argument(
        '--connect-timeout', type=_seconds, default=default,
        metavar='SECONDS',
        help='bound on TCP connect plus AMQP handshake (default: 10)')
    group.add_argument(
        '--cacert', default=default, metavar='FILE',
        help='TLS: CA certificates (PEM) to verify the broker with, '
             'instead of the system store (amqps:// URLs)')
    group.add_argument(
        '--cert', default=default, metavar='FILE',
        help='TLS: client certificate (PEM)')
    group.add_argument(
        '--key', default=default, metavar='FILE',
        help='TLS: private key of --cert, if not in the same file')
    group.add_argument(
        '--insecure', action='store_true', default=default,
        help='TLS: do not verify the broker certificate (testing only)')
    group.add_argument(
        '--trace', action='store_true', default=default,
        help='log every frame sent and received (the amqp.wire logger) '
             'to stderr')


def _json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument('--json', action='store_true',
                        help='print {0} as JSON lines'.format(what))


def _properties_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('message properties')
    group.add_argument('--content-type', metavar='TYPE',
                       help='e.g. text/plain or application/json')
    group.add_argument('--content-encoding', metavar='ENCODING')
    group.add_argument('--delivery-mode', type=_delivery_mode,
                       metavar='MODE',
                       help='1 or transient, 2 or persistent')
    group.add_argument('--persistent', dest='delivery_mode',
                       action='store_const', const=2,
                       help='same as --delivery-mode 2')
    group.add_argument('--priority', type=_priority, metavar='0-255')
    group.add_argument('--correlation-id', metavar='ID')
    group.add_argument('--reply-to', metavar='QUEUE')
    group.add_argument('--expiration', metavar='MILLISECONDS',
                       help='per-message TTL, e.g. 60000')
    group.add_argument('--message-id', metavar='ID')
    group.add_argument('--timestamp', type=_timestamp, metavar='SECONDS',
                       help='seconds since the epoch, or "now"')
    group.add_argument('--type', dest='message_type', metavar='TYPE')
    group.add_argument('--user-id', metavar='USER',
                       help='RabbitMQ checks it is the user logged in')
    group.add_argument('--app-id', metavar='APP')
    group.add_argument('--header', '-H', action='append', type=_key_value,
                       default=[], metavar='KEY=VALUE',
                       help='application header; KEY=VALUE sets a string, '
                            'KEY:=JSON a number, boolean, list or table '
                            '(repeatable)')


def _arguments_option(parser: argparse.ArgumentParser,
                      what: str) -> None:
    parser.add_argument('--arg', action='append', type=_key_value,
                        default=[], metavar='KEY=VALUE', dest='arguments',
                        help='{0} argument; KEY=VALUE sets a string, '
                             'KEY:=JSON a number, boolean, list or table, '
                             'e.g. x-max-length:=1000 '
                             '(repeatable)'.format(what))


def _ack_option(parser: argparse.ArgumentParser,
                default_help: str) -> None:
    parser.add_argument(
        '--ack', action=argparse.BooleanOptionalAction, default=True,
        help='acknowledge each message after printing it (default); with '
             '--no-ack the broker forgets it as soon as it is sent '
             + default_help)


def _output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--json', action='store_true',
                       help='one JSON object per message: body, '
                            'body_encoding, properties, delivery_info')
    group.add_argument('--body-only', action='store_true',
                       help='print only the bodies, one per line')


def version_line() -> str:
    """``amqp X.Y.Z (compiled speedups: on|off), Python X.Y.Z``."""
    return 'amqp %s (compiled speedups: %s), %s %s' % (
        amqp.__version__, 'on' if amqp.SPEEDUPS else 'off',
        platform.python_implementation(), platform.python_version())


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser of the ``amqp`` command."""
    parser = argparse.ArgumentParser(
        prog=prog or 'amqp',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Talk to an AMQP 0-9-1 broker (RabbitMQ) from the shell.'
                    '\n\nWithout a command: publish and consume messages '
                    'through the broker and check\nthat they arrive intact '
                    '(if nothing answers at the URL, a throwaway RabbitMQ\n'
                    'is started on 127.0.0.1 for the run).',
        epilog=_epilog())
    parser.add_argument('--version', action='version',
                        version=version_line())
    _common_options(parser, top_level=True)
    roundtrip = parser.add_argument_group('round trip (no command)')
    roundtrip.add_argument(
        '--count', dest='roundtrip_count', type=int, default=None,
        metavar='N', help='messages to send (default: 1000)')
    roundtrip.add_argument(
        '--no-local-broker', action='store_true',
        help='fail instead of starting a local RabbitMQ when nothing '
             'answers at the URL')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND',
                                title='commands')

    def add(name: str, help: str, **kwargs: Any
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help, description=help[:1].upper() + help[1:] + '.',
            epilog=_epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        _common_options(p, top_level=False)
        p.set_defaults(handler=getattr(commands, 'cmd_' + name.replace(
            '-', '_')))
        return p

    p = add('ping', 'connect and show the server, the negotiated limits '
                    'and the round-trip time')
    p.add_argument('--count', type=_positive_int, default=5, metavar='N',
                   help='round trips to time (default: %(default)s)')
    p.add_argument('--heartbeat', type=_non_negative_int, default=None,
                   metavar='SECONDS',
                   help='heartbeat to ask for (default: as in the URL, '
                        'else 0 = off)')
    _json_option(p, 'the result')

    p = add('publish', 'publish messages')
    p.add_argument('body', nargs='?',
                   help='message body (UTF-8); without it, --file or '
                        'standard input')
    p.add_argument('--file', '-f', metavar='PATH',
                   help='read the body from PATH ("-" for stdin)')
    p.add_argument('--exchange', '-e', default='', metavar='NAME',
                   help='exchange (default: the default exchange "")')
    p.add_argument('--routing-key', '-r', default='', metavar='KEY',
                   help='routing key (for the default exchange: the '
                        'queue name)')
    p.add_argument('--count', '-n', type=_positive_int, default=1,
                   metavar='N', help='publish the body N times (a progress '
                                     'line on a terminal, then the rate)')
    p.add_argument('--confirm', action='store_true',
                   help='use publisher confirms: wait until the broker has '
                        'taken every message')
    p.add_argument('--mandatory', action='store_true',
                   help='report messages no queue receives (implies '
                        '--confirm)')
    p.add_argument('--confirm-timeout', type=_seconds, default=30.0,
                   metavar='SECONDS',
                   help='how long to wait for confirms (default: '
                        '%(default)s)')
    _properties_options(p)

    p = add('consume', 'consume from a queue and print the messages')
    p.add_argument('queue', help='queue to consume from')
    p.add_argument('--count', '-n', type=_positive_int, default=None,
                   metavar='N', help='stop after N messages (default: run '
                                     'until Ctrl-C)')
    p.add_argument('--timeout', type=_seconds, default=None,
                   metavar='SECONDS',
                   help='stop when no message arrives for SECONDS')
    p.add_argument('--prefetch', type=_prefetch, default=100, metavar='N',
                   help='unacknowledged messages the broker may send ahead '
                        '(default: %(default)s, at most --count; 0: no '
                        'limit)')
    _ack_option(p, '(faster, but a message is lost if printing it fails)')
    p.add_argument('--no-recover', action='store_true',
                   help='stop at the first lost connection (by default '
                        'the connection is recovered: reconnected, the '
                        'consumer registered again, across a broker '
                        'restart)')
    _output_options(p)

    p = add('get', 'fetch messages from a queue one at a time (basic.get)')
    p.add_argument('queue', help='queue to get from')
    p.add_argument('--count', '-n', type=_positive_int, default=1,
                   metavar='N', help='get up to N messages (default: 1)')
    _ack_option(p, '')
    p.add_argument('--requeue', action='store_true',
                   help='put the messages back on the queue afterwards '
                        '(they come back marked redelivered)')
    _output_options(p)

    p = add('declare-queue', 'declare a queue (create it if it does not '
                             'exist)')
    p.add_argument('queue', nargs='?', default='',
                   help='queue name (default: a name chosen by the broker)')
    p.add_argument('--type', dest='queue_type',
                   help='x-queue-type: classic, quorum or stream (quorum '
                        'and stream queues are always durable)')
    p.add_argument('--durable', action='store_true',
                   help='survive a broker restart')
    p.add_argument('--auto-delete', action='store_true',
                   help='delete the queue when its last consumer goes')
    p.add_argument('--passive', action='store_true',
                   help='only check that the queue exists')
    _arguments_option(p, 'queue')
    _json_option(p, 'the result')

    p = add('declare-exchange', 'declare an exchange')
    p.add_argument('exchange', help='exchange name')
    p.add_argument('--type', dest='exchange_type', default='direct',
                   help='direct (default), fanout, topic, headers or a '
                        'plugin type such as x-delayed-message')
    p.add_argument('--durable', action='store_true',
                   help='survive a broker restart')
    p.add_argument('--auto-delete', action='store_true',
                   help='delete the exchange when its last binding goes')
    p.add_argument('--passive', action='store_true',
                   help='only check that the exchange exists')
    _arguments_option(p, 'exchange')

    for name, verb in (('bind', 'bind'), ('unbind', 'remove the binding '
                                                    'of')):
        p = add(name, '{0} a queue (or with --to-exchange an exchange) to '
                      'an exchange'.format(verb))
        p.add_argument('source', metavar='EXCHANGE',
                       help='the exchange messages come from')
        p.add_argument('destination', metavar='DESTINATION',
                       help='the queue (or exchange) they go to')
        p.add_argument('--routing-key', '-r', default='', metavar='KEY',
                       help='binding key (default: "")')
        p.add_argument('--to-exchange', action='store_true',
                       help='DESTINATION is an exchange')
        _arguments_option(p, 'binding')

    p = add('purge', 'remove every ready message from a queue')
    p.add_argument('queue')

    p = add('delete', 'delete a queue or an exchange')
    p.add_argument('kind', choices=('queue', 'exchange'))
    p.add_argument('name')
    p.add_argument('--if-unused', action='store_true',
                   help='only if it has no consumers (queue) or bindings '
                        '(exchange)')
    p.add_argument('--if-empty', action='store_true',
                   help='queue: only if it holds no messages')

    p = add('shell', 'an interactive Python prompt with "connection" and '
                     '"channel" open, and the wire trace on')
    p.add_argument('--no-trace', action='store_true',
                   help='do not log frames')
    p.add_argument('--heartbeat', type=_non_negative_int, default=None,
                   metavar='SECONDS',
                   help='heartbeat to ask for (default: as in the URL, '
                        'else 0 = off)')
    return parser


def _finish_common(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> None:
    """Fill in the connection options nobody gave."""
    args.url = args.url or os.environ.get('AMQP_URL') or DEFAULT_URL
    for name in ('connect_timeout', 'cacert', 'cert', 'key'):
        if getattr(args, name, None) is argparse.SUPPRESS or \
                not hasattr(args, name):
            setattr(args, name, None)
    for name in ('insecure', 'trace'):
        setattr(args, name, bool(getattr(args, name, False)))


def main(argv: Optional[Sequence[str]] = None,
         prog: Optional[str] = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    _finish_common(parser, args)
    if args.command is None:
        if args.roundtrip_count is None:
            args.roundtrip_count = 1000
        if args.roundtrip_count < 1:
            parser.error('--count must be at least 1')
        try:
            cli_roundtrip.parse_url(args.url)
        except ValueError as exc:
            parser.error(str(exc))
        return cli_roundtrip.run(args.url, args.roundtrip_count,
                                 args.no_local_broker)
    if args.roundtrip_count is not None or args.no_local_broker:
        parser.error('--count before the command and --no-local-broker '
                     'are for the round trip only; put options after the '
                     'command')
    if args.command == 'get' and args.requeue and not args.ack:
        parser.error('get: --requeue needs --ack (with --no-ack the broker '
                     'has already forgotten the messages)')
    return commands.run(args)


def console_script() -> None:
    """Entry point of the ``amqp`` console script."""
    sys.exit(main())


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
