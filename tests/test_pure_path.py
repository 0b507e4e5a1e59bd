"""The pure-Python path, when the compiled twins are built here: the
suite runs a second time, in a subprocess with ``AMQP_NO_SPEEDUPS=1``, so
that both paths pass it in every run -- unit, protocol (fuzz included),
integration against its own RabbitMQ node, kombu and celery, and the
fault tests.  Left out of the second pass are the ``stress`` runs (three
tests of a minute or more: sixteen threads on one connection, 20
failures of each kind, the cluster): what they stress is the threading
and recovery logic, which is the same Python on both paths, and their
traffic goes through the same frame parser, handler and writer as the
rest of the suite, which the second pass covers.  (See
docs/accelerator.rst.)"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import amqp

HERE = Path(__file__).parent

#: the second pass takes about six minutes on a 2-core machine
SECOND_PASS_LIMIT = 900


@pytest.mark.slow
@pytest.mark.timeout(SECOND_PASS_LIMIT + 60)
def test_the_suite_passes_on_the_pure_path():
    if not amqp.SPEEDUPS:
        pytest.skip('the compiled twins are off: this whole run is the '
                    'pure path')
    env = dict(os.environ, AMQP_NO_SPEEDUPS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         '-m', 'not stress',
         '--deselect', 'tests/test_pure_path.py',
         '--deselect', 'tests/test_sanitizer.py',
         str(HERE)],
        env=env, cwd=str(HERE.parent), capture_output=True, text=True,
        timeout=SECOND_PASS_LIMIT)
    tail = '\n'.join(proc.stdout.splitlines()[-25:])
    assert proc.returncode == 0, tail
    assert ' passed' in tail and ' failed' not in tail, tail
    # the second pass ran on the pure path: the module reported off
    check = subprocess.run(
        [sys.executable, '-c', 'import amqp; print(amqp.SPEEDUPS)'],
        env=env, cwd=str(HERE.parent), capture_output=True, text=True)
    assert check.stdout.split() == ['False']
