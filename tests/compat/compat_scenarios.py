"""kombu and celery programs run in a subprocess, on our amqp or py-amqp.

``python compat_scenarios.py NAME BROKER_URL PREFIX`` runs one scenario and
prints its result as one JSON line prefixed with ``RESULT:``.  Which ``amqp``
it runs on is decided by the interpreter and ``PYTHONPATH`` (see
``conftest.run_scenario``); the scenario reports ``amqp.__file__`` and
``amqp.__version__`` beside its result so the tests can check that.

Results hold only what must not differ between the two libraries: bodies,
headers, properties, counts and orderings, never tags, ids or timings.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Worker:
    """A celery worker subprocess running ``compat_celeryapp``."""

    def __init__(self, broker_url, logdir, *, name, pool='solo',
                 concurrency=1, queue='celery', result_backend='rpc://',
                 mingle_gossip=False, python=None, env=None):
        self.name = f'{name}@localhost'
        self.queue = queue
        self.log = Path(logdir) / f'{name}.log'
        args = [python or sys.executable, '-m', 'celery',
                '-A', 'compat_celeryapp', 'worker', '-P', pool,
                '-c', str(concurrency), '-n', self.name, '-Q', queue,
                '-l', os.environ.get('COMPAT_LOGLEVEL', 'INFO'),
                '--without-heartbeat']
        if not mingle_gossip:
            args += ['--without-mingle', '--without-gossip']
        full_env = dict(os.environ if env is None else env)
        full_env.update(COMPAT_BROKER_URL=broker_url,
                        COMPAT_RESULT_BACKEND=result_backend,
                        COMPAT_QUEUE=queue)
        self._logfile = open(self.log, 'wb')
        self.proc = subprocess.Popen(
            args, cwd=str(HERE), env=full_env,
            stdout=self._logfile, stderr=subprocess.STDOUT)

    def output(self):
        return self.log.read_text(errors='replace')

    def check_warm_shutdown(self, app, marker, seconds, timeout):
        """Start a task sleeping ``seconds``, send SIGTERM once it runs and
        check the warm shutdown: the task finishes (it writes ``marker``),
        its result arrives, the worker exits 0 within 15 s."""
        result = app.tasks['compat.sleep'].delay(seconds, str(marker))
        deadline = time.monotonic() + timeout
        while 'compat.sleep' not in self.output() or \
                'received' not in self.output():
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)
        time.sleep(0.2)       # let it start running
        started = time.monotonic()
        rc = self.stop(signal.SIGTERM, timeout=timeout)
        assert rc == 0, self.output()[-3000:]
        assert marker.read_text() == 'finished'
        assert time.monotonic() - started < 15
        assert result.get(timeout=timeout) == seconds
        assert 'Warm shutdown' in self.output()

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ' ready.' in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f'worker {self.name} did not start:\n'
                           + self.output())

    def shutdown(self, app, timeout=30):
        """Stop the worker by remote control; return its exit code.

        Faster than SIGTERM: an idle worker only notices a signal at its
        next timer (10 s without heartbeats), on py-amqp as on ours.
        """
        if self.proc.poll() is None:
            app.control.shutdown(destination=[self.name])
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.stop()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Signal the worker and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logfile.close()
        return self.proc.returncode


def _message_record(body, message):
    props = message.properties
    return {
        'body': body,
        'routing_key': message.delivery_info.get('routing_key'),
        'redelivered': message.delivery_info.get('redelivered'),
        'content_type': message.content_type,
        'headers': message.headers,
        'priority': props.get('priority'),
        'delivery_mode': props.get('delivery_mode'),
        'expiration': props.get('expiration'),
    }


def kombu_core(url, prefix):
    """Produce/consume over every exchange type, reject, requeue, get."""
    from kombu import Connection, Consumer, Exchange, Producer, Queue

    result = {}
    with Connection(url.replace('amqp://', 'pyamqp://', 1)) as conn:
        channel = conn.channel()
        exchanges = {
            'direct': Exchange(f'{prefix}.direct', 'direct',
                               auto_delete=True),
            'fanout': Exchange(f'{prefix}.fanout', 'fanout',
                               auto_delete=True),
            'topic': Exchange(f'{prefix}.topic', 'topic', auto_delete=True),
            'headers': Exchange(f'{prefix}.headers', 'headers',
                                auto_delete=True),
        }
        queues = {
            'direct': Queue(f'{prefix}.q.direct', exchanges['direct'], 'red',
                            auto_delete=True),
            'fanout': Queue(f'{prefix}.q.fanout', exchanges['fanout'],
                            auto_delete=True),
            'topic': Queue(f'{prefix}.q.topic', exchanges['topic'],
                           'colour.*.bright', auto_delete=True),
            'headers': Queue(f'{prefix}.q.headers', exchanges['headers'],
                             auto_delete=True,
                             binding_arguments={'x-match': 'all',
                                                'kind': 'paint'}),
        }
        producer = Producer(channel)
        for queue in queues.values():
            queue(channel).declare()
        sends = [
            ('direct', 'red', {'n': 1}, {}),
            ('direct', 'blue', {'n': 2}, {}),   # unroutable, dropped
            ('fanout', 'anything', ['a', 1, None, True], {}),
            ('topic', 'colour.red.bright', 'text body', {}),
            ('topic', 'colour.red.dull', 'nope', {}),
            ('headers', '', {'n': 3}, {'kind': 'paint', 'extra': 1.5}),
            ('headers', '', {'n': 4}, {'kind': 'glue'}),
        ]
        for kind, key, body, headers in sends:
            producer.publish(body, exchange=exchanges[kind], routing_key=key,
                             headers=headers, priority=3, expiration=60,
                             delivery_mode=2, serializer='json')
        producer.publish(b'\x00\x01binary\xff', exchange=exchanges['direct'],
                         routing_key='red', content_type='application/data',
                         content_encoding='binary')
        producer.publish('x' * 300000, exchange=exchanges['direct'],
                         routing_key='red')   # several frames
        got = {kind: [] for kind in queues}

        def on_message(kind):
            def handle(body, message):
                record = _message_record(body, message)
                if isinstance(record['body'], bytes):
                    record['body'] = record['body'].hex()
                if isinstance(record['body'], str) and \
                        len(record['body']) > 100:
                    record['body'] = ['long', len(record['body'])]
                got[kind].append(record)
                message.ack()
            return handle

        consumers = [Consumer(channel, [queues[k]], callbacks=[on_message(k)])
                     for k in queues]
        for consumer in consumers:
            consumer.consume()
        deadline = time.monotonic() + 10
        while sum(map(len, got.values())) < 6 and \
                time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.5)
            except socket.timeout:
                pass
        for consumer in consumers:
            consumer.cancel()
        result['exchanges'] = got

        # reject(requeue=True) redelivers; reject() drops; basic_get sees it.
        q = Queue(f'{prefix}.q.requeue', auto_delete=False)
        bound = q(channel)
        bound.declare()
        for n in range(3):
            producer.publish({'n': n}, routing_key=q.name)
        seen = []

        def requeue_once(body, message):
            seen.append((body['n'], message.delivery_info['redelivered']))
            if body['n'] == 0 and not message.delivery_info['redelivered']:
                message.requeue()
            elif body['n'] == 1:
                message.reject()
            else:
                message.ack()

        with Consumer(channel, [q], callbacks=[requeue_once]):
            deadline = time.monotonic() + 10
            while len(seen) < 4 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.5)
                except socket.timeout:
                    pass
        result['requeue'] = sorted(seen)
        producer.publish({'n': 'get'}, routing_key=q.name)
        time.sleep(0.1)
        declared = bound.queue_declare(passive=True)
        result['declare_ok'] = [type(declared).__name__,
                                declared.message_count,
                                declared.consumer_count]
        message = bound.get(no_ack=False)
        result['get'] = [message.payload, bound.get() is None]
        message.ack()
        bound.delete()
    return result


def kombu_simple(url, prefix):
    """SimpleQueue and SimpleBuffer round trips, Empty on timeout."""
    from kombu import Connection

    result = {}
    with Connection(url.replace('amqp://', 'pyamqp://', 1)) as conn:
        queue = conn.SimpleQueue(f'{prefix}.simple')
        for n in range(5):
            queue.put({'n': n}, headers={'h': n})
        bodies = []
        for _ in range(5):
            message = queue.get(timeout=5)
            bodies.append([message.payload, message.headers])
            message.ack()
        try:
            queue.get(timeout=0.2)
            result['empty'] = False
        except queue.Empty:
            result['empty'] = True
        result['queue'] = bodies
        queue.close()    # cancel before delete, or the broker cancels it
        queue.queue(conn.default_channel).delete()
        buffer = conn.SimpleBuffer(f'{prefix}.buffer')
        buffer.put('one')
        buffer.put('two')
        result['buffer'] = [buffer.get(timeout=5).payload,
                            buffer.get(timeout=5).payload]
        buffer.close()
    return result


def celery_roundtrip(url, prefix):
    """A solo worker and a client on this interpreter's amqp."""
    import tempfile

    from celery import group

    from compat_celeryapp import make_app

    url = url.replace('amqp://', 'pyamqp://', 1)
    queue = f'{prefix}.celery'
    app = make_app(url, 'rpc://', queue)
    with tempfile.TemporaryDirectory() as logdir:
        worker = Worker(url, logdir, name=f'{prefix}-solo', queue=queue)
        try:
            worker.wait_ready()
            tasks = app.tasks
            result = {
                'add': tasks['compat.add'].delay(2, 3).get(timeout=20),
                'many': sum(r.get(timeout=30) for r in
                            [tasks['compat.add'].delay(i, i)
                             for i in range(100)]),
                'group': group(tasks['compat.add'].s(i, 1)
                               for i in range(10))().get(timeout=20),
                'late': tasks['compat.late'].delay(21).get(timeout=20),
                'retries': tasks['compat.flaky'].delay(2).get(timeout=20),
            }
            try:
                tasks['compat.fail'].delay('boom').get(timeout=20)
            except Exception as exc:
                result['fail'] = [type(exc).__name__, str(exc)]
            result['worker_amqp'] = tasks['compat.where'].delay().get(
                timeout=20)
            result['ping'] = [list(r.values()) for r in app.control.ping(
                destination=[worker.name], timeout=2)]
        finally:
            result['exit'] = worker.shutdown(app)
            app.close()
    return result


