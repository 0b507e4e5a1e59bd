"""Memory for one large body, in a fresh process that gets it from the
broker: with the compiled module the body is received straight into the
``bytes`` object the message keeps, so the process peaks near the body's
size above where it started; the pure path receives into a buffer and
copies it out, about twice.  (bench/rss.py measures the same beside
py-amqp and pika.)"""
import json
import os
import subprocess
import sys

import pytest

import amqp
from amqp import Message

from testkit import unique_name

SIZE = 32 * 1024 * 1024

#: the measured process: get the one message; print VmHWM (peak RSS,
#: which starts afresh at exec) before and after, in KiB
WORKER = r'''
import json, sys
import amqp
def peak():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmHWM:'))
host, queue, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = amqp.Connection(host)
conn.connect()
ch = conn.channel()
before = peak()
msg = ch.basic_get(queue, no_ack=True)
after = peak()
assert type(msg.body) is bytes and len(msg.body) == size
assert msg.body[:4] == b'\x00\x01\x02\x03' and msg.body[-1] == 255
conn.close()
print(json.dumps([amqp.SPEEDUPS, before, after]))
'''

pytestmark = pytest.mark.skipif(not os.path.exists('/proc/self/status'),
                                reason='reads VmHWM from /proc')


@pytest.mark.parametrize('pure', [False, True], ids=['compiled', 'pure'])
def test_a_large_body_costs_its_size_once_in_memory(broker, pure,
                                                    tmp_path):
    # (run from an empty directory: python -c from the checkout would
    # import its source tree, which has no compiled module)
    if not pure and not amqp.SPEEDUPS:
        pytest.skip('the compiled module is not in use here')
    queue = unique_name('body-memory')
    body = bytes(range(256)) * (SIZE // 256)
    with broker.connect() as conn:
        ch = conn.channel()
        ch.queue_declare(queue, auto_delete=False)
        try:
            ch.confirm_select()
            ch.basic_publish_confirm(Message(body), routing_key=queue)
            del body
            env = dict(os.environ)
            env.pop('AMQP_NO_SPEEDUPS', None)
            if pure:
                env['AMQP_NO_SPEEDUPS'] = '1'
            out = subprocess.run(
                [sys.executable, '-c', WORKER,
                 '%s:%d' % (broker.host, broker.port), queue, str(SIZE)],
                env=env, capture_output=True, text=True, timeout=120,
                check=True, cwd=str(tmp_path)).stdout
        finally:
            ch.queue_delete(queue)
    speedups, before, after = json.loads(out)
    assert speedups is (not pure)
    grew = (after - before) * 1024 / SIZE
    if pure:
        # a buffer and its copy: the cost the compiled module saves
        assert 1.8 < grew < 2.6, grew
    else:
        assert grew < 1.3, grew
