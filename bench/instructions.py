"""Client instructions per message, counted by valgrind (callgrind), for
this checkout and, with ``--compare``, another one: a measure of CPU cost
that does not move with the machine's load (wall and CPU times on a
shared 2-core machine vary by 10-20% from run to run; instruction counts
by well under 1%).

Each scenario runs twice in a fresh process under ``valgrind
--tool=callgrind``, with N1 and N2 messages; the difference of the two
totals over N2 - N1 is the cost of one message, start-up and set-up
cancelled out.  Queues a consumer reads are filled first by a process
that is not measured.

::

    python bench/instructions.py                      # throwaway RabbitMQ
    python bench/instructions.py --url amqp://guest:guest@127.0.0.1:5672//
    python bench/instructions.py --compare /tmp/before  # a second checkout
    python bench/instructions.py --venv /tmp/bench-pyamqp  # and py-amqp

``--venv`` counts py-amqp beside this checkout: each virtualenv given
(py-amqp 5.x and vine installed in it, e.g. the ones ``bench/e2e.py``
makes: ``/tmp/bench-pyamqp``, ``/tmp/bench-pyamqp-cython``) runs the
same program with its own interpreter.  Scenarios: ``get`` is a
basic.get on an empty queue (get-empty), ``get_ok`` one of a 100-byte
message (no_ack), as ``bench/e2e.py``'s get; ``confirm`` a publish
waiting for its confirm.

Needs valgrind (Debian package ``valgrind``) and vine.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SCENARIOS = ('publish', 'consume_ack', 'get', 'get_ok', 'confirm')

#: The measured program: ``python -c WORKER root url scenario n``.
WORKER = r'''
import sys
root, url, scenario, n = sys.argv[1:4] + [int(sys.argv[4])]
sys.path.insert(0, root)
import amqp
assert amqp.__file__.startswith(root), amqp.__file__
from urllib.parse import unquote, urlsplit
u = urlsplit(url)
# (the constructor's arguments, which py-amqp takes too)
conn = amqp.Connection(
    host='%s:%s' % (u.hostname, u.port or 5672),
    userid=unquote(u.username or 'guest'),
    password=unquote(u.password or 'guest'),
    virtual_host=unquote(u.path[1:]) if len(u.path) > 1 else '/')
conn.connect()
ch = conn.channel()
body = b'x' * 100
if scenario == 'fill':
    ch.queue_declare('bench-instructions', auto_delete=False)
    ch.queue_purge('bench-instructions')
    for i in range(n):
        ch.basic_publish(amqp.Message(body), routing_key='bench-instructions')
    ch.queue_declare('bench-instructions', passive=True)
elif scenario == 'publish':
    q = ch.queue_declare('', exclusive=True).queue
    m = amqp.Message(body)
    for i in range(n):
        ch.basic_publish(m, routing_key=q)
    ch.queue_declare(q, passive=True)
elif scenario == 'consume_ack':
    ch.basic_qos(0, 500, False)
    got = [0]
    def on_message(message):
        got[0] += 1
        message.channel.basic_ack(message.delivery_tag)
    ch.basic_consume('bench-instructions', callback=on_message)
    while got[0] < n:
        conn.drain_events(timeout=10)
elif scenario == 'get':
    q = ch.queue_declare('', exclusive=True).queue
    for i in range(n):
        ch.basic_get(q)
elif scenario == 'get_ok':
    for i in range(n):
        assert ch.basic_get('bench-instructions', no_ack=True) is not None
elif scenario == 'confirm':
    q = ch.queue_declare('', exclusive=True).queue
    ch.confirm_select()
    m = amqp.Message(body)
    for i in range(n):
        ch.basic_publish_confirm(m, routing_key=q)
conn.close()
'''


def _run(root, url, scenario, n, valgrind=True, python=sys.executable):
    argv = [python, '-c', WORKER, root, url, scenario, str(n)]
    if not valgrind:
        subprocess.run(argv, check=True)
        return None
    out = subprocess.run(
        ['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null']
        + argv, check=True, capture_output=True, text=True).stderr
    found = re.search(r'Collected : (\d+)', out)
    if not found:
        raise SystemExit('no instruction count from valgrind:\n' + out)
    return int(found.group(1))


def per_message(root, url, scenario, n1, n2, python=sys.executable):
    totals = []
    for n in (n1, n2):
        if scenario in ('consume_ack', 'get_ok'):
            _run(ROOT, url, 'fill', n, valgrind=False)
        totals.append(_run(root, url, scenario, n, python=python))
    return (totals[1] - totals[0]) / (n2 - n1)


def venv_package(venv):
    """(python, the directory amqp is imported from) of a virtualenv
    with py-amqp installed."""
    python = os.path.join(venv, 'bin', 'python')
    out = subprocess.run(
        [python, '-c', 'import amqp, os; print(os.path.dirname('
         'os.path.dirname(os.path.abspath(amqp.__file__))))'],
        check=True, capture_output=True, text=True, cwd='/').stdout
    return python, out.strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--url', help='broker URL (default: start a '
                        'throwaway RabbitMQ)')
    parser.add_argument('--compare', metavar='PATH',
                        help='another checkout of this package to count '
                        'beside this one')
    parser.add_argument('--venv', action='append', default=[],
                        metavar='PATH', help='a virtualenv with py-amqp '
                        'whose instructions to count too (repeatable)')
    parser.add_argument('--scenarios', default=','.join(SCENARIOS))
    parser.add_argument('--n1', type=int, default=1000)
    parser.add_argument('--n2', type=int, default=3000)
    args = parser.parse_args(argv)
    if not shutil.which('valgrind'):
        raise SystemExit('valgrind is not installed')
    broker = None
    url = args.url
    if url is None:
        sys.path.insert(0, ROOT)
        from amqp.cli.localbroker import LocalBroker
        broker = LocalBroker().start()
        url = broker.url
    roots = [('this', ROOT, sys.executable)]
    if args.compare:
        roots.insert(0, ('compare', os.path.abspath(args.compare),
                         sys.executable))
    for venv in args.venv:
        python, root = venv_package(venv)
        roots.append((os.path.basename(venv.rstrip('/')), root, python))
    change = len(roots) == 2 and not args.venv
    try:
        print('%-12s %s' % ('scenario', '  '.join(
            '%14s' % name for name, _, _ in roots)) + (
                '      change' if change else ''))
        for scenario in args.scenarios.split(','):
            counts = [per_message(root, url, scenario, args.n1, args.n2,
                                  python)
                      for _, root, python in roots]
            line = '%-12s %s' % (scenario, '  '.join(
                '%14.0f' % c for c in counts))
            if change:
                line += '  %+9.1f%%' % (100.0 * (counts[1] / counts[0] - 1))
            elif args.venv:
                this = counts[-1 - len(args.venv)]
                line += '  ' + '  '.join(
                    'this/%s %.2f' % (name, this / c)
                    for (name, _, _), c in zip(roots[-len(args.venv):],
                                               counts[-len(args.venv):]))
            print(line, flush=True)
    finally:
        if broker is not None:
            broker.stop()
    print('\ninstructions per message (valgrind --tool=callgrind), '
          'N = %d vs %d; python %s' % (args.n1, args.n2,
                                       sys.version.split()[0]))


if __name__ == '__main__':
    main()
