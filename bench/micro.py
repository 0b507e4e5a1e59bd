"""Micro-benchmark of the wire layer: this package next to py-amqp 5.4.2.

    python bench/micro.py                  # table of µs per operation
    python bench/micro.py --json out.json  # also write the numbers
    python bench/micro.py --venv DIR       # where py-amqp 5.4.2 lives

Both libraries are driven through the same public functions
(``amqp.serialization.dumps``/``loads``, ``amqp.method_framing.frame_writer``
and ``frame_handler``, ``amqp.basic_message.Message``), each in a worker
process of its own (this script with ``--worker``): ours with the repository
first on ``PYTHONPATH``, py-amqp from a separate virtualenv (default
/tmp/bench-pyamqp, created on demand with ``amqp==5.4.2``) with the
repository off ``sys.path``.  Every worker checks and reports which ``amqp``
it imported.

Operations (per call):

declare    dumps + loads of queue.declare arguments 'BsbbbbbF' with
           {'x-max-length': 10, 'x-queue-type': 'classic',
            'x-message-ttl': 60000}
publish0   frame_writer: basic.publish method frame + content header
           (content_type, delivery_mode, one application header) of an
           empty body (so no body frame), arguments already serialized,
           into a collecting write
publish    the same with a 16-byte body (method, header and body frames)
publish+a  the same with ``dumps('Bssbb', ...)`` of the arguments included
deliver    frame_handler fed a basic.deliver method frame, its content
           header (same properties) and body, then ``loads('sLbss')`` of
           the method arguments, as a channel does on dispatch
props      encode_properties + decode_properties of those three properties
           (both libraries' own property codecs)

Timing: ``timeit`` on the worker's CPU time (``time.process_time``, so
other load on a shared machine does not inflate it) with a number of loops
auto-ranged to ~0.2 s, best of ``--repeat`` runs, reported as µs per
operation.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_VENV = '/tmp/bench-pyamqp'
PYAMQP_REQUIREMENT = 'amqp==5.4.2'

ROWS = (
    ('declare', 'queue.declare args dumps+loads'),
    ('publish0', 'publish method+header frame_writer'),
    ('publish', 'publish method+header+body frame_writer'),
    ('publish+args', 'publish dumps args + frame_writer'),
    ('deliver', 'deliver frame_handler + loads args'),
    ('props', 'properties encode+decode'),
)

DECLARE_ARGS = (0, 'celery', False, True, False, False, False,
                {'x-max-length': 10, 'x-queue-type': 'classic',
                 'x-message-ttl': 60000})
PUBLISH_ARGS = (0, 'celery', 'celery', False, False)
DELIVER_ARGS = ('amq.ctag-4Bv8Q0xM1tJgxKkq8pJjKQ', 1, False, 'celery',
                'celery')
PROPERTIES = {'content_type': 'application/json', 'delivery_mode': 2,
              'application_headers': {'task': 'proj.tasks.add'}}
BODY = b'{"args": [1, 2]}'  # 16 bytes


class _Connection:
    """The attributes frame_writer/frame_handler read on a connection."""

    def __init__(self):
        self.frame_max = 131072
        self.bytes_sent = 0
        self.bytes_recv = 0


class _Transport:
    def __init__(self, out):
        self.write = out.append


def _timeit(fn, repeat):
    # CPU time of this process: other load on a shared machine delays us
    # but does not inflate the figure.
    timer = timeit.Timer(fn, timer=time.process_time)
    number, _ = timer.autorange()
    number = max(number, 1000)
    best = min(timer.repeat(repeat=repeat, number=number))
    return best / number * 1e6


def worker(repeat):
    import amqp
    from amqp import serialization
    from amqp.basic_message import Message
    from amqp.method_framing import frame_handler, frame_writer

    dumps, loads = serialization.dumps, serialization.loads

    def declare():
        loads('BsbbbbbF', dumps('BsbbbbbF', DECLARE_ARGS), 0)

    out = []
    conn = _Connection()
    write_frame = frame_writer(conn, _Transport(out))
    msg = Message(BODY, **PROPERTIES)
    empty = Message(b'', **PROPERTIES)
    publish_args = dumps('Bssbb', PUBLISH_ARGS)
    publish_sig = (60, 40)

    def publish_empty():
        write_frame(1, 1, publish_sig, publish_args, empty)
        del out[:]

    def publish():
        write_frame(1, 1, publish_sig, publish_args, msg)
        del out[:]

    def publish_with_args():
        write_frame(1, 1, publish_sig, dumps('Bssbb', PUBLISH_ARGS), msg)
        del out[:]

    # Frames for deliver, cut out of what the writer produced for a publish
    # (identical header and body layout), with deliver's own arguments.
    write_frame(1, 1, publish_sig, publish_args, msg)
    stream = b''.join(bytes(x) for x in out)
    del out[:]
    frames = _split(stream)
    method_payload = b'\x00\x3c\x00\x3c' + dumps('sLbss', DELIVER_ARGS)
    deliver_frames = [(1, 1, method_payload), frames[1], frames[2]]
    got = []

    def callback(channel, method_sig, payload, content):
        got.append(loads('sLbss', payload, 4)[0])

    on_frame = frame_handler(conn, callback)

    def deliver():
        for f in deliver_frames:
            on_frame(f)
        del got[:]

    deliver()
    on_frame(deliver_frames[0])
    on_frame(deliver_frames[1])
    on_frame(deliver_frames[2])
    assert got == [list(DELIVER_ARGS)], got
    del got[:]

    props = _property_codec(amqp, Message)

    results = {
        'declare': _timeit(declare, repeat),
        'publish0': _timeit(publish_empty, repeat),
        'publish': _timeit(publish, repeat),
        'publish+args': _timeit(publish_with_args, repeat),
        'deliver': _timeit(deliver, repeat),
        'props': _timeit(props, repeat),
    }
    return {'version': amqp.__version__, 'module': amqp.__file__,
            'python': platform.python_version(), 'results': results}


def _property_codec(amqp, Message):
    """encode+decode of PROPERTIES through the library's own codec."""
    from amqp import serialization
    if hasattr(serialization, 'encode_properties_basic'):  # ours
        enc = serialization.encode_properties_basic
        dec = serialization.decode_properties_basic

        def props():
            dec(enc(PROPERTIES), 0)
    else:  # py-amqp: GenericContent._serialize/_load_properties
        msg = Message(BODY, **PROPERTIES)
        holder = Message()
        ser = msg._serialize_properties
        load = holder._load_properties

        def props():
            load(60, ser(), 0)
    return props


