"""The pure-Python path, when the compiled twins are built here: the
suite runs a second time, in a subprocess with ``AMQP_NO_SPEEDUPS=1``, so
that both paths pass it in every run -- unit, protocol (fuzz included),
integration against its own RabbitMQ node, kombu and celery, and the
fault tests.  Left out of the second pass are the ``stress`` runs (three
tests of a minute or more: sixteen threads on one connection, 20
failures of each kind, the cluster): what they stress is the threading
and recovery logic, which is the same Python on both paths, and their
traffic goes through the same frame parser, handler and writer as the
rest of the suite, which the second pass covers.  Nor are the checks
that never touch the wire (the docs build, typing, module structure,
docstrings, the pip contract).  (See docs/accelerator.rst.)

The second pass starts when collection ends (``start_second_pass``,
called from conftest's ``pytest_collection_finish``) and runs beside
the first, in its own process with its own RabbitMQ node; the test below
waits for it and checks it.  Run one after the other they took more
than the 18 minutes CI allows on a slower machine; most of each pass
waits on the broker, so the two share two cores well."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import amqp

HERE = Path(__file__).parent

#: the second pass takes about six minutes on a 2-core machine alone
SECOND_PASS_LIMIT = 900

#: what the second pass leaves out: itself, the sanitizer run, the stress
#: runs and the checks that never touch the wire
SECOND_PASS_ARGS = [
    '-q', '-p', 'no:cacheprovider', '-m', 'not stress',
    '--deselect', 'tests/test_pure_path.py',
    '--deselect', 'tests/test_sanitizer.py',
    '--deselect', 'tests/unit/test_docs.py',
    '--deselect', 'tests/unit/test_typing.py',
    '--deselect', 'tests/unit/test_structure.py',
    '--deselect', 'tests/unit/test_docstrings.py',
    '--deselect', 'tests/compat/test_contract.py',
]

_ENV = dict(os.environ, AMQP_NO_SPEEDUPS='1')


class SecondPass:
    """The suite on the pure path, running in a subprocess."""

    def __init__(self):
        self.log = tempfile.TemporaryFile(mode='w+')
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'pytest'] + SECOND_PASS_ARGS +
            [str(HERE)],
            env=_ENV, cwd=str(HERE.parent), stdout=self.log,
            stderr=subprocess.STDOUT, text=True)

    def wait(self):
        """(returncode, the last 25 lines of its output)."""
        left = SECOND_PASS_LIMIT - (time.monotonic() - self.started)
        try:
            code = self.proc.wait(timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            self.stop()
            code = 'timed out after %d s' % SECOND_PASS_LIMIT
        self.log.seek(0)
        return code, '\n'.join(self.log.read().splitlines()[-25:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_second_pass(items):
    """The second pass, started if this session runs the test below with
    the compiled module in use; else None."""
    if not amqp.SPEEDUPS or not any(
            item.name == 'test_the_suite_passes_on_the_pure_path'
            for item in items):
        return None
    return SecondPass()


@pytest.mark.slow
@pytest.mark.timeout(SECOND_PASS_LIMIT + 60)
def test_the_suite_passes_on_the_pure_path(request):
    if not amqp.SPEEDUPS:
        pytest.skip('the compiled twins are off: this whole run is the '
                    'pure path')
    second = getattr(request.config, 'second_pass', None) or SecondPass()
    code, tail = second.wait()
    assert code == 0, tail
    assert ' passed' in tail and ' failed' not in tail, tail
    # the second pass ran on the pure path: the module reported off
    check = subprocess.run(
        [sys.executable, '-c', 'import amqp; print(amqp.SPEEDUPS)'],
        env=_ENV, cwd=str(HERE.parent), capture_output=True, text=True)
    assert check.stdout.split() == ['False']
