"""The celery app the compat tests run in a worker subprocess.

A worker is started with ``celery -A celeryapp worker``; it reads its broker,
result backend and queue from the environment (``COMPAT_BROKER_URL``,
``COMPAT_RESULT_BACKEND``, ``COMPAT_QUEUE``).  The tests build client apps
with :func:`make_app` so that each can point at its own queue and backend.
"""
import os
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


app = make_app(
    os.environ.get('COMPAT_BROKER_URL', 'pyamqp://guest:guest@127.0.0.1//'),
    os.environ.get('COMPAT_RESULT_BACKEND', 'rpc://'),
    os.environ.get('COMPAT_QUEUE', 'celery'),
)
