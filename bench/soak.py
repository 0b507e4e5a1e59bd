"""Memory soak: does the client hold on to memory it no longer needs?

    python bench/soak.py                      # throwaway broker, ~2 minutes
    python bench/soak.py -n 100000 --channels 1000 --big 10
    python bench/soak.py --url amqp://guest:guest@127.0.0.1:5672//
    python bench/soak.py --json soak.json

Two parts, each in a fresh worker process (this script with ``--worker``):

soak   On one connection: publish N messages of 100 bytes (a
       ``headers={'seq': i}`` table and ``content_type`` on each, so the
       property and table encoders run) on a channel in confirm mode,
       ``wait_for_confirms()`` every batch of 10,000, while a consumer on a
       second channel (prefetch 1000, ack multiple every 100) takes them
       back; then open and close CHANNELS channels.  Reports RSS
       (``VmRSS``) after a warm-up batch, at every tenth of the messages,
       after the channels, and the sizes of the library's own structures
       (channel tables, consumer tables, confirm state, the encoder caches
       in ``amqp.serialization``, the frame buffer, gc objects) before and
       after.  These are read, never changed.  Goal: RSS growth <= 5 MB.
big    One message of each ``--big`` size (MB) published and consumed
       back (basic.consume, manual ack) in a fresh process per size and
       library (ours, and py-amqp 5.4.2 for comparison).  Reports the
       baseline RSS before the body exists, the peak while publishing
       (``VmHWM``) and, after the body is dropped and the peak reset
       (``/proc/self/clear_refs``), the peak while consuming; overall peak
       is ``ru_maxrss``.  Goal: peak above baseline <= 2x the body + 5 MB.
"""
import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e  # noqa: E402  (bench/ is not a package)

MB = 1 << 20
BATCH = 10000
PREFETCH = 1000
ACK_EVERY = 100
RSS_GROWTH_GOAL_MB = 5.0
BIG_GOAL = 2.0
#: issue 11's "small constant" over 2x the body
BIG_SLACK_MB = 5.0
TIMEOUT = 60.0
#: attributes of amqp.serialization whose sizes are reported
CACHES = ('_ENCODERS', '_DECODERS', '_METHOD_ENCODERS', '_PROP_SHAPES',
          '_KEY_CACHE', '_PLANS')