def kombu_confirm_ensure(url, prefix):
    """confirm_publish: a nacked publish under ensure() and without it."""
    from kombu import Connection, Producer, Queue

    result = {}
    with Connection(url.replace('amqp://', 'pyamqp://', 1),
                    transport_options={'confirm_publish': True}) as conn:
        queue = Queue(prefix, auto_delete=True, max_length=1,
                      queue_arguments={'x-overflow': 'reject-publish'})
        producer = Producer(conn)
        producer.publish('one', routing_key=prefix, declare=[queue])
        try:
            producer.publish('two', routing_key=prefix)
        except Exception as exc:
            result['plain'] = type(exc).__name__
        retried = []
        publish = conn.ensure(
            producer, producer.publish, max_retries=2, interval_start=0,
            interval_step=0,
            errback=lambda exc, interval: retried.append(
                type(exc).__name__))
        try:
            publish('three', routing_key=prefix)
        except Exception as exc:
            result['ensure'] = [type(exc).__name__, retried]
    return result


def kombu_ensure_unroutable(url, prefix):
    """A mandatory publish nothing can route, under ensure() with retries.

    py-amqp raises a plain ChannelError (312) from the confirm wait, which
    is not one of kombu's recoverable channel errors: ensure() gives up at
    once, without calling errback or publishing again.
    """
    from kombu import Connection, Producer

    result = {}
    with Connection(url.replace('amqp://', 'pyamqp://', 1),
                    transport_options={'confirm_publish': True}) as conn:
        producer = Producer(conn)
        retried = []
        publish = conn.ensure(
            producer, producer.publish, max_retries=3, interval_start=0,
            interval_step=0,
            errback=lambda exc, interval: retried.append(
                type(exc).__name__))
        try:
            publish('lost', routing_key=prefix + '-nowhere', mandatory=True)
        except Exception as exc:
            # the class itself differs on purpose: ours is NoRoute, a
            # ChannelError subclass (docs/migration.rst)
            result['raised'] = [c.__name__ for c in type(exc).__mro__
                                if c.__name__ == 'ChannelError']
            result['reply_code'] = getattr(exc, 'reply_code', None)
            result['reply_text'] = getattr(exc, 'reply_text', None)
            result['is_channel_error'] = isinstance(
                exc, conn.channel_errors)
            result['is_recoverable'] = isinstance(
                exc, conn.recoverable_channel_errors)
        result['retried'] = retried
    return result


SCENARIOS = {f.__name__: f for f in (kombu_core, kombu_simple,
                                     kombu_confirm_ensure,
                                     kombu_ensure_unroutable,
                                     celery_roundtrip)}


def main(name, url, prefix):
    import amqp
    result = SCENARIOS[name](url, prefix)
    print('RESULT:' + json.dumps({'amqp_file': amqp.__file__,
                                  'amqp_version': amqp.__version__,
                                  'result': result}, sort_keys=True))


if __name__ == '__main__':
    main(*sys.argv[1:])
