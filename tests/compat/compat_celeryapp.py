"""The celery app the compat tests run in a worker subprocess.

A worker is started with ``celery -A celeryapp worker``; it reads its broker,
result backend and queue from the environment (``COMPAT_BROKER_URL``,
``COMPAT_RESULT_BACKEND``, ``COMPAT_QUEUE``; ``COMPAT_BROKER_SSL``, a JSON
dict, becomes ``broker_use_ssl`` for ``amqps://``).  The tests build client
apps with :func:`make_app` so that each can point at its own queue and
backend.

``COMPAT_TRACE_PENDING=1`` makes the worker print ``TRACE-PENDING <method>``
whenever a synchronous call returns with frames received behind its reply
still buffered in the client (decrypted with the reply over TLS), so a test
can check that the case an event loop could stall on really happened.
"""
import json
import os
import sys
import time

from celery import Celery


def make_app(broker_url, result_backend='rpc://', queue='celery', **conf):
    """A Celery app with the compat tasks registered under ``compat.*``."""
    app = Celery('compat', broker=broker_url, backend=result_backend,
                 set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        # chord_unlock polls; keep it quick so chord tests stay short.
        result_chord_retry_interval=0.2,
        worker_hijack_root_logger=False,
        # With celery 5.7's default (4) a solo worker stalls ~10 s every few
        # dozen tasks, on py-amqp 5.4.2 exactly as on this package; a wide
        # window keeps "hundreds of tasks" quick.  COMPAT_PREFETCH=4 shows it.
        worker_prefetch_multiplier=int(
            os.environ.get('COMPAT_PREFETCH', '64')),
        **conf,
    )

    @app.task(name='compat.where', shared=False)
    def where():
        import amqp
        return amqp.__file__

    @app.task(name='compat.add', shared=False)
    def add(x, y):
        return x + y

    @app.task(name='compat.xsum', shared=False)
    def xsum(numbers):
        return sum(numbers)

    @app.task(name='compat.fail', shared=False)
    def fail(text):
        raise ValueError(text)

    @app.task(name='compat.late', shared=False, acks_late=True)
    def late(x):
        return x * 2

    @app.task(name='compat.flaky', shared=False, bind=True, max_retries=5)
    def flaky(self, succeed_after):
        if self.request.retries < succeed_after:
            raise self.retry(countdown=0.05)
        return self.request.retries

    @app.task(name='compat.sleep', shared=False)
    def sleep(seconds, marker):
        time.sleep(seconds)
        with open(marker, 'w') as out:
            out.write('finished')
        return seconds

    return app


def _buffered(connection):
    """Frames (or bytes) received but not yet dispatched, on our amqp
    (``frames_pending``) and on py-amqp (its read buffer, and plaintext
    OpenSSL decrypted but has not returned yet)."""
    if hasattr(connection, 'frames_pending'):
        return connection.frames_pending()
    transport = connection.transport
    sock = getattr(transport, 'sock', None)
    return bool(getattr(transport, '_read_buffer', b'')) or bool(
        hasattr(sock, 'pending') and sock.pending())


def trace_pending_after_replies():
    """Print TRACE-PENDING after a reply wait that leaves frames buffered."""
    import amqp

    wait = amqp.Channel.wait

    def traced_wait(self, method, *args, **kwargs):
        result = wait(self, method, *args, **kwargs)
        connection = self.connection
        if connection is not None and _buffered(connection):
            # the real stderr: the worker's logging proxy splits prints
            sys.__stderr__.write('TRACE-PENDING %r\n' % (method,))
            sys.__stderr__.flush()
        return result

    amqp.Channel.wait = traced_wait


if os.environ.get('COMPAT_TRACE_PENDING'):
    trace_pending_after_replies()

_ssl = os.environ.get('COMPAT_BROKER_SSL')
app = make_app(
    os.environ.get('COMPAT_BROKER_URL', 'pyamqp://guest:guest@127.0.0.1//'),
    os.environ.get('COMPAT_RESULT_BACKEND', 'rpc://'),
    os.environ.get('COMPAT_QUEUE', 'celery'),
    **({'broker_use_ssl': json.loads(_ssl)} if _ssl else {}),
)