def _status(field):
    """A kB figure from /proc/self/status (VmRSS, VmHWM)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mb():
    return _status('VmRSS') / 1024.0


def hwm_mb():
    return _status('VmHWM') / 1024.0


def reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if refused."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _size(obj, *path):
    """len() of obj.path..., or None when an attribute is missing (the
    library's private names may change)."""
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    try:
        return len(obj)
    except TypeError:
        return None


def structures(conn, pub, con):
    """Sizes of the library's own structures, read only."""
    from amqp import serialization
    out = {
        'conn.channels': _size(conn, 'channels'),
        'conn.channel_ids.used': _size(conn, 'channel_ids', 'used'),
        'conn._deferred': _size(conn, '_deferred'),
        'conn._frames.buf (bytes)': _size(conn, '_frames', 'buf'),
        'conn._frames._body (bytes)': _size(conn, '_frames', '_body'),
    }
    for label, ch in (('consumer', con), ('publisher', pub)):
        for attr in ('callbacks', 'cancel_callbacks', 'no_ack_consumers',
                     '_consumers_pending', 'events'):
            out['%s.%s' % (label, attr)] = _size(ch, attr)
        for attr in ('unsettled', '_nacked', '_returned',
                     '_pending_returns', '_mandatory'):
            out['%s._confirms.%s' % (label, attr)] = _size(
                ch, '_confirms', attr)
    for name in CACHES:
        out['serialization.' + name] = _size(serialization, name)
    gc.collect()
    out['gc objects'] = len(gc.get_objects())
    return out


def run_soak(args):
    import amqp
    conn = e2e.PyAmqpLike(args.url, e2e.Clock()).connect()
    report = {'rss_connected_mb': rss_mb()}
    pub = conn.channel()
    pub.confirm_select()
    con = conn.channel()
    q = con.queue_declare('', exclusive=True)[0]
    con.basic_qos(0, PREFETCH, False)
    received = 0

    def on_message(m):
        nonlocal received
        received += 1
        if received % ACK_EVERY == 0:
            con.basic_ack(m.delivery_info['delivery_tag'], multiple=True)

    tag = con.basic_consume(q, callback=on_message)
    body = b'x' * 100
    batch = min(BATCH, args.n)
    batches = max(1, args.n // batch)
    published = 0
    checkpoints = []
    t0 = time.perf_counter()
    for b in range(batches):
        for _ in range(batch):
            published += 1
            pub.basic_publish(amqp.Message(
                body, content_type='application/octet-stream',
                headers={'seq': published}), '', q)
        pub.wait_for_confirms(TIMEOUT)
        while received < published:
            conn.drain_events(timeout=TIMEOUT)
        if b == 0:
            gc.collect()
            report['rss_warm_mb'] = rss_mb()
            report['before'] = structures(conn, pub, con)
        if (b + 1) * 10 % batches < 10 or b + 1 == batches:
            checkpoints.append((published, rss_mb()))
    report['messages'] = published
    report['messages_seconds'] = time.perf_counter() - t0
    report['checkpoints'] = checkpoints
    gc.collect()
    report['rss_messages_mb'] = rss_mb()
    report['after_messages'] = structures(conn, pub, con)

    t0 = time.perf_counter()
    for _ in range(args.channels):
        conn.channel().close()
    report['channels'] = args.channels
    report['channels_seconds'] = time.perf_counter() - t0
    gc.collect()
    report['rss_channels_mb'] = rss_mb()
    report['after_channels'] = structures(conn, pub, con)
    report['peak_mb'] = resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024.0
    con.basic_cancel(tag)
    conn.close()
    report['version'] = amqp.__version__
    json.dump(report, sys.stdout)


def run_big(args):
    import amqp
    size = args.size
    conn = e2e.PyAmqpLike(args.url, e2e.Clock()).connect()
    ch = conn.channel()
    q = ch.queue_declare('', exclusive=True)[0]
    gc.collect()
    report = {'size': size, 'library': args.worker_lib,
              'version': amqp.__version__}
    reset_peak()
    report['baseline_mb'] = base = rss_mb()
    msg = amqp.Message(b'x' * size)
    report['with_body_mb'] = rss_mb()
    ch.basic_publish(msg, '', q)
    while ch.queue_declare(q, passive=True)[1] < 1:
        time.sleep(0.005)
    report['peak_publish_mb'] = hwm_mb()
    del msg
    gc.collect()
    report['after_publish_mb'] = base2 = rss_mb()
    report['peak_reset'] = reset_peak()
    got = []

    def on_message(m):
        got.append(len(m.body))
        ch.basic_ack(m.delivery_info['delivery_tag'])

    tag = ch.basic_consume(q, callback=on_message)
    while not got:
        conn.drain_events(timeout=TIMEOUT)
    report['peak_consume_mb'] = hwm_mb()
    assert got == [size], got
    ch.basic_cancel(tag)
    conn.close()
    report['maxrss_mb'] = resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024.0
    body_mb = size / MB
    report['publish_x_body'] = (report['peak_publish_mb'] - base) / body_mb
    report['consume_x_body'] = (
        (report['peak_consume_mb'] - base2) / body_mb
        if report['peak_reset'] else None)
    report['overall_x_body'] = (report['maxrss_mb'] - base) / body_mb
    json.dump(report, sys.stdout)


def _worker(kind, lib, args, python_other, extra=()):
    argv = [os.path.abspath(__file__), '--worker', kind, '--worker-lib',
            lib, '--url', args.url] + list(extra)
    env = e2e._clean_env()
    if lib == 'ours':
        env['PYTHONPATH'] = e2e.REPO
        argv, cwd = [sys.executable] + argv, e2e.REPO
    else:
        argv, cwd = [python_other] + argv, '/'
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode:
        raise SystemExit('%s worker (%s) failed (exit %d):\n%s' % (
            kind, lib, done.returncode, done.stderr[-4000:]))
    return json.loads(done.stdout)


def format_soak(r):
    growth = r['rss_channels_mb'] - r['rss_warm_mb']
    lines = [
        'soak (ours %s): %d messages in %.0f s, then %d channels opened '
        'and closed in %.1f s' % (r['version'], r['messages'],
                                  r['messages_seconds'], r['channels'],
                                  r['channels_seconds']),
        '  RSS: connected %.1f MB, after warm-up batch %.1f MB, after '
        'messages %.1f MB, after channels %.1f MB, peak %.1f MB' % (
            r['rss_connected_mb'], r['rss_warm_mb'], r['rss_messages_mb'],
            r['rss_channels_mb'], r['peak_mb']),
        '  RSS by messages: ' + ', '.join(
            '%dk %.1f' % (n // 1000, mb) for n, mb in r['checkpoints']),
        '  RSS growth after warm-up: %.2f MB (goal <= %.0f MB): %s' % (
            growth, RSS_GROWTH_GOAL_MB,
            'met' if growth <= RSS_GROWTH_GOAL_MB else 'MISSED'),
        '  %-40s %12s %12s %12s' % ('structure', 'after warm-up',
                                    'after msgs', 'after chans'),
    ]
    for key, before in r['before'].items():
        a, c = r['after_messages'][key], r['after_channels'][key]
        # the frame buffer holds whatever the last read left; gc objects
        # move by a few
        flag = '' if before == a == c or key == 'gc objects' or \
            '(bytes)' in key else '  <-'
        lines.append('  %-40s %12s %12s %12s%s' % (key, before, a, c, flag))
    return '\n'.join(lines)


def format_big(results):
    lines = ['%-8s %7s %9s %9s %9s %9s %8s %8s  %s' % (
        'library', 'body MB', 'base MB', 'pub peak', 'con peak',
        'maxrss', 'pub x', 'con x', 'peak - base <= %.0fx body + %.0f MB'
        % (BIG_GOAL, BIG_SLACK_MB))]
    for r in results:
        body = r['size'] / MB
        worst = max(r['publish_x_body'], r['consume_x_body'] or 0,
                    r['overall_x_body']) * body
        lines.append('%-8s %7.0f %9.1f %9.1f %9.1f %9.1f %8.2f %8s  %s' % (
            r['library'], body, r['baseline_mb'], r['peak_publish_mb'],
            r['peak_consume_mb'], r['maxrss_mb'], r['publish_x_body'],
            '%.2f' % r['consume_x_body'] if r['consume_x_body'] is not None
            else 'n/a',
            'met' if worst <= BIG_GOAL * body + BIG_SLACK_MB else 'MISSED'))
    lines.append('pub/con peak: VmHWM while publishing / consuming (reset '
                 'in between); x: (peak - baseline) / body')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--url', help='broker URL (default: a throwaway RabbitMQ)')
    p.add_argument('-n', type=int, default=1000000,
                   help='messages to publish and consume (default 1000000)')
    p.add_argument('--channels', type=int, default=10000,
                   help='channels to open and close (default 10000)')
    p.add_argument('--big', default='10,100',
                   help='body sizes in MB for the big-body round trips, '
                   "comma-separated ('' to skip; default 10,100)")
    p.add_argument('--libs', default='ours,py-amqp',
                   help='libraries for the big bodies (ours, py-amqp)')
    p.add_argument('--no-soak', action='store_true',
                   help='only the big bodies')
    p.add_argument('--venv', default=e2e.DEFAULT_VENV)
    p.add_argument('--json', metavar='FILE')
    p.add_argument('--worker', choices=('soak', 'big'),
                   help=argparse.SUPPRESS)
    p.add_argument('--worker-lib', default='ours', help=argparse.SUPPRESS)
    p.add_argument('--size', type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == 'soak':
        return run_soak(args)
    if args.worker == 'big':
        return run_big(args)

    sizes = [int(x) for x in args.big.split(',') if x.strip()]
    libs = [x.strip() for x in args.libs.split(',') if x.strip()]
    for lib in libs:
        if lib not in ('ours', 'py-amqp'):
            p.error('--libs takes ours and py-amqp, not %r' % lib)
    python_other = e2e.ensure_venv(args.venv) \
        if sizes and 'py-amqp' in libs else None
    broker = None
    if not args.url:
        sys.path.insert(0, e2e.REPO)
        from amqp.cli.localbroker import LocalBroker
        print('starting a throwaway RabbitMQ...', file=sys.stderr)
        broker = LocalBroker().start()
        args.url = broker.url
    doc = {'python': platform.python_version(),
           'platform': platform.platform(), 'cpus': os.cpu_count()}
    try:
        if not args.no_soak:
            print('soak: %d messages, %d channels' % (args.n, args.channels),
                  file=sys.stderr)
            doc['soak'] = _worker('soak', 'ours', args, None, [
                '-n', str(args.n), '--channels', str(args.channels)])
        doc['big'] = []
        for size in sizes:
            for lib in libs:
                print('big: %s, %d MB' % (lib, size), file=sys.stderr)
                doc['big'].append(_worker('big', lib, args, python_other, [
                    '--size', str(size * MB)]))
    finally:
        if broker is not None:
            broker.stop()
    if 'soak' in doc:
        print(format_soak(doc['soak']))
        print()
    if doc['big']:
        print(format_big(doc['big']))
    e2e._write_json(args.json, doc)


if __name__ == '__main__':
    sys.exit(main())
