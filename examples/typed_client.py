"""A small client written against amqp's type hints.

It connects, declares a queue, publishes with publisher confirms (both
``confirm_select`` + ``wait_for_confirms`` and ``Connection(
confirm_publish=True)``), fetches one message with ``basic_get``,
consumes and acks the rest, shows how the broker's errors arrive as
``amqp.exceptions`` classes, and closes.

``mypy --strict`` checks it against the installed package
(``tests/unit/test_typing.py``, ``tox -e typecheck``), and
``tests/integration/test_examples.py`` runs it against RabbitMQ::

    python examples/typed_client.py [amqp://guest:guest@localhost:5672//]

The URL defaults to ``$AMQP_URL``.  Exit status 0 when every step did
what it should, 1 otherwise.
"""
from __future__ import annotations

import os
import socket
import sys
import uuid
from time import monotonic
from typing import List, Optional, Sequence

import amqp
from amqp.exceptions import (AMQPError, NotFound, PublishConfirmError,
                             ReplyTimeout)

DEFAULT_URL = 'amqp://guest:guest@localhost:5672//'


def connect(url: str, confirm_publish: bool = False) -> amqp.Connection:
    """An open connection; every reply waited for at most 10 seconds."""
    conn = amqp.Connection.from_url(url, connect_timeout=10,
                                    reply_timeout=10,
                                    confirm_publish=confirm_publish)
    conn.connect()
    return conn


def declare_queue(channel: amqp.Channel) -> str:
    """A queue of our own, named by the broker, gone when we leave."""
    ok = channel.queue_declare('', exclusive=True, auto_delete=True)
    name: str = ok.queue
    return name


def publish_confirmed(channel: amqp.Channel, queue: str,
                      bodies: Sequence[bytes]) -> None:
    """Publish ``bodies`` and wait until the broker has taken them all.

    Raises PublishConfirmError naming the delivery tags that were nacked,
    returned or not confirmed within 10 seconds.
    """
    channel.confirm_select()
    for body in bodies:
        channel.basic_publish(
            amqp.Message(body, content_type='text/plain', delivery_mode=1,
                         application_headers={'example': 'typed_client'}),
            exchange='', routing_key=queue)
    channel.wait_for_confirms(timeout=10)


def publish_unroutable(channel: amqp.Channel) -> PublishConfirmError:
    """A mandatory publish that no queue receives: the broker returns it,
    and ``wait_for_confirms`` reports it."""
    channel.confirm_select()
    channel.basic_publish(amqp.Message(b'nobody listens'), exchange='',
                          routing_key='no-such-queue-' + uuid.uuid4().hex,
                          mandatory=True)
    try:
        channel.wait_for_confirms(timeout=10)
    except PublishConfirmError as exc:
        return exc
    raise AssertionError('an unroutable mandatory publish was confirmed')


def get_one(channel: amqp.Channel, queue: str) -> Optional[amqp.Message]:
    """One message by basic.get (None if the queue is empty), acked."""
    message: Optional[amqp.Message] = channel.basic_get(queue, no_ack=False)
    if message is not None:
        message.ack()
    return message


def consume(conn: amqp.Connection, channel: amqp.Channel, queue: str,
            count: int, timeout: float = 10.0) -> List[amqp.Message]:
    """Consume ``count`` messages, acking each; socket.timeout when they do
    not all arrive within ``timeout`` seconds."""
    received: List[amqp.Message] = []

    def on_message(message: amqp.Message) -> None:
        received.append(message)
        message.ack()

    tag = channel.basic_consume(queue, callback=on_message)
    deadline = monotonic() + timeout
    while len(received) < count:
        conn.drain_events(timeout=max(deadline - monotonic(), 0.0))
    channel.basic_cancel(tag)
    return received


def missing_queue(conn: amqp.Connection) -> NotFound:
    """A passive declare of a queue that does not exist: the broker closes
    the channel with 404, raised as NotFound; the connection stays
    open."""
    channel = conn.channel()
    try:
        channel.queue_declare('no-such-queue-' + uuid.uuid4().hex,
                              passive=True)
    except NotFound as exc:
        return exc
    raise AssertionError('a passive declare of a missing queue succeeded')


def run(url: str) -> None:
    """Every step in turn; raises on the first that goes wrong."""
    with connect(url) as conn:
        product = conn.server_properties.get('product')
        print('connected to {0!s} at {1}, heartbeat {2} s'.format(
            product, conn.host, conn.heartbeat))
        channel = conn.channel()
        queue = declare_queue(channel)
        print('declared queue {0}'.format(queue))

        bodies = [b'first', b'second', b'third']
        publish_confirmed(channel, queue, bodies)
        print('published {0} messages, all confirmed'.format(len(bodies)))

        # confirm_publish=True: every basic_publish waits for its confirm
        with connect(url, confirm_publish=True) as confirming:
            confirming.channel().basic_publish(
                amqp.Message(b'fourth'), exchange='', routing_key=queue)
        print('published 1 message with confirm_publish=True')

        first = get_one(channel, queue)
        if first is None or first.body != b'first':
            raise AssertionError('basic_get returned {0!r}'.format(first))
        print('basic_get: {0!r}'.format(first.body))

        rest = consume(conn, channel, queue, 3)
        got = [message.body for message in rest]
        if got != [b'second', b'third', b'fourth']:
            raise AssertionError('consumed {0!r}'.format(got))
        print('consumed and acked {0!r}'.format(got))

        exc = publish_unroutable(channel)
        print('unroutable publish: returned delivery tags {0}'.format(
            list(exc.returned)))

        not_found = missing_queue(conn)
        print('missing queue: {0} {1}: {2}'.format(
            type(not_found).__name__, not_found.reply_code,
            not_found.reply_text))
        channel.close()
    print('OK')


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else os.environ.get('AMQP_URL', DEFAULT_URL)
    try:
        run(url)
    except ReplyTimeout as exc:
        print('the broker did not answer in time: {0}'.format(exc),
              file=sys.stderr)
    except PublishConfirmError as exc:
        print('publishes not accepted: nacked {0}, returned {1}, '
              'unconfirmed {2}'.format(list(exc.nacked), list(exc.returned),
                                       list(exc.unconfirmed)),
              file=sys.stderr)
    except AMQPError as exc:
        print('the broker refused: {0} {1}'.format(exc.reply_code, exc),
              file=sys.stderr)
    except socket.timeout:
        print('messages did not arrive in time', file=sys.stderr)
    except OSError as exc:
        print('cannot talk to the broker: {0}'.format(exc), file=sys.stderr)
    except AssertionError as exc:
        print('unexpected: {0}'.format(exc), file=sys.stderr)
    else:
        return 0
    return 1


if __name__ == '__main__':
    sys.exit(main())
