"""The pure-Python path, when the compiled twins are built here: the unit
and protocol suites (codecs, framing, the reader, timeouts, fuzz) run a
second time in a subprocess with ``AMQP_NO_SPEEDUPS=1``, so that both
paths pass them in every run (the rest of the suite runs on the path the
installation chose; see docs/accelerator.rst)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import amqp

HERE = Path(__file__).parent


@pytest.mark.slow
def test_unit_and_protocol_suites_pass_on_the_pure_path():
    if not amqp.SPEEDUPS:
        pytest.skip('the compiled twins are off: this whole run is the '
                    'pure path')
    env = dict(os.environ, AMQP_NO_SPEEDUPS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         str(HERE / 'unit'), str(HERE / 'protocol')],
        env=env, cwd=str(HERE.parent), capture_output=True, text=True,
        timeout=280)
    tail = '\n'.join(proc.stdout.splitlines()[-15:])
    assert proc.returncode == 0, tail
    assert ' passed' in tail and ' failed' not in tail, tail