def _split(stream):
    import struct
    frames, pos = [], 0
    while pos < len(stream):
        frame_type, channel, size = struct.unpack_from('>BHI', stream, pos)
        frames.append((frame_type, channel, stream[pos + 7:pos + 7 + size]))
        pos += 8 + size
    return frames


# -- driver ----------------------------------------------------------------

def _clean_env():
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    return env


def ensure_venv(venv):
    """Create ``venv`` with py-amqp 5.4.2 unless it already has it."""
    python = os.path.join(venv, 'bin', 'python')
    check = 'import amqp, sys; sys.exit(amqp.__version__ != "5.4.2")'
    env = _clean_env()
    if os.path.exists(python) and subprocess.call(
            [python, '-c', check], env=env, cwd='/') == 0:
        return python
    print('creating %s with %s' % (venv, PYAMQP_REQUIREMENT), file=sys.stderr)
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, '-m', 'venv', venv])
    subprocess.check_call([python, '-m', 'pip', 'install', '-q',
                           PYAMQP_REQUIREMENT], env=env)
    subprocess.check_call([python, '-c', check], env=env, cwd='/')
    return python


def run_worker(python, ours, repeat):
    env = _clean_env()
    if ours:
        env['PYTHONPATH'] = REPO
    out = subprocess.check_output(
        [python, os.path.join(HERE, 'micro.py'), '--worker',
         '--repeat', str(repeat)],
        env=env, cwd=REPO if ours else '/')
    result = json.loads(out)
    inside = os.path.abspath(result['module']).startswith(REPO + os.sep)
    if inside != ours:
        raise SystemExit('worker imported the wrong amqp: %s'
                         % result['module'])
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--repeat', type=int, default=7)
    p.add_argument('--venv', default=DEFAULT_VENV,
                   help='virtualenv with py-amqp 5.4.2 (created if missing)')
    p.add_argument('--python', default=sys.executable,
                   help='interpreter for our worker')
    p.add_argument('--json', help='also write the results to this file')
    args = p.parse_args(argv)
    if args.worker:
        json.dump(worker(args.repeat), sys.stdout)
        return
    other = ensure_venv(args.venv)
    ours = run_worker(args.python, True, args.repeat)
    theirs = run_worker(other, False, args.repeat)
    print('Python %s, %s, %d CPUs; best of %d, µs per operation'
          % (ours['python'], platform.machine(), os.cpu_count() or 0,
             args.repeat))
    print('ours: %s (%s)' % (ours['version'], ours['module']))
    print('py-amqp: %s (%s)' % (theirs['version'], theirs['module']))
    print()
    header = '%-42s %9s %9s %8s' % ('operation', 'ours', 'py-amqp', 'ratio')
    print(header)
    print('-' * len(header))
    for key, label in ROWS:
        a, b = ours['results'][key], theirs['results'][key]
        print('%-42s %9.2f %9.2f %7.1fx' % (label, a, b, b / a))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'ours': ours, 'py-amqp': theirs}, f, indent=2)


if __name__ == '__main__':
    main()
