"""amqp._speedups built with AddressSanitizer: the differential tests, the
codec tests and the protocol fuzz run against it in a subprocess (the
sanitizer's runtime preloaded into the interpreter); any report fails
the run.  Needs gcc and its libasan; CI has both."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ['tests/unit/test_speedups.py', 'tests/unit/test_serialization.py',
         'tests/unit/test_method_framing.py',
         'tests/protocol/test_fuzz.py',
         # the reply loop (_speedups.Pump) over a socket, its errors included
         'tests/protocol/test_reply_loop.py',
         # basic_publish's twin (_speedups.Publish) and the writer's send
         # through a full socket buffer, from threads
         'tests/protocol/test_publish_twin.py',
         # a large body's scatter-gather send from the writer: cut off by
         # a signal, after a non-blocking read, from threads
         'tests/protocol/test_connection_io.py::'
         'test_interrupted_publish_leaves_connection_unusable',
         'tests/protocol/test_connection_io.py::'
         'test_large_publish_after_nonblocking_drain_is_not_cut',
         'tests/protocol/test_connection_io.py::'
         'test_threads_keep_their_own_deadlines',
         # acks sent with MSG_MORE by the writer while the reader holds
         'tests/protocol/test_held_acks.py']


def _libasan():
    gcc = shutil.which('gcc')
    if gcc is None:
        return None
    path = subprocess.run([gcc, '-print-file-name=libasan.so'],
                          capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.slow
def test_the_compiled_twins_under_address_sanitizer(tmp_path):
    libasan = _libasan()
    if libasan is None:
        if os.environ.get('CI'):
            pytest.fail('CI must have gcc and libasan for this check')
        pytest.skip('gcc with AddressSanitizer is not installed here')
    shutil.copytree(ROOT / 'amqp', tmp_path / 'amqp',
                    ignore=shutil.ignore_patterns('*.so', '*.pyd',
                                                  '__pycache__'))
    shutil.copytree(ROOT / 'tests', tmp_path / 'tests',
                    ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(ROOT / 'pyproject.toml', tmp_path / 'pyproject.toml')
    target = tmp_path / 'amqp' / ('_speedups' + sysconfig.get_config_var(
        'EXT_SUFFIX'))
    subprocess.run(
        ['gcc', '-shared', '-fPIC', '-O1', '-g', '-fsanitize=address',
         '-fno-omit-frame-pointer', '-DPy_LIMITED_API=0x03090000',
         '-I', sysconfig.get_paths()['include'],
         str(tmp_path / 'amqp' / '_speedups.c'), '-o', str(target)],
        check=True)
    env = dict(os.environ, LD_PRELOAD=libasan, PYTHONPATH=str(tmp_path),
               ASAN_OPTIONS='detect_leaks=0:abort_on_error=1')
    env.pop('AMQP_NO_SPEEDUPS', None)
    check = subprocess.run(
        [sys.executable, '-c', 'import amqp; print(amqp.__file__, '
         'amqp.SPEEDUPS)'], env=env, cwd=str(tmp_path),
        capture_output=True, text=True, check=True).stdout.split()
    assert check == [str(tmp_path / 'amqp' / '__init__.py'), 'True']
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider']
        + TESTS, env=env, cwd=str(tmp_path), capture_output=True,
        text=True, timeout=280)
    out = proc.stdout + proc.stderr
    assert 'AddressSanitizer' not in out, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
